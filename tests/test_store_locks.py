"""A SQLite lock held by another process never stalls the event loop.

SQLite's own busy handler sleeps in the calling thread: on the event loop, a write
lock held 2 s elsewhere froze every request for 2 s. The loop's connections wait
with asyncio sleeps instead. Here another process holds the lock (as a backup tool or
the `sqlite3` shell would) while the service answers; a write issued meanwhile
completes once the lock is released, or after BUSY_SECONDS answers 503 `store_busy`.

How stalled the loop was: a ticker coroutine wakes every 10 ms and records the
longest gap between its wake-ups. A loop stalled by the lock shows a gap about as
long as the lock was held; the assertions allow half of that.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from peopletasks.store import Database, database
from peopletasks.store.database import sqlite_path
from tests.conftest import error_of, new_database_url, service_on

HELD_SECONDS = 2.0

#: Another process: takes the lock (`BEGIN <mode>`; EXCLUSIVE puts the file in rollback
#: journal mode first), says "locked", holds it until a line arrives on stdin (or 60 s
#: pass), then commits and says "released".
_HOLDER = """
import select, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
if sys.argv[2] == "EXCLUSIVE":  # in rollback-journal mode, where it keeps readers out
    connection.execute("PRAGMA journal_mode=DELETE")
connection.execute("BEGIN " + sys.argv[2])
if sys.argv[2] == "EXCLUSIVE":
    connection.execute("CREATE TABLE IF NOT EXISTS holder (x)")  # the lock is taken now
print("locked", flush=True)
select.select([sys.stdin], [], [], 60)
connection.execute("COMMIT")
print("released", flush=True)
"""


class Holder:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    async def release(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        line = await asyncio.to_thread(self.process.stdout.readline)
        assert line.strip() == "released", line


@contextmanager
def lock_held(path: Path, mode: str = "IMMEDIATE") -> Iterator[Holder]:
    """Another process holds SQLite's lock on `path` inside this block (until released)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield Holder(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


class Ticker:
    """How long the event loop went without running a coroutine that asks every 10 ms."""

    def __init__(self) -> None:
        self.longest_gap = 0.0
        self.ticks = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks += 1
            last = now


@asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    try:
        yield ticker
    finally:
        task.cancel()


async def test_reads_answer_while_another_process_holds_the_write_lock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_database_url(request, "sqlite", tmp_path)
    path = sqlite_path(url)
    assert path is not None
    async with service_on(url) as (_domain, api):
        task = await api.create()
        loop = asyncio.get_running_loop()
        with lock_held(path) as holder:
            async with ticking() as ticker:
                write = asyncio.create_task(api.create(title="issued while locked"))
                answered = 0
                until = loop.time() + HELD_SECONDS
                while loop.time() < until:
                    health = await api.http.get("/healthz")
                    assert health.status_code == 200, health.text
                    seen = await api.get(f"/tasks/{task['id']}")
                    assert seen.status_code == 200, seen.text
                    answered += 1
                    await asyncio.sleep(0.05)
                assert not write.done(), "a write went through while the lock was held"
                await holder.release()
                created = await asyncio.wait_for(write, timeout=10)
        assert created["title"] == "issued while locked"
        assert answered >= 5, answered  # requests kept being answered all along
        assert ticker.longest_gap < HELD_SECONDS / 2, ticker.longest_gap
        listed = await api.get(f"/tasks/{created['id']}")
        assert listed.status_code == 200


async def test_a_write_that_waits_too_long_is_told_the_store_is_busy(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After BUSY_SECONDS (30; shortened here) a write gives up with 503 `store_busy`;
    `/healthz` says so while the lock is held, and both recover once it is released."""
    monkeypatch.setattr(database, "BUSY_SECONDS", 0.5)
    monkeypatch.setattr(database, "PROBE_BUSY_SECONDS", 0.2)
    url = new_database_url(request, "sqlite", tmp_path)
    path = sqlite_path(url)
    assert path is not None
    async with service_on(url) as (_domain, api):
        await api.create()
        with lock_held(path) as holder:
            body = {"title": "x", "approver": "a@example.com", "requester": "r@example.com"}
            refused = await api.post("/tasks", json=body)
            assert refused.status_code == 503, refused.text
            assert error_of(refused)["code"] == "store_busy"
            assert "locked" in error_of(refused)["message"]
            health = await api.http.get("/healthz")
            assert health.status_code == 503, health.text
            assert error_of(health)["code"] == "store_busy"
            await holder.release()
        health = await api.http.get("/healthz")
        assert health.status_code == 200, health.text
        await api.create(title="after the lock")


async def test_a_read_that_meets_a_lock_waits_without_stalling_the_loop(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """In WAL mode readers never wait for a writer, but a file in SQLite's rollback
    journal mode (as `VACUUM INTO` or an old backup leaves it) is locked for readers by
    a writer's EXCLUSIVE lock: opening the connection (which switches the file to WAL)
    and reading wait, off the loop, and go on once the lock is released."""
    url = new_database_url(request, "sqlite", tmp_path)
    path = sqlite_path(url)
    assert path is not None
    db = Database(url)
    try:
        with lock_held(path, "EXCLUSIVE") as holder:
            async with ticking() as ticker:

                async def read() -> int:
                    async with db.read() as conn:
                        return int(await conn.scalar(text("SELECT count(*) FROM organizations")))

                reading = asyncio.create_task(read())
                ticks = ticker.ticks
                await asyncio.sleep(HELD_SECONDS)  # the other process holds its lock so long
                assert not reading.done(), "read through an exclusive lock"
                assert ticker.ticks - ticks > 20, "the loop stopped while the read waited"
                await holder.release()
                assert await asyncio.wait_for(reading, timeout=10) == 0
            assert ticker.longest_gap < HELD_SECONDS / 2, ticker.longest_gap
    finally:
        await db.dispose()
