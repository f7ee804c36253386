"""The service's mail survives a killed service, and replicas share it without doubling
it: real `peopletasks serve` processes, a real SMTP server."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from peopletasks.service.app import build_domain
from peopletasks.store.tables import mail_attempts, mail_messages
from peopletasks.timeutil import parse_datetime
from tests.conftest import TEST_KEY, new_database_url, settings_for
from tests.support.receiver import eventually
from tests.support.server import ServiceProcess, cli, service_env
from tests.support.smtp import Inbox

FAST = {
    "PEOPLETASKS_MAIL_RETRY_BASE_SECONDS": "0.2",
    "PEOPLETASKS_MAIL_RETRY_MAX_DELAY_SECONDS": "1",
    "PEOPLETASKS_MAIL_POLL_SECONDS": "0.2",
}


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return new_database_url(request, backend, tmp_path)


def env_for(database: str, inbox: Inbox) -> dict[str, str]:
    # SMTP timeout 2 s: a killed replica's leases expire after 4 x 2 + 5 = 13 s.
    return service_env(database, TEST_KEY, **inbox.env(), **FAST)


async def create_tasks(bases: list[str], token: str, count: int, **fields: Any) -> list[str]:
    """`count` tasks mailed on create (one mail each: the requester is the approver)."""
    auth = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> str:
            async with gate:
                created = await client.post(
                    f"{bases[i % len(bases)]}/people-task/tasks",
                    headers=auth,
                    json={
                        "title": f"t{i}",
                        "requester": "a@example.com",
                        "approver": "a@example.com",
                        "allowSelfApproval": True,  # one mail per task
                        "notify": ["email"],
                        **fields,
                    },
                )
                assert created.status_code == 201, created.text
                return str(created.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def stored_messages(database: str) -> tuple[list[Any], list[Any]]:
    domain = build_domain(settings_for(database))
    try:
        async with domain.db.read() as conn:
            messages = (await conn.execute(select(mail_messages))).all()
            attempts = (await conn.execute(select(mail_attempts))).all()
    finally:
        await domain.db.dispose()
    return list(messages), list(attempts)


async def test_sigkill_with_1000_queued_messages_loses_none_and_sends_each_at_most_twice(
    fresh_database: str, backend: str
) -> None:
    with Inbox(delay=0.3) as inbox:  # slow until the kill: the outbox fills up
        env = env_for(fresh_database, inbox)
        token = cli("token", "create", "--email", "k@example.com", env=env).splitlines()[-1]
        service = ServiceProcess(env).start()
        try:
            task_ids = await create_tasks([service.url], token, 1000)
            await eventually(lambda: len(inbox.received) >= 20, timeout=30)
            service.stop(signal.SIGKILL)
        finally:
            service.stop()
        before = {m.message_id for m in inbox.mails()}
        assert len(before) < 1000, "the kill came too late to prove anything"
        inbox.delay = 0.0
        with ServiceProcess(env):
            await eventually(lambda: len({m.message_id for m in inbox.mails()}) >= 1000, timeout=90)
            stored, _ = await eventually(
                lambda: _all_sent(fresh_database), timeout=30, interval=0.2
            )
        received = inbox.mails()
    per_id = Counter(m.message_id for m in received)
    assert len(per_id) == 1000 and max(per_id.values()) <= 2  # none lost, none thrice
    assert {str(m.message["X-PeopleTasks-Task-Id"]) for m in received} == set(task_ids)
    twice = [message_id for message_id, n in per_id.items() if n == 2]
    assert all(message_id in before for message_id in twice)  # only those in flight at the kill
    assert {m.message_id for m in stored} == set(per_id)  # the log has each, its Message-ID


async def _all_sent(database: str) -> tuple[list[Any], list[Any]] | None:
    messages, attempts = await stored_messages(database)
    if len(messages) == 1000 and all(m.status == "sent" for m in messages):
        return messages, attempts
    return None


async def test_two_replicas_on_postgresql_never_send_a_message_twice(
    fresh_database: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("several replicas need PostgreSQL")
    with Inbox() as inbox:
        env = env_for(fresh_database, inbox)
        token = cli("token", "create", "--email", "r@example.com", env=env).splitlines()[-1]
        with ServiceProcess(env) as one, ServiceProcess(env) as two:
            await create_tasks([one.url, two.url], token, 300)
            await eventually(lambda: len(inbox.received) >= 300, timeout=60)
            messages, attempts = await eventually(
                lambda: _settled(fresh_database, 300), timeout=30, interval=0.2
            )
        ids = [m.message_id for m in inbox.mails()]
    assert len(ids) == len(set(ids)) == 300  # no message reached the server twice
    assert all(m.attempts == 1 for m in messages)
    assert len(attempts) == 300 and {a.smtp_code for a in attempts} == {250}


async def _settled(database: str, count: int) -> tuple[list[Any], list[Any]] | None:
    messages, attempts = await stored_messages(database)
    done = len(messages) == count and all(m.status == "sent" for m in messages)
    return (messages, attempts) if done and len(attempts) == count else None


async def test_reminders_survive_a_restart(fresh_database: str, backend: str) -> None:
    with Inbox() as inbox:
        env = env_for(fresh_database, inbox)
        token = cli("token", "create", "--email", "s@example.com", env=env).splitlines()[-1]
        service = ServiceProcess(env).start()
        try:
            [task_id] = await create_tasks(
                [service.url], token, 1, reminders={"every": 2, "max": 4}
            )
            await eventually(lambda: inbox.mails(task_id, kind="reminder"), timeout=10)
            service.stop(signal.SIGKILL)
        finally:
            service.stop()
        with ServiceProcess(env) as again:
            await eventually(lambda: len(_distinct(inbox, task_id)) >= 3, timeout=20)
            reminders = list(_distinct(inbox, task_id).values())
            async with httpx.AsyncClient() as client:
                task = (
                    await client.get(
                        f"{again.url}/people-task/tasks/{task_id}",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                ).json()
    # Each reminder once (one killed mid-send may come again: with its Message-ID), in
    # order, none before its time (created + 2 s x its number), at most one per 2 s slot
    # (a time missed while the service was down is skipped, not made up).
    numbers = [int(m.subject.split(":")[0].removeprefix("Reminder ")) for m in reminders]
    assert numbers == list(range(1, len(numbers) + 1))
    created = parse_datetime(task["createdAt"]).timestamp()
    assert all(m.at >= created + 2 * n - 0.05 for n, m in zip(numbers, reminders, strict=True))
    slots = [int((m.at - created) // 2) for m in reminders]
    assert all(a < b for a, b in itertools.pairwise(slots)), slots
    assert task["remindersSent"] >= 3


def _distinct(inbox: Inbox, task_id: str) -> dict[str, Any]:
    """A task's reminders, each Message-ID once (its first arrival)."""
    found: dict[str, Any] = {}
    for mail in inbox.mails(task_id, kind="reminder"):
        found.setdefault(mail.message_id, mail)
    return found
