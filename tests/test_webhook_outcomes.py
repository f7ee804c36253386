"""What the dispatcher makes of each answer: retries and their spacing, `Retry-After`,
`410 Gone`, the attempt log, a slow receiver, URLs that cannot be sent.

The receiver here is in memory (`MockTransport`): these tests are about the
dispatcher's bookkeeping on the real service and store (both backends), not about
the wire, which tests/test_webhook_transport.py and test_webhook_delivery.py cover
with real receivers.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from peopletasks.domain import Domain
from peopletasks.store.tables import webhooks
from peopletasks.webhooks.dispatcher import Dispatcher, make_sender
from peopletasks.webhooks.retry import RetryStrategy
from peopletasks.webhooks.transport import MockTransport, Reply, Request, SendError
from tests.conftest import Api, new_database_url, service_on
from tests.support.receiver import eventually

#: Answers the n-th request (0-based) to a path.
Behaviour = Callable[[int], Reply | Awaitable[Reply]]
BASE = 0.2  # the retry strategy's base delay here (seconds)


def ok(n: int) -> Reply:
    return Reply(200, {}, b"ok")


@dataclass
class Memory:
    """The service on a store of its own, its dispatcher sending into memory."""

    domain: Domain
    api: Api
    anonymous: Api
    transport: MockTransport
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    def url(self, behaviour: Behaviour = ok, name: str = "hook") -> str:
        path = f"/{uuid.uuid4().hex[:12]}/{name}"
        self.behaviours[path] = behaviour
        return f"http://receiver.test{path}"

    def at(self, url: str) -> list[Request]:
        path = urlsplit(url).path
        return [r for r in self.transport.requests if urlsplit(r.url).path == path]

    async def answer(self, request: Request) -> Reply:
        path = urlsplit(request.url).path
        n = sum(1 for r in self.transport.requests if urlsplit(r.url).path == path) - 1
        result = self.behaviours.get(path, ok)(n)
        return result if isinstance(result, Reply) else await result

    async def hooked_task(self, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        task = await self.api.create()
        response = await self.api.post("/webhooks", json={"url": url, "taskId": task["id"]})
        assert response.status_code == 201, response.text
        return task, response.json()

    async def approve(self, task: dict[str, Any]) -> None:
        response = await self.anonymous.put(
            f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]}
        )
        assert response.status_code == 200, response.text

    async def deliveries(self, hook_id: str) -> list[dict[str, Any]]:
        response = await self.api.get(f"/webhooks/{hook_id}/deliveries")
        assert response.status_code == 200, response.text
        return list(response.json())

    async def settled(
        self, hook_id: str, until: Callable[[dict[str, Any]], bool] | str = "attempted"
    ) -> dict[str, Any]:
        """The webhook's delivery once `until` holds of it: a predicate, or a status
        (`attempted`: any attempt logged). The row is read before its attempts, so
        a final status comes with every attempt that led to it."""

        def check(delivery: dict[str, Any]) -> bool:
            if callable(until):
                return until(delivery)
            if until == "attempted":
                return bool(delivery["attemptLog"])
            return bool(delivery["status"] == until)

        async def found() -> dict[str, Any] | None:
            listed = await self.deliveries(hook_id)
            return listed[0] if listed and check(listed[0]) else None

        return dict(await eventually(found, timeout=10))


@pytest.fixture(scope="module")
async def memory(
    request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Memory]:
    url = new_database_url(request, backend, tmp_path_factory.mktemp("memory"))
    async with service_on(url, org="memory") as (domain, api):
        transport = MockTransport(lambda request: Reply(500, {}, b""))
        memory = Memory(domain, api, Api(api.http, None, ""), transport)
        transport.handler = memory.answer
        dispatcher = Dispatcher(
            domain,
            make_sender(allow_private=False, transport=transport),
            strategy=RetryStrategy(base=BASE, max_delay=1.0),
            poll_seconds=0.1,
        )
        running = asyncio.create_task(dispatcher.run())
        try:
            yield memory
        finally:
            running.cancel()
            await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_failures_are_retried_with_growing_delays_and_every_attempt_logged(
    memory: Memory,
) -> None:
    def flaky(n: int) -> Reply:
        return Reply(503, {}, b"down for maintenance") if n < 3 else Reply(200, {}, b"thanks")

    url = memory.url(flaky)
    task, hook = await memory.hooked_task(url)
    await memory.approve(task)
    delivery = await memory.settled(hook["id"], "delivered")
    attempts = delivery["attemptLog"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4
    assert [a["statusCode"] for a in attempts] == [503, 503, 503, 200]
    assert [a["error"] for a in attempts] == ["HTTP 503"] * 3 + [None]
    assert attempts[0]["responseBody"] == "down for maintenance"
    assert attempts[-1]["responseBody"] == "thanks"
    assert all(a["latencyMs"] >= 0 for a in attempts)
    # Each wait is at least half its backoff (base * 2^(n-1), times jitter in [0.5, 1)).
    times = [_at(a["attemptedAt"]) for a in attempts]
    for n, (before, after) in enumerate(itertools.pairwise(times), start=1):
        assert (after - before).total_seconds() >= 0.5 * BASE * 2 ** (n - 1) - 0.002
    sent = memory.at(url)
    assert len(sent) == 4
    assert len({r.headers["webhook-id"] for r in sent}) == 1  # one message, four attempts
    assert sent[0].body == sent[-1].body
    assert sent[0].headers["user-agent"].startswith("peopletasks-webhooks/")


@pytest.mark.parametrize("form", ["seconds", "date"])
async def test_retry_after_sets_the_next_attempt(memory: Memory, form: str) -> None:
    wait = 120

    def busy(n: int) -> Reply:
        when = datetime.now(UTC) + timedelta(seconds=wait)
        value = str(wait) if form == "seconds" else format_datetime(when, usegmt=True)
        return Reply(429, {"retry-after": value}, b"")

    task, hook = await memory.hooked_task(memory.url(busy))
    await memory.approve(task)

    def delay(delivery: dict[str, Any]) -> float:
        attempted = _at(delivery["attemptLog"][-1]["attemptedAt"])
        return (_at(delivery["nextAttemptAt"]) - attempted).total_seconds()

    delivery = await memory.settled(
        hook["id"], lambda d: bool(d["attemptLog"]) and d["status"] == "pending" and delay(d) > 0
    )
    assert wait - 2 <= delay(delivery) <= wait + 1  # not the 0.1-0.2 s the backoff would give
    assert delivery["attemptLog"][0]["statusCode"] == 429


async def test_gone_disables_the_webhook_and_is_not_retried(memory: Memory) -> None:
    url = memory.url(lambda n: Reply(410, {}, b""))
    task, hook = await memory.hooked_task(url)
    await memory.approve(task)
    delivery = await memory.settled(hook["id"], "failed")
    assert delivery["attemptLog"][0]["error"] == "410 Gone: webhook disabled"
    read = (await memory.api.get(f"/webhooks/{hook['id']}")).json()
    assert read["disabledAt"] is not None and "410" in read["disabledReason"]
    assert delivery["nextAttemptAt"] is None and delivery["attempts"] == 1
    assert len(memory.at(url)) == 1


async def test_errors_below_http_are_logged_and_retried(memory: Memory) -> None:
    def unreachable(n: int) -> Reply:
        if n == 0:
            raise SendError("cannot connect to receiver.test port 80: Connection refused")
        return Reply(204, {}, b"")

    task, hook = await memory.hooked_task(memory.url(unreachable))
    await memory.approve(task)
    delivery = await memory.settled(hook["id"], "delivered")
    first, second = delivery["attemptLog"]
    assert first["statusCode"] is None and "Connection refused" in first["error"]
    assert second["statusCode"] == 204


async def test_only_the_first_4_kib_of_an_answer_is_logged(memory: Memory) -> None:
    def verbose(n: int) -> Reply:
        return Reply(500, {}, b"x" * 10_000) if n == 0 else Reply(200, {}, b"")

    task, hook = await memory.hooked_task(memory.url(verbose))
    await memory.approve(task)
    delivery = await memory.settled(hook["id"])
    assert delivery["attemptLog"][0]["responseBody"] == "x" * 4096


async def test_a_slow_receiver_does_not_hold_up_others(memory: Memory) -> None:
    release = asyncio.Event()

    async def slow(n: int) -> Reply:
        await release.wait()
        return Reply(200, {}, b"")

    slow_url = memory.url(slow, "slow")
    slow_task, slow_hook = await memory.hooked_task(slow_url)
    fast_task, fast_hook = await memory.hooked_task(memory.url(name="fast"))
    await memory.approve(slow_task)
    await eventually(lambda: memory.at(slow_url))
    await memory.approve(fast_task)
    try:
        await memory.settled(fast_hook["id"], "delivered")
        assert (await memory.deliveries(slow_hook["id"]))[0]["attemptLog"] == []
    finally:
        release.set()
    await memory.settled(slow_hook["id"], "delivered")


async def _store_url(domain: Domain, hook_id: str, url: str) -> None:
    """As a registration before URLs were normalised (or a hand edit) left it."""
    async with domain.db.write() as conn:
        await conn.execute(webhooks.update().where(webhooks.c.public_id == hook_id).values(url=url))


async def test_a_stored_url_that_is_not_ascii_is_sent_percent_encoded(memory: Memory) -> None:
    url = memory.url()
    task, hook = await memory.hooked_task(url)
    await _store_url(memory.domain, hook["id"], url + "/café?q=ü")
    await memory.approve(task)
    await memory.settled(hook["id"], "delivered")
    (sent,) = memory.at(url + "/caf%C3%A9")
    assert sent.url == url + "/caf%C3%A9?q=%C3%BC"


@pytest.mark.parametrize("stored", ["http://exa¡mple.test/hook", "http://☃.test/hook"])
async def test_a_stored_url_that_cannot_be_sent_fails_once_not_for_three_days(
    memory: Memory, stored: str
) -> None:
    task, hook = await memory.hooked_task(memory.url())
    await _store_url(memory.domain, hook["id"], stored)
    await memory.approve(task)
    delivery = await memory.settled(hook["id"], "failed")
    assert delivery["nextAttemptAt"] is None and delivery["attempts"] == 1
    assert delivery["attemptLog"][0]["error"].startswith("cannot be sent: ")
    # Nothing reached the transport (every other test sends to receiver.test).
    assert all(urlsplit(r.url).hostname == "receiver.test" for r in memory.transport.requests)
