"""Peoplelogic tasks as an approval backend (polled: Peoplelogic sends no webhooks to us).

```
create   POST  /api/v1/entity/{entity}/task          name, description, dueDate, order,
                                                     orderGroup, assignees, mappings
read     GET   /api/v1/task/{task}
update   PATCH /api/v1/entity/{entity}/task/{task}   name (required) and the changed fields
note     PATCH ... with `notes` = the task's notes and the new one
```

Bearer JWT. The decision is `status.current`, read through the `approved` /
`rejected` sets (case-insensitive); who decided is `status.changedBy`, when
`status.changedAt`; the comment is the decider's latest note.

Our request key goes into the task's `mappings` (`namespace` "peopletasks",
`mappedId` = the key) so the task can be traced back to its flow run. The reference
has no way to find a task by mapping, so a create is sent once: the HTTP loop
repeats it only when Peoplelogic provably did not act (429, refused connection),
and the Prefect step remembers the task it created for the flow run (a retried
run finds it instead of creating another).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

from pydantic import PrivateAttr

from peopletasks.backends.base import Capabilities, TaskBackend, TaskOutcome, parse_when
from peopletasks.backends.http import HttpApi
from peopletasks.settings import PeoplelogicConfig, from_environment
from peopletasks.timeutil import parse_datetime, utcnow

MAPPING_NAMESPACE = "peopletasks"


def due_date(value: str | None) -> str | None:
    """Peoplelogic's `dueDate` (a date) from an ISO date or date-time (taken in UTC)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return parse_datetime(value).date().isoformat()


class PeoplelogicBackend(TaskBackend, PeoplelogicConfig):
    """Approvals as Peoplelogic tasks on one entity (an OKR, a meeting, an IDP ...).

    Example:
        ```python
        from peopletasks import PeoplelogicBackend, request_approval

        backend = PeoplelogicBackend(
            token="eyJ...", entity="123e4567-...", approved={"done"}, rejected={"cancelled"}
        )
        decision = request_approval("Budget Q3", approver="<person entity id>",
                                    requester="ci", backend=backend, wait="poll")
        ```

    `approver` is the Peoplelogic id of the person the task is assigned to
    (`assignees`, of `assignee_type`); `requester` is recorded in the mapping. The
    keywords are `PeoplelogicConfig`'s fields (also the `PeoplelogicTasks` block's and the
    `PEOPLETASKS_PEOPLELOGIC_*` variables).
    """

    name: ClassVar[str] = "Peoplelogic"
    capabilities: ClassVar[Capabilities] = Capabilities()  # polled; a create is sent once

    _api: HttpApi = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._api = HttpApi(
            self.url.rstrip("/"),
            {
                "Authorization": f"Bearer {self.token.get_secret_value()}",
                "Accept": "application/json",
            },
            system="Peoplelogic",
            timeout=self.timeout,
            retries=self.retries,
        )

    def __repr__(self) -> str:
        return f"PeoplelogicBackend(url={self.url!r}, entity={self.entity!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PeoplelogicBackend:
        """From `PEOPLETASKS_PEOPLELOGIC_*` (a variable per field: `_URL`, `_TOKEN`,
        `_ENTITY`, `_APPROVED`, `_REJECTED`, ...). Raises ValueError naming what is wrong."""
        return from_environment(cls, "PEOPLETASKS_PEOPLELOGIC_", environ)

    async def aclose(self) -> None:
        await self._api.aclose()

    def _task_path(self, task_id: str) -> str:
        return f"/api/v1/entity/{self.entity}/task/{task_id}"

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
        body: dict[str, Any] = {"name": title, "description": description}
        due = due_date(decision_by)
        if due is not None:
            body["dueDate"] = due
        if self.order is not None:
            body["order"] = self.order
        if self.order_group is not None:
            body["orderGroup"] = self.order_group
        if approver:
            body["assignees"] = [{"entityId": approver, "entityType": self.assignee_type}]
        mapping: dict[str, Any] = {
            "namespace": MAPPING_NAMESPACE,
            "reference": "approval-request",
            "mappingData": {"requester": requester, "approver": approver},
        }
        if request_key is not None:
            mapping["mappedId"] = request_key
        if self.app is not None:
            mapping["app"] = self.app
        body["mappings"] = [mapping]
        body.update(extra or {})
        path = f"/api/v1/entity/{self.entity}/task"
        created = await self._api.call(
            f"create Peoplelogic task (POST {path})", "POST", path, json=body, idempotent=False
        )
        return public_task(dict(created))  # what may be persisted holds no mapping secrets

    async def get_task(self, task_id: str) -> dict[str, Any]:
        path = f"/api/v1/task/{task_id}"
        return dict(await self._api.call(f"read Peoplelogic task (GET {path})", "GET", path))

    async def _patch(self, call: str, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = self._task_path(task_id)
        return dict(await self._api.call(f"{call} (PATCH {path})", "PATCH", path, json=body))

    async def update_task(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        decision_by: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """PATCH the given fields (Peoplelogic requires `name`: the current one is kept)."""
        if title is None:
            title = str((await self.get_task(task_id)).get("name") or "")
        body: dict[str, Any] = {"name": title}
        if description is not None:
            body["description"] = description
        if decision_by is not None:
            body["dueDate"] = due_date(decision_by)
        body.update(extra or {})
        return await self._patch("update Peoplelogic task", task_id, body)

    async def add_note(self, task_id: str, text: str) -> dict[str, Any]:
        """Append a note: PATCH `notes` with the task's notes and `{"note": text}`."""
        if not text.strip():
            raise ValueError("text: a note needs some text")
        task = await self.get_task(task_id)
        notes = [*list(task.get("notes") or []), {"note": text}]
        body = {"name": task.get("name") or "", "notes": notes}
        return await self._patch("add note to Peoplelogic task", task_id, body)

    def outcome(self, task: dict[str, Any]) -> TaskOutcome:
        state = task.get("status") or {}
        current = str(state.get("current") or "").strip().casefold()
        due_at = _end_of(task.get("dueDate"))
        status: Any = "pending"
        if current in self.approved:
            status = "approved"
        elif current in self.rejected:
            status = "rejected"
        elif self.overdue_ends_wait and due_at is not None and utcnow() >= due_at:
            status = "due"
        decided = status in ("approved", "rejected")
        decided_by = state.get("changedBy") if decided else None
        return TaskOutcome(
            task_id=self.task_id_of(task),
            status=status,
            decided_by=decided_by,
            decided_at=parse_when(state.get("changedAt")) if decided else None,
            comment=_latest_note_by(task.get("notes"), decided_by) if decided else None,
            due_at=due_at,
            task=public_task(task),
        )


def public_task(task: dict[str, Any]) -> dict[str, Any]:
    """The task without `mappingSecrets` (they never leave the backend)."""
    mappings = [
        {k: v for k, v in m.items() if k != "mappingSecrets"} if isinstance(m, dict) else m
        for m in task.get("mappings") or []
    ]
    return {**task, "mappings": mappings} if "mappings" in task else dict(task)


def _end_of(value: Any) -> datetime | None:
    """A task due on a date is overdue from the next midnight (UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return None
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _latest_note_by(notes: Any, author: Any) -> str | None:
    if not author or not isinstance(notes, list):
        return None
    mine = [n for n in notes if isinstance(n, dict) and n.get("author") == author and n.get("note")]
    if not mine:
        return None
    mine.sort(key=lambda n: str(n.get("createdAt") or ""))
    return str(mine[-1]["note"])
