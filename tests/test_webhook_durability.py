"""Deliveries survive a killed service, and replicas share the work without doubling it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from peopletasks.service.app import build_domain
from peopletasks.store.tables import webhook_attempts, webhook_deliveries
from tests.conftest import TEST_KEY, new_database_url, settings_for
from tests.support.receiver import Answer, Receiver, eventually
from tests.support.server import ServiceProcess, cli, service_env

FAST_RETRIES = {
    "PEOPLETASKS_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "PEOPLETASKS_WEBHOOK_RETRY_MAX_DELAY_SECONDS": "1",
    "PEOPLETASKS_WEBHOOK_POLL_SECONDS": "0.2",
    # A short lease, so that claims of a killed PostgreSQL replica expire soon.
    "PEOPLETASKS_WEBHOOK_TIMEOUT_SECONDS": "2",
}


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return new_database_url(request, backend, tmp_path)


async def decisions_with_webhooks(
    client: httpx.AsyncClient, bases: list[str], token: str, url: str, count: int
) -> list[str]:
    """Create `count` tasks with a webhook to `url` and approve each; their ids."""
    auth = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        base = bases[i % len(bases)]
        async with gate:
            created = await client.post(
                f"{base}/people-task/tasks",
                headers=auth,
                json={"title": f"t{i}", "requester": "r@example.com", "approver": "a@example.com"},
            )
            task = created.json()
            hooked = await client.post(
                f"{base}/people-task/webhooks",
                headers=auth,
                json={"url": url, "taskId": task["id"]},
            )
            assert hooked.status_code == 201, hooked.text
            approved = await client.put(
                f"{base}/people-task/tasks/{task['id']}/approve",
                json={"secret": task["approverSecret"]},
            )
            assert approved.status_code == 200, approved.text
            return str(task["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_sigkill_with_1000_pending_deliveries_loses_none(
    fresh_database: str, backend: str
) -> None:
    slow = True

    def answer(path: str, n: int) -> Answer:
        # Until the kill, deliveries hang at the receiver: the dispatcher's slots fill
        # and the rest of the 1,000 wait in the outbox (or in flight) when it dies.
        return Answer(200, delay=30.0 if slow else 0.0)

    env = service_env(fresh_database, TEST_KEY, **FAST_RETRIES)
    token = cli("token", "create", "--email", "k@example.com", env=env).splitlines()[-1]
    with Receiver(answer) as receiver:
        service = ServiceProcess(env).start()
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                task_ids = await decisions_with_webhooks(
                    client, [service.url], token, receiver.url("/kill"), 1000
                )
            await eventually(lambda: len(receiver.received) >= 20, timeout=30)
            service.stop(signal.SIGKILL)
        finally:
            service.stop()
        before_restart = len({r.headers["webhook-id"] for r in receiver.received})
        assert before_restart < 1000, "the kill came too late to prove anything"
        slow = False
        with ServiceProcess(env):
            await eventually(
                lambda: len({r.headers["webhook-id"] for r in receiver.received}) >= 1000,
                timeout=90,
            )
    tasks_seen = {r.json()["id"] for r in receiver.received}
    assert tasks_seen == set(task_ids)


async def test_two_replicas_on_postgresql_deliver_each_event_once(
    fresh_database: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("several replicas need PostgreSQL")
    env = service_env(fresh_database, TEST_KEY, **FAST_RETRIES)
    token = cli("token", "create", "--email", "r@example.com", env=env).splitlines()[-1]
    with Receiver() as receiver, ServiceProcess(env) as one, ServiceProcess(env) as two:
        async with httpx.AsyncClient(timeout=60) as client:
            await decisions_with_webhooks(
                client, [one.url, two.url], token, receiver.url("/replicas"), 300
            )
        await eventually(lambda: len(receiver.received) >= 300, timeout=60)
        domain = build_domain(settings_for(fresh_database))
        try:

            async def settled() -> list[Any] | None:
                async with domain.db.read() as conn:
                    rows = (
                        await conn.execute(
                            select(webhook_deliveries.c.status, webhook_deliveries.c.attempts)
                        )
                    ).all()
                return rows if all(r.status == "delivered" for r in rows) else None

            rows = await eventually(settled, timeout=30)
            async with domain.db.read() as conn:
                attempts = (
                    (await conn.execute(select(webhook_attempts.c.status_code))).scalars().all()
                )
        finally:
            await domain.db.dispose()
    ids = receiver.message_ids()
    assert len(ids) == len(set(ids)) == 300  # no event reached the receiver twice
    assert len(rows) == 300
    assert attempts.count(200) == 300  # one successful attempt per delivery
    assert len(attempts) == sum(r.attempts for r in rows)  # every attempt logged once
