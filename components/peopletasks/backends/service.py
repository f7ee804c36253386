"""The client of our People Task service (what the Prefect components use).

Async, over HTTP only (a flow may run on any worker, anywhere): retries
connection failures, 429 and 5xx with backoff (honouring `Retry-After`), and
turns every other failure into a `BackendError` that says which call failed
and why (the service's error message included).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from peopletasks import __version__
from peopletasks.errors import BackendError
from peopletasks.timeutil import utcnow
from peopletasks.webhooks.retry import parse_retry_after

RETRYABLE = {429, 500, 502, 503, 504}


class PeopleTaskClient:
    """`async with PeopleTaskClient(url, token) as client: await client.create_task(...)`."""

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
        self._http = httpx.AsyncClient(
            base_url=f"{self.url}/people-task",
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"peopletasks/{__version__}",
            },
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=100),
        )

    async def __aenter__(self) -> PeopleTaskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, call: str, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        for attempt in range(self.retries + 1):
            try:
                if timeout is not None:
                    kwargs["timeout"] = timeout
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise BackendError(call, f"cannot reach {self.url}: {exc!r}") from exc
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code in RETRYABLE and attempt < self.retries:
                wait = parse_retry_after(response.headers.get("retry-after"), utcnow())
                await asyncio.sleep(_backoff(attempt) if wait is None else min(wait, 60.0))
                continue
            if response.is_success:
                return response.json() if response.content else None
            raise BackendError(call, _message(response), status_code=response.status_code)
        raise AssertionError("unreachable")  # pragma: no cover

    async def create_task(
        self,
        *,
        title: str,
        approver: str,
        requester: str,
        description: str = "",
        decision_by: str | None = None,
        request_key: str | None = None,
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
        return dict(await self._call("create task", "POST", "/tasks", json=body))

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._call("read task", "GET", f"/tasks/{task_id}"))

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


def _backoff(attempt: int) -> float:
    return float(min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))


def _message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return str(error.get("message") or error)
    except (ValueError, KeyError, TypeError):
        return response.text[:500] or response.reason_phrase
