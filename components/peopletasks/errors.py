"""Every error peopletasks raises on purpose, in one tree with one root.

```
Error                        the root: catch it to catch anything below
 ├── PeopleTaskError         an HTTP answer of the service (status, code, message, details)
 │    ├── InvalidRequest     400 invalid_request   malformed JSON, wrong content
 │    ├── Unauthorized       401 unauthorized      no or unknown token / secret
 │    ├── Forbidden          403 forbidden         known caller, not allowed
 │    ├── NotFound           404 not_found         no such task / webhook (in this organization)
 │    ├── Conflict           409 conflict          the state forbids it (carries the current task)
 │    ├── PayloadTooLarge    413 payload_too_large the body is longer than the service takes
 │    ├── ValidationFailed   422 validation_error  a field's value is wrong (details name it)
 │    └── StoreUnavailable   503 store_unavailable the store cannot take it now: read-only, I/O
 │                           error, unreachable (`store_full`: disk full; `store_busy`: locked)
 ├── ConfigurationError      the configuration cannot be used (also a RuntimeError)
 │    └── ServiceNotConfigured   the Prefect side has no People Task service to call
 ├── BackendError            a task system (ours, Peoplelogic, Plannr) refused a call or failed
 │                           (call, status_code, detail, outcome_unknown)
 ├── ApprovalDue             a request's deadline passed without a decision (task_id, decision_by)
 ├── ApprovalTimeout         no decision within the wait's `timeout` (task_id, timeout); not a
 │                           TimeoutError: Prefect would mark the run TimedOut and skip retries
 ├── RequestKeyConflict      a request key already names a task for another request
 │                           (request_key, task_id, differences)
 ├── MailDeliveryError       a message was not delivered (recipients, code, smtp_message, ...)
 ├── LinkInvalid             an action-link token we did not issue (tampered, truncated)
 ├── LinkProblem             an action link that cannot be used (kind, task)
 └── WebhookError            webhooks: signatures, targets, sending
      ├── InvalidSignature   verify() refused a request (reason: secret | headers | timestamp
      │                      | signature)
      ├── TargetRefused      a target may not be reached (a non-public address, no address)
      └── SendError          the exchange failed below HTTP (connect, reset, malformed answer)
           ├── SendTimeout        connecting, or the exchange, took too long
           └── UnsendableRequest  the request cannot be written (its URL, a header): final
```

HTTP renders each `PeopleTaskError` as `{"error": {"code", "message", "details": [...]}}`;
a `Conflict` adds `"task"`: the task as it stands. The classes are importable from
here and from where they are raised (`peopletasks.settings.ConfigurationError`, ...).

Every error survives pickling with its attributes (Prefect pickles what a task
raises): `Error.__reduce__` rebuilds it without calling `__init__`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _rebuild(cls: type[Error], args: tuple[Any, ...]) -> Error:
    error = cls.__new__(cls)
    error.args = args
    return error


class Error(Exception):
    """The root of every error peopletasks raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*self.args), which fails for errors whose
        # __init__ takes other arguments than their message; the attributes come back
        # from __dict__ either way.
        return (_rebuild, (type(self), self.args), self.__dict__)


class PeopleTaskError(Error):
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


class PayloadTooLarge(PeopleTaskError):
    status, code = 413, "payload_too_large"

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        return cls(f"the body is longer than {limit:,} bytes")


class ValidationFailed(PeopleTaskError):
    status, code = 422, "validation_error"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        """One bad field: the message names it, and so does `details`."""
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class StoreUnavailable(PeopleTaskError):
    """The store cannot do it now, through no fault of the request (disk full, locked
    too long, read-only, corrupt, unreachable); trying again later may succeed."""

    status, code = 503, "store_unavailable"


class BackendError(Error):
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

    @property
    def worth_retrying(self) -> bool:
        """Trying again later may succeed (unreachable, 429, 5xx) and cannot do it twice."""
        if self.outcome_unknown:
            return False
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


class ApprovalDue(Error):
    """The deadline passed before anyone decided (raised when `on_due="raise"`)."""

    def __init__(self, task_id: str, decision_by: str | None) -> None:
        super().__init__(f"task {task_id} was not decided by its deadline ({decision_by})")
        self.task_id = task_id
        self.decision_by = decision_by


class ConfigurationError(Error, RuntimeError):
    """The configuration cannot be used (e.g. a placeholder secret key in production)."""


class ServiceNotConfigured(ConfigurationError):
    """The Prefect components were given no People Task service (no block, no
    PEOPLETASKS_API_URL)."""


class MailDeliveryError(Error):
    """A message was not delivered: to whom, the server's code and text (if it answered),
    whether the failure is permanent, and how many attempts were made."""

    def __init__(
        self,
        *,
        recipients: Sequence[str],
        code: int | None,
        smtp_message: str,
        message_id: str | None = None,
        permanent: bool,
        attempts: int = 1,
        server: str = "",
    ) -> None:
        self.recipients = tuple(recipients)
        self.code = code
        self.smtp_message = smtp_message
        self.message_id = message_id
        self.permanent = permanent
        self.attempts = attempts
        self.server = server
        who = ", ".join(self.recipients) or "(no recipients)"
        answer = f"SMTP {code} {smtp_message}" if code is not None else smtp_message
        what = f"mail {message_id} " if message_id else "mail "
        via = f" via {server}" if server else ""
        if permanent:
            outcome = "permanent failure, not retried"
        else:
            outcome = f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
        super().__init__(f"{what}to {who} not delivered{via}: {answer} ({outcome})")


class LinkInvalid(Error):
    """The token was not issued by us (tampered, truncated or unknown)."""


class LinkProblem(Error):
    """Why a link cannot be used: `kind` is invalid | expired | reassigned (the task went
    to someone else since)."""

    def __init__(self, kind: str, message: str, task: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.task = task


class WebhookError(Error):
    """Webhooks: a signature, a target or a send failed."""


class InvalidSignature(WebhookError):
    """The request was not signed with this secret, or is too old or too new.

    `reason`: which check refused it (`secret`, `headers`, `timestamp`, `signature`).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TargetRefused(WebhookError):
    """A webhook target may not be reached: it resolves to a non-public address, or not at all."""


class SendError(WebhookError):
    """The exchange failed below HTTP: connect, reset, a malformed answer."""


class SendTimeout(SendError):
    """Connecting, or the exchange, took longer than allowed."""


class UnsendableRequest(SendError):
    """The request cannot be sent as it is (its URL or a header cannot be written)."""


class ApprovalTimeout(Error):
    """Nobody decided within the wait's `timeout` seconds (the task stays as it is)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"no decision on task {task_id} within {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout


class RequestKeyConflict(Error):
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
