"""Writes under concurrency: what a caller is told is what the store holds.

On SQLite, concurrent writers share one transaction (group commit, a savepoint
each); these tests hold the store to the promises of `Database.write()` on both
databases: a write that returns is durable and visible to any new connection, a
write that fails leaves nothing behind and does not take its neighbours with it,
and `after_commit` callbacks run only once the work is committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from peopletasks.store import Database, database
from peopletasks.store.database import after_commit, keep_so_far, sqlite_path
from peopletasks.store.tables import organizations
from peopletasks.timeutil import utcnow
from tests.conftest import new_database_url


class Refused(Exception):
    pass


async def _names(url: str) -> set[str]:
    """The organizations as a brand-new handle (its own connections) sees them."""
    fresh = Database(url)
    try:
        async with fresh.read() as conn:
            rows = await conn.execute(select(organizations.c.name))
            return {row.name for row in rows}
    finally:
        await fresh.dispose()


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> AsyncIterator[tuple[Database, str]]:
    url = new_database_url(request, backend, tmp_path)
    db = Database(url)
    yield db, url
    await db.dispose()


async def test_concurrent_writes_keep_the_successful_and_drop_the_failed(
    store: tuple[Database, str],
) -> None:
    db, url = store
    committed: list[str] = []

    async def one(i: int) -> str:
        name = f"org-{i}"
        async with db.write() as conn:
            await conn.execute(organizations.insert().values(name=name, created_at=utcnow()))
            after_commit(lambda: committed.append(name))
            if i % 3 == 0:
                raise Refused(name)
        return name

    results = await asyncio.gather(*(one(i) for i in range(60)), return_exceptions=True)
    ok = {r for r in results if isinstance(r, str)}
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(ok) == 40 and len(refused) == 20
    assert await _names(url) == ok
    assert set(committed) == ok


async def test_a_write_is_visible_to_a_new_connection_when_it_returns(
    store: tuple[Database, str],
) -> None:
    db, url = store
    seen: list[bool] = []

    async def one(i: int) -> None:
        async with db.write() as conn:
            await conn.execute(organizations.insert().values(name=f"o{i}", created_at=utcnow()))
        seen.append(f"o{i}" in await _names(url))

    await asyncio.gather(*(one(i) for i in range(20)))
    assert seen == [True] * 20


async def test_work_kept_before_a_failure_stays_and_its_callbacks_run(
    store: tuple[Database, str],
) -> None:
    """What a decision after the deadline does: the expiry is kept, then a 409."""
    db, url = store
    ran: list[str] = []

    async def decide_late() -> None:
        async with db.write() as conn:
            await conn.execute(organizations.insert().values(name="kept", created_at=utcnow()))
            after_commit(lambda: ran.append("kept"))
            await keep_so_far(conn)
            await conn.execute(organizations.insert().values(name="dropped", created_at=utcnow()))
            after_commit(lambda: ran.append("dropped"))
            raise Refused

    with pytest.raises(Refused):
        await decide_late()
    assert await _names(url) == {"kept"}
    assert ran == ["kept"]


async def test_a_constraint_error_fails_that_write_only(store: tuple[Database, str]) -> None:
    db, url = store

    async def one(name: str) -> None:
        async with db.write() as conn:
            await conn.execute(organizations.insert().values(name=name, created_at=utcnow()))

    results = await asyncio.gather(one("a"), one("b"), one("a"), one("c"), return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and "unique" in str(failures[0]).lower()
    assert await _names(url) == {"a", "b", "c"}
    async with db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(organizations)) == 3


async def test_a_failed_commit_fails_every_writer_of_its_group(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SQLite shares a COMMIT among concurrent writers (all three below start in one
    turn of the event loop): when it fails, each of them is told so, nothing of
    theirs is stored and none of their callbacks runs."""
    url = new_database_url(request, "sqlite", tmp_path)
    db = Database(url)
    ran: list[str] = []
    try:
        async with db.write() as conn:
            # A constraint SQLite checks only at COMMIT (deferred), to make one fail.
            await conn.execute(
                text(
                    "CREATE TABLE claims (id INTEGER PRIMARY KEY, org INTEGER REFERENCES"
                    " organizations(id) DEFERRABLE INITIALLY DEFERRED)"
                )
            )

        async def one(name: str, org: int) -> None:
            async with db.write() as conn:
                await conn.execute(organizations.insert().values(name=name, created_at=utcnow()))
                await conn.execute(text("INSERT INTO claims (org) VALUES (:org)"), {"org": org})
                after_commit(lambda: ran.append(name))

        results = await asyncio.gather(
            one("a", 1), one("b", 999_999), one("c", 1), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results), results
        assert all("foreign key" in str(r).lower() for r in results), results
        assert await _names(url) == set()
        assert ran == []
        # The store goes on: the next write commits.
        async with db.write() as conn:
            await conn.execute(organizations.insert().values(name="d", created_at=utcnow()))
        assert await _names(url) == {"d"}
    finally:
        await db.dispose()


async def test_the_wal_stays_bounded_under_a_load_that_never_pauses(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite copies its write-ahead log into the database file on a thread, beside the
    writers, which never quite catches up while they write; once the log holds
    RESTART_FRAMES, writers wait for the last frames and the log starts afresh. The
    log file stays small however long the load, and every write is in the store."""
    monkeypatch.setattr(database, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(database, "RESTART_FRAMES", 100)
    url = new_database_url(request, "sqlite", tmp_path)
    path = sqlite_path(url)
    assert path is not None
    wal = path.with_name(path.name + "-wal")
    db = Database(url)
    padding = "x" * 2000  # a page of table and a page of unique index per write, at least
    largest_wal = 0
    try:

        async def writer(k: int) -> None:
            nonlocal largest_wal
            for i in range(250):
                async with db.write() as conn:
                    row = {"name": f"{k}-{i}-{padding}", "created_at": utcnow()}
                    await conn.execute(organizations.insert().values(**row))
                largest_wal = max(largest_wal, wal.stat().st_size)

        await asyncio.gather(*(writer(k) for k in range(8)))
        written_pages = 2 * 8 * 250
    finally:
        await db.dispose()
    # Without the restarts the log would hold every page written (SQLite's own
    # automatic checkpoint would have let it reach 10,000).
    assert largest_wal < written_pages * 4096 / 4, (largest_wal, written_pages)
    plain = sqlite3.connect(path)
    try:
        assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert plain.execute("SELECT count(*) FROM organizations").fetchone() == (2000,)
    finally:
        plain.close()
