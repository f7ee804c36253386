"""A `prefect` webhook resumes a real paused Prefect flow run with the decision."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow, pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from tests.conftest import TEST_KEY
from tests.support.receiver import eventually
from tests.support.server import ServiceProcess, cli, service_env


class DecisionInput(RunInput):
    status: str
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None


def test_a_decision_resumes_the_waiting_flow_run(prefect_api: str, tmp_path: Path) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    created: queue.Queue[dict[str, Any]] = queue.Queue()
    outcome: dict[str, Any] = {}

    with ServiceProcess(env) as service:
        base = f"{service.url}/people-task"

        @flow
        def vacation_request() -> dict[str, Any]:
            task = httpx.post(
                f"{base}/tasks",
                headers=auth,
                json={
                    "title": "Vacation",
                    "requester": "ann@example.com",
                    "approver": "lead@example.com",
                },
            ).json()
            hook = httpx.post(
                f"{base}/webhooks",
                headers=auth,
                json={
                    "taskId": task["id"],
                    "prefect": {"flowRunId": str(flow_run.id), "apiUrl": prefect_api},
                },
            )
            hook.raise_for_status()
            created.put(task)
            decision = pause_flow_run(wait_for_input=DecisionInput, timeout=120, poll_interval=1)
            return decision.model_dump()

        def run() -> None:
            outcome["result"] = vacation_request()

        runner = threading.Thread(target=run)
        runner.start()
        task = created.get(timeout=60)
        approved = httpx.put(
            f"{base}/tasks/{task['id']}/approve",
            json={"secret": task["approverSecret"], "comment": "Enjoy"},
        )
        assert approved.status_code == 200, approved.text
        runner.join(timeout=90)
        assert not runner.is_alive()

    result = outcome["result"]
    assert result["approved"] is True
    assert result["status"] == "approved"
    assert result["task_id"] == task["id"]
    assert result["decided_by"] == "lead@example.com"
    assert result["comment"] == "Enjoy"


class Service:
    def __init__(self, url: str, token: str) -> None:
        self.base = f"{url}/people-task"
        self.auth = {"Authorization": f"Bearer {token}"}

    def hooked_task(self, flow_run_id: str, prefect_api: str) -> tuple[dict[str, Any], str]:
        """A new task with a `prefect` webhook for `flow_run_id`: the task, the webhook id."""
        task = httpx.post(
            f"{self.base}/tasks",
            headers=self.auth,
            json={"title": "Vacation", "requester": "ann@example.com", "approver": "lead@x.org"},
        ).json()
        hook = httpx.post(
            f"{self.base}/webhooks",
            headers=self.auth,
            json={
                "taskId": task["id"],
                "prefect": {"flowRunId": flow_run_id, "apiUrl": prefect_api},
            },
        )
        assert hook.status_code == 201, hook.text
        return task, hook.json()["id"]

    async def approve(self, task: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as client:
            approved = await client.put(
                f"{self.base}/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
            )
        assert approved.status_code == 200, approved.text

    async def delivery(self, hook_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"{self.base}/webhooks/{hook_id}/deliveries", headers=self.auth
            )
        assert response.status_code == 200, response.text
        (only,) = response.json()
        return dict(only)


@pytest.fixture(scope="module")
def service(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service, retrying failed deliveries within a fraction of a second."""
    env = service_env(
        f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('resume') / 'p.db'}",
        TEST_KEY,
        PEOPLETASKS_WEBHOOK_RETRY_BASE_SECONDS="0.2",
        PEOPLETASKS_WEBHOOK_RETRY_MAX_DELAY_SECONDS="0.5",
        PEOPLETASKS_WEBHOOK_POLL_SECONDS="0.2",
    )
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as running:
        yield Service(running.url, token)


async def test_a_decision_for_a_finished_flow_run_is_not_retried(
    service: Service, prefect_api: str
) -> None:
    @flow
    def already_done() -> str:
        return str(flow_run.id)

    finished_run = await asyncio.to_thread(already_done)
    task, hook_id = service.hooked_task(finished_run, prefect_api)
    await service.approve(task)

    delivery = await eventually(
        lambda: _when(service.delivery(hook_id), lambda d: d["status"] != "pending"), timeout=20
    )
    assert delivery["status"] == "failed"
    assert delivery["nextAttemptAt"] is None
    assert delivery["lastError"] == "flow run is COMPLETED; nothing to resume"
    (attempt,) = delivery["attemptLog"]
    assert attempt["statusCode"] == 200
    assert attempt["error"] == "flow run is COMPLETED; nothing to resume"
    assert "ABORT" in attempt["responseBody"]


async def test_a_decision_made_before_the_run_pauses_is_retried_until_it_does(
    service: Service, prefect_api: str
) -> None:
    created: queue.Queue[tuple[dict[str, Any], str]] = queue.Queue()
    may_pause = threading.Event()

    @flow
    def late_pauser() -> dict[str, Any]:
        created.put(service.hooked_task(str(flow_run.id), prefect_api))
        may_pause.wait(timeout=60)  # still RUNNING, not paused: resuming it is ABORTed
        decision = pause_flow_run(wait_for_input=DecisionInput, timeout=60, poll_interval=1)
        return decision.model_dump()

    runner = asyncio.create_task(asyncio.to_thread(late_pauser))
    try:
        task, hook_id = await asyncio.to_thread(created.get, timeout=60)
        await service.approve(task)
        retried = await eventually(
            lambda: _when(service.delivery(hook_id), lambda d: len(d["attemptLog"]) >= 2),
            timeout=20,
        )
    finally:
        may_pause.set()
    assert retried["status"] == "pending"
    assert retried["nextAttemptAt"] is not None
    for attempt in retried["attemptLog"]:
        assert attempt["error"] == "Prefect did not resume the run: ABORT (flow run is RUNNING)"

    async with asyncio.timeout(90):
        result = await runner
    assert result["approved"] is True
    assert result["task_id"] == task["id"]
    delivered = await eventually(
        lambda: _when(service.delivery(hook_id), lambda d: d["status"] == "delivered"), timeout=20
    )
    assert delivered["attemptLog"][-1]["error"] is None


async def _when(
    read: Awaitable[dict[str, Any]], condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The value read, once it meets `condition` (for `eventually`)."""
    value = await read
    return value if condition(value) else None


async def test_a_named_prefect_api_may_be_private_and_nothing_else_is() -> None:
    """PEOPLETASKS_PREFECT_API_URL names the operator's own Prefect API: resumes may go
    there although it is on a private address; every other private target stays refused."""
    from peopletasks.errors import ValidationFailed
    from peopletasks.webhooks.http import HTTPTransport
    from peopletasks.webhooks.targets import target_check

    own = "http://127.0.0.1:4200/api"
    check = target_check(allow_private=False, prefect_apis=[own + "/"])
    await check(own, "prefect.apiUrl")
    await check("HTTP://127.0.0.1:4200/api/", "prefect.apiUrl")
    with pytest.raises(ValidationFailed) as refused:
        await check("http://127.0.0.1:4201/api", "prefect.apiUrl")
    assert "PEOPLETASKS_PREFECT_API_URL" in refused.value.message
    with pytest.raises(ValidationFailed):  # a plain webhook to it is still refused
        await check(own, "url")
    assert HTTPTransport(allow_private=False, trusted=[own]).trusted_origins == {
        ("http", "127.0.0.1", 4200)
    }
