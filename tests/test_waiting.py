"""Long polls: a waiter learns of the decision the moment it commits, on any replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from peopletasks.domain import Domain
from tests.conftest import TEST_KEY, Api, error_of, new_database_url
from tests.support.receiver import eventually
from tests.support.server import ServiceProcess, cli, service_env


async def test_wait_answers_at_once_when_decided(api: Api, anonymous: Api) -> None:
    task = await api.create()
    await anonymous.put(f"/tasks/{task['id']}/reject", params={"secret": task["approverSecret"]})
    waited = await api.get(f"/tasks/{task['id']}/wait", params={"timeout": 30})
    assert waited.status_code == 200
    assert waited.json()["status"] == "rejected"


async def test_wait_returns_pending_after_its_timeout(api: Api) -> None:
    task = await api.create()
    waited = await api.get(f"/tasks/{task['id']}/wait", params={"timeout": 0.2})
    assert waited.json()["status"] == "pending"


async def test_a_waiter_is_woken_by_the_decision(api: Api, anonymous: Api, domain: Domain) -> None:
    task = await api.create()
    # The store is re-read only every 120 s here: only the decision's wake-up is in time.
    domain.wait_recheck_seconds = 120
    waiting = asyncio.create_task(api.get(f"/tasks/{task['id']}/wait", params={"timeout": 30}))
    await eventually(lambda: domain.decisions.waiting >= 1)
    approved = await anonymous.put(
        f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]}
    )
    assert approved.status_code == 200
    waited = await asyncio.wait_for(waiting, 60)
    domain.wait_recheck_seconds = 5.0
    assert waited.json()["status"] == "approved"


async def test_wait_validates_and_hides_other_tasks(api: Api, anonymous: Api) -> None:
    task = await api.create()
    too_long = await api.get(f"/tasks/{task['id']}/wait", params={"timeout": 3600})
    assert too_long.status_code == 422
    assert "timeout" in error_of(too_long)["message"]
    assert (await api.get("/tasks/000000000000000000000000/wait")).status_code == 404
    other = await api.create(approver="x@example.com")
    response = await anonymous.get(
        f"/tasks/{task['id']}/wait", params={"secret": other["approverSecret"], "timeout": 0}
    )
    assert response.status_code == 404


async def test_a_decision_on_another_replica_wakes_the_waiter(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("replicas need PostgreSQL")
    url = new_database_url(request, backend, tmp_path)
    # The store is re-read only every 120 s: only NOTIFY can wake the waiter in time.
    env = service_env(url, TEST_KEY, PEOPLETASKS_WAIT_RECHECK_SECONDS="120")
    token = cli("token", "create", "--email", "w@example.com", env=env).splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    with ServiceProcess(env) as one, ServiceProcess(env) as two:
        async with httpx.AsyncClient(timeout=60) as client:
            task = (
                await client.post(
                    f"{one.url}/people-task/tasks",
                    headers=auth,
                    json={"title": "t", "requester": "r@example.com", "approver": "a@example.com"},
                )
            ).json()
            waiting = asyncio.create_task(
                client.get(
                    f"{one.url}/people-task/tasks/{task['id']}/wait",
                    headers=auth,
                    params={"timeout": 45},
                )
            )

            # Decide on the other replica once the waiter is parked there.
            async def parked() -> bool:
                health = (await client.get(f"{one.url}/healthz")).json()
                return bool(health["waiting"] >= 1)

            await eventually(parked)
            decided = await client.put(
                f"{two.url}/people-task/tasks/{task['id']}/approve",
                json={"secret": task["approverSecret"]},
            )
            assert decided.status_code == 200
            waited = await waiting
    assert waited.json()["status"] == "approved"
