"""The client of our People Task service (the default backend of the Prefect components).

Async, over HTTP only (a flow may run on any worker, anywhere), through the shared
loop of `backends.http`: retries connection failures, 429 and 5xx with backoff
(honouring `Retry-After`), and turns every other failure into a `BackendError` that
says which call failed and why (the service's error message included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from peopletasks.backends.base import Capabilities, TaskBackend, TaskOutcome, parse_when
from peopletasks.backends.http import HttpApi

#: Fields of a created task that only its creator may see.
SECRET_FIELDS = frozenset(
    {"approverSecret", "approverSecrets", "requesterSecret", "links", "approverLinks"}
)


class PeopleTaskClient(TaskBackend):
    """`async with PeopleTaskClient(url, token) as client: await client.create_task(...)`."""

    name: ClassVar[str] = "the People Task service"
    capabilities: ClassVar[Capabilities] = Capabilities(
        finds_by_key=True,  # the service answers a used requestKey's task
        resumes_flow_runs=True,  # its `prefect` webhooks
        long_poll=True,  # GET /tasks/{id}/wait
        action_links=True,
    )

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        max_connections: int = 1000,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._api = HttpApi(
            f"{self.url}/people-task",
            {"Authorization": f"Bearer {token}"},
            system="the People Task service",
            timeout=timeout,
            retries=retries,
            max_connections=max_connections,
        )

    async def __aenter__(self) -> PeopleTaskClient:
        return self

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _call(
        self,
        call: str,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> Any:
        return await self._api.call(
            call, method, path, timeout=timeout, idempotent=idempotent, **kwargs
        )

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
        """Create (or, with a used `request_key`, find) a task: with secrets and links."""
        body: dict[str, Any] = {
            "title": title,
            "approver": approver,
            "requester": requester,
            "description": description,
        }
        if decision_by is not None:
            body["decisionBy"] = decision_by
        if request_key is not None:
            body["requestKey"] = request_key
        body.update(extra or {})
        # Repeating a create is safe only when the service can recognise it.
        return dict(
            await self._call(
                "create task", "POST", "/tasks", json=body, idempotent=request_key is not None
            )
        )

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._call("read task", "GET", f"/tasks/{task_id}"))

    async def update_task(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        decision_by: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`PUT /tasks/{id}` with the given fields (absent ones stay)."""
        fields = {"title": title, "description": description, "decisionBy": decision_by}
        body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        body.update(extra or {})
        return dict(await self._call("update task", "PUT", f"/tasks/{task_id}", json=body))

    async def add_note(self, task_id: str, text: str) -> dict[str, Any]:
        """Append a note (its author: this client's token user)."""
        return dict(
            await self._call("add note", "POST", f"/tasks/{task_id}/notes", json={"text": text})
        )

    async def notes(self, task_id: str) -> list[dict[str, Any]]:
        """The task's notes, oldest first."""
        return list(await self._call("read notes", "GET", f"/tasks/{task_id}/notes"))

    def outcome(self, task: dict[str, Any]) -> TaskOutcome:
        public = {k: v for k, v in task.items() if k not in SECRET_FIELDS}
        status = task.get("status", "pending")
        return TaskOutcome(
            task_id=str(task["id"]),
            status=status if status in ("approved", "rejected", "due") else "pending",
            decided_by=task.get("decidedBy"),
            decided_at=parse_when(task.get("decidedAt")),
            comment=task.get("comment"),
            due_at=parse_when(task.get("decisionBy")),
            task=public,
        )

    async def wait(self, task_id: str, timeout: float = 25.0) -> dict[str, Any]:
        """Long poll: the task once decided, or as it stands after `timeout` seconds."""
        return dict(
            await self._call(
                "wait for task",
                "GET",
                f"/tasks/{task_id}/wait",
                params={"timeout": timeout},
                timeout=timeout + 30.0,
            )
        )

    def task_url(self, task_id: str) -> str:
        return f"{self.url}/people-task/tasks/{task_id}"

    async def wait_outcome(self, task_id: str, timeout: float) -> TaskOutcome:
        return self.outcome(await self.wait(task_id, timeout=timeout))

    async def register_prefect_resume(
        self, task_id: str, *, flow_run_id: str, api_url: str, api_key: str | None = None
    ) -> dict[str, Any]:
        """Have the service resume this flow run with the decision as run input."""
        prefect: dict[str, Any] = {"flowRunId": flow_run_id, "apiUrl": api_url}
        if api_key:
            prefect["apiKey"] = api_key
        return dict(
            await self._call(
                "register webhook",
                "POST",
                "/webhooks",
                json={"taskId": task_id, "prefect": prefect},
            )
        )

    async def register_webhook(self, task_id: str, url: str) -> dict[str, Any]:
        return dict(
            await self._call(
                "register webhook", "POST", "/webhooks", json={"taskId": task_id, "url": url}
            )
        )

    async def decide(
        self, task_id: str, decision: str, *, secret: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"secret": secret, "comment": comment}.items() if v is not None}
        action = "approve" if decision == "approved" else "reject"
        return dict(
            await self._call(f"{action} task", "PUT", f"/tasks/{task_id}/{action}", json=body)
        )
