"""Plannr CRM tasks as an approval backend (polled: Plannr sends no webhooks to us).

```
create   POST /api/v1/task          name, description, priority, due_at, taskable_type,
                                    taskable_uuid, task_status_uuid, parent_task_uuid,
                                    assigned_to_uuids, group_uuids, custom_fields
read     GET  /api/v1/task/{uuid}   (Plannr's task resource; the reference shows its shape)
update   PUT  /api/v1/task/{uuid}   the changed fields
note     PUT  ... description + a dated note paragraph (Plannr tasks have no notes list)
```

Headers: `Authorization: Bearer <token>` and `X-PLANNR-ACCOUNT-UUID`. The decision is
the task's `status`: a status named (by uuid or name, case-insensitive) in
`rejected` means rejected; one in `approved` means approved, and with `approved`
left unset any status of the completed type (`is_type_completed`) does. Who decided
is `completed_by` (its `uuid`), when `completed_at`.

Idempotency: with `request_key_field` set (a task custom field defined in the
firm's settings) our request key is written to that custom field. The reference
documents no search, so a create is sent once: repeated only when Plannr provably
did not act (429, refused connection); the Prefect step remembers the task it
created for the flow run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import PrivateAttr

from peopletasks.backends.base import Capabilities, TaskBackend, TaskOutcome, parse_when
from peopletasks.backends.http import HttpApi
from peopletasks.settings import PlannrConfig, from_environment
from peopletasks.timeutil import parse_datetime, utcnow


def plannr_datetime(value: str | None) -> str | None:
    """`YYYY-MM-DD HH:MM:SS` in UTC (Plannr's `due_at`) from an ISO 8601 date-time."""
    if value is None:
        return None
    return parse_datetime(value).strftime("%Y-%m-%d %H:%M:%S")


class PlannrBackend(TaskBackend, PlannrConfig):
    """Approvals as Plannr tasks, optionally on a client, case or plan (`taskable_*`).

    Example:
        ```python
        from peopletasks import PlannrBackend, request_approval

        backend = PlannrBackend(token="...", account_uuid="...", rejected={"Rejected"})
        decision = request_approval("Check details", approver="<account uuid>",
                                    requester="ci", backend=backend, wait="poll")
        ```

    `approver` is the uuid of the Plannr account the task is assigned to
    (`assigned_to_uuids`); Plannr records the token's account as the author. The
    keywords are `PlannrConfig`'s fields (also the `PlannrTasks` block's and the
    `PEOPLETASKS_PLANNR_*` variables).
    """

    name: ClassVar[str] = "Plannr"
    capabilities: ClassVar[Capabilities] = Capabilities()  # polled; a create is sent once

    _api: HttpApi = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._api = HttpApi(
            self.url.rstrip("/"),
            {
                "Authorization": f"Bearer {self.token.get_secret_value()}",
                "X-PLANNR-ACCOUNT-UUID": self.account_uuid,
                "Accept": "application/json",
            },
            system="Plannr",
            timeout=self.timeout,
            retries=self.retries,
        )

    def __repr__(self) -> str:
        return f"PlannrBackend(url={self.url!r}, account_uuid={self.account_uuid!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlannrBackend:
        """From `PEOPLETASKS_PLANNR_*` (a variable per field: `_URL`, `_TOKEN`,
        `_ACCOUNT_UUID`, `_APPROVED`, `_REJECTED`, `_TASKABLE_TYPE`, ...). Raises
        ValueError naming what is wrong."""
        return from_environment(cls, "PEOPLETASKS_PLANNR_", environ)

    async def aclose(self) -> None:
        await self._api.aclose()

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
        optional = {
            "priority": self.priority,
            "due_at": plannr_datetime(decision_by),
            "taskable_type": self.taskable_type,
            "taskable_uuid": self.taskable_uuid,
            "task_status_uuid": self.task_status_uuid,
            "parent_task_uuid": self.parent_task_uuid,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if approver:
            body["assigned_to_uuids"] = [approver]
        if self.group_uuids:
            body["group_uuids"] = self.group_uuids
        if self.request_key_field and request_key is not None:
            body["custom_fields"] = [{self.request_key_field: request_key}]
        body.update(extra or {})
        created = await self._api.call(
            "create Plannr task (POST /api/v1/task)",
            "POST",
            "/api/v1/task",
            json=body,
            idempotent=False,
        )
        return dict(_unwrap(created))

    async def get_task(self, task_id: str) -> dict[str, Any]:
        path = f"/api/v1/task/{task_id}"
        return dict(_unwrap(await self._api.call(f"read Plannr task (GET {path})", "GET", path)))

    async def update_task(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        decision_by: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        fields = {"name": title, "description": description, "due_at": plannr_datetime(decision_by)}
        body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        body.update(extra or {})
        return await self._put("update Plannr task", task_id, body)

    async def _put(self, call: str, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/task/{task_id}"
        return dict(_unwrap(await self._api.call(f"{call} (PUT {path})", "PUT", path, json=body)))

    async def add_note(self, task_id: str, text: str) -> dict[str, Any]:
        """Plannr's task has no notes list: append a dated paragraph to its description."""
        if not text.strip():
            raise ValueError("text: a note needs some text")
        task = await self.get_task(task_id)
        stamp = utcnow().strftime("%Y-%m-%d %H:%M UTC")
        paragraph = f"Note ({stamp}): {text}"
        existing = str(task.get("description") or "").rstrip()
        description = f"{existing}\n\n{paragraph}" if existing else paragraph
        return await self._put("add note to Plannr task", task_id, {"description": description})

    def outcome(self, task: dict[str, Any]) -> TaskOutcome:
        state = task.get("status")
        if not isinstance(state, dict):
            state = {}
        names = {str(state.get(k) or "").strip().casefold() for k in ("uuid", "name")} - {""}
        due_at = parse_when(task.get("due_at"))
        status: Any = "pending"
        if names & self.rejected:
            status = "rejected"
        elif (self.approved is not None and names & self.approved) or (
            self.approved is None and state.get("is_type_completed") is True
        ):
            status = "approved"
        elif self.overdue_ends_wait and due_at is not None and utcnow() >= due_at:
            status = "due"
        decided = status in ("approved", "rejected")
        completed_by = task.get("completed_by")
        if not isinstance(completed_by, dict):
            completed_by = {}
        return TaskOutcome(
            task_id=self.task_id_of(task),
            status=status,
            decided_by=(completed_by.get("uuid") or None) if decided else None,
            decided_at=parse_when(task.get("completed_at")) if decided else None,
            comment=None,
            due_at=due_at,
            task=dict(task),
        )


def _unwrap(body: Any) -> Any:
    """Plannr (Laravel resources) may wrap a resource in `data`."""
    if isinstance(body, dict) and "uuid" not in body and isinstance(body.get("data"), dict):
        return body["data"]
    return body
