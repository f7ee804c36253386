"""Every error the service answers with, in one tree.

```
PeopleTaskError            (status, code, message, details)
 ├── InvalidRequest        400 invalid_request   malformed JSON, wrong content
 ├── Unauthorized          401 unauthorized      no or unknown token / secret
 ├── Forbidden             403 forbidden         known caller, not allowed
 ├── NotFound              404 not_found         no such task / webhook (in this organization)
 ├── Conflict              409 conflict          the state forbids it (carries the current task)
 └── ValidationFailed      422 validation_error  a field's value is wrong (details name it)

BackendError               a task system (ours, Peoplelogic, Plannr) refused a call or failed
ApprovalDue                a request's deadline passed without a decision (when asked to raise)
ApprovalTimeout            no decision within the wait's `timeout` (not a TimeoutError: Prefect
                           would mark the run TimedOut and skip its retries)
RequestKeyConflict         a request key already names a task for a different request
```

The Prefect-side errors survive pickling (Prefect persists a failed run's exception, and
`state.result()` raises it again in another process).

HTTP renders each as `{"error": {"code", "message", "details": [...]}}`; a
`Conflict` adds `"task"`: the task as it stands.
"""

from __future__ import annotations

import functools
from typing import Any


class PeopleTaskError(Exception):
    status: int = 400
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(PeopleTaskError):
    status, code = 400, "invalid_request"


class Unauthorized(PeopleTaskError):
    status, code = 401, "unauthorized"


class Forbidden(PeopleTaskError):
    status, code = 403, "forbidden"


class NotFound(PeopleTaskError):
    status, code = 404, "not_found"


class Conflict(PeopleTaskError):
    status, code = 409, "conflict"

    def __init__(
        self, message: str, *, task: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.task = task

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.task is not None:
            body["error"]["task"] = self.task
        return body


class ValidationFailed(PeopleTaskError):
    status, code = 422, "validation_error"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        """One bad field: the message names it, and so does `details`."""
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class BackendError(Exception):
    """A call to a task system failed: which call, the HTTP status, and what it said.

    `outcome_unknown`: the request may have been carried out (no answer, or a 5xx to a
    call that is not safe to repeat), so repeating it could do it twice.
    """

    def __init__(
        self,
        call: str,
        message: str,
        *,
        status_code: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        detail = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{call} failed{detail}: {message}")
        self.call = call
        self.status_code = status_code
        self.detail = message
        self.outcome_unknown = outcome_unknown

    def __reduce__(self) -> tuple[Any, ...]:
        keywords: dict[str, Any] = {
            "status_code": self.status_code,
            "outcome_unknown": self.outcome_unknown,
        }
        return (functools.partial(type(self), **keywords), (self.call, self.detail))

    @property
    def worth_retrying(self) -> bool:
        """Trying again later may succeed (unreachable, 429, 5xx) and cannot do it twice."""
        if self.outcome_unknown:
            return False
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


class ApprovalDue(Exception):
    """The deadline passed before anyone decided (raised when `on_due="raise"`)."""

    def __init__(self, task_id: str, decision_by: str | None) -> None:
        super().__init__(f"task {task_id} was not decided by its deadline ({decision_by})")
        self.task_id = task_id
        self.decision_by = decision_by

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, self.decision_by))


class ApprovalTimeout(Exception):
    """Nobody decided within the wait's `timeout` seconds (the task stays as it is)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"no decision on task {task_id} within {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, self.timeout))


class RequestKeyConflict(Exception):
    """A request key already names a task, asked for something else: what differs, as
    field -> (the task's value, the request's)."""

    def __init__(self, request_key: str, task_id: str, differences: dict[str, Any]) -> None:
        listed = "; ".join(
            f"{field}: {found!r} there, {asked!r} asked"
            for field, (found, asked) in differences.items()
        )
        super().__init__(
            f"request key {request_key!r} already names task {task_id}, for another request "
            f"({listed}); use another key for another request"
        )
        self.request_key = request_key
        self.task_id = task_id
        self.differences = differences

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.request_key, self.task_id, self.differences))
