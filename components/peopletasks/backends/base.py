"""What the Prefect components need from a task system: the `TaskBackend` interface.

```
TaskBackend                 create_task, get_task, update_task, add_note, outcome,
 │                          wait_outcome, capabilities
 ├── PeopleTaskClient       our People Task service (the default; webhooks, long poll)
 ├── PeoplelogicBackend     Peoplelogic tasks (polled)
 └── PlannrBackend          Plannr CRM tasks (polled)
```

What a system can do is its `capabilities` (a `Capabilities`), declared once on the
backend class; the components read it from there (blocks and names resolve to a class).

Every method speaks HTTP through `backends.http.HttpApi` (or, for our service, its
own loop) and raises `BackendError` naming the call that failed. `outcome(task)`
reads a task as that system returns it and says what it means for an approval:
pending, approved, rejected or due, who decided and when.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from peopletasks.timeutil import parse_datetime

OutcomeStatus = Literal["pending", "approved", "rejected", "due"]


@dataclass(frozen=True)
class TaskOutcome:
    """A task read for its decision (the raw task, without secrets, in `task`)."""

    task_id: str
    status: OutcomeStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    due_at: datetime | None = None
    task: dict[str, Any] = field(default_factory=dict)

    @property
    def decided(self) -> bool:
        return self.status != "pending"


@dataclass(frozen=True)
class Capabilities:
    """What a task system can do, as far as the approval components care."""

    #: It answers the task it already has for a repeated request key (so any create may be
    #: repeated); otherwise the Prefect step remembers the task it created, per key.
    finds_by_key: bool = False
    #: It tells a waiting flow run of the decision (webhooks): `wait="suspend"` works.
    resumes_flow_runs: bool = False
    #: It answers a wait request the moment the decision commits (`wait_outcome`);
    #: otherwise waiting polls every `poll_interval` seconds.
    long_poll: bool = False
    #: A created task carries signed Approve / Reject links (so an approval mail can be
    #: sent with them).
    action_links: bool = False


class TaskBackend(abc.ABC):
    """A task system the approval components create tasks in and read decisions from.

    Use as `async with backend:` or call `aclose()` when done; a backend that is only
    configuration (Peoplelogic, Plannr) opens its connection again on next use.
    """

    #: Short name used in messages ("Peoplelogic").
    name: ClassVar[str] = "task system"
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abc.abstractmethod
    async def create_task(
        self,
        *,
        title: str,
        approver: str,
        requester: str,
        description: str = "",
        decision_by: str | None = None,
        request_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create the task; the task as the system returns it (its id under `id`)."""

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> dict[str, Any]:
        """The task as it stands."""

    @abc.abstractmethod
    async def update_task(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        decision_by: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change the given fields (None leaves one as it is); the task after."""

    @abc.abstractmethod
    async def add_note(self, task_id: str, text: str) -> dict[str, Any]:
        """Add a note for the people working on the task; the task after."""

    @abc.abstractmethod
    def outcome(self, task: dict[str, Any]) -> TaskOutcome:
        """What `task` (as `get_task` returns it) means for the approval."""

    async def read_outcome(self, task_id: str) -> TaskOutcome:
        return self.outcome(await self.get_task(task_id))

    async def wait_outcome(self, task_id: str, timeout: float) -> TaskOutcome:
        """The outcome once decided, or as it stands after at most `timeout` seconds.
        Without `capabilities.long_poll` it answers at once (the caller polls)."""
        return await self.read_outcome(task_id)

    def task_url(self, task_id: str) -> str | None:
        """Where the task can be read (None: the system has no address for it)."""
        return None

    @staticmethod
    def task_id_of(task: Mapping[str, Any]) -> str:
        return str(task.get("id") or task.get("uuid") or "")

    async def aclose(self) -> None:  # noqa: B027 - optional for subclasses
        """Close open connections (the backend stays usable)."""

    async def __aenter__(self) -> TaskBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def parse_when(value: Any) -> datetime | None:
    """A date-time from a task system (ISO 8601 or `YYYY-MM-DD HH:MM:SS`, UTC if no zone)."""
    if not value or not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None
