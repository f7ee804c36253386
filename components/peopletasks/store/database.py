"""The database handle: `write()` for a transaction, `read()` for queries.

SQLite (the embedded default) runs its statements right on the event loop, through
the standard `sqlite3` driver: a statement on an indexed table takes microseconds,
far less than handing it to a thread (what aiosqlite does, ~0.1-0.3 ms per call,
several calls per query). Writes go through one connection, one transaction at a
time (`BEGIN IMMEDIATE`), so writers queue in-process instead of failing with
"database is locked"; reads use a second connection in WAL mode and never wait
for writers. One process serves a SQLite store.

PostgreSQL (asyncpg) uses a pool of async connections for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import Connection, Dialect, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")

#: Callbacks of the current `Database.write()` transaction, run once it has committed.
_after_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "peopletasks_after_commit", default=None
)


def after_commit(callback: Callable[[], None]) -> bool:
    """Run `callback` once the current `write()` transaction commits (never on rollback).

    False (and nothing registered) outside a `write()` block.
    """
    callbacks = _after_commit.get()
    if callbacks is None:
        return False
    callbacks.append(callback)
    return True


class Conn(Protocol):
    """What the domain uses of a connection (an AsyncConnection fits)."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    async def scalar(self, statement: Any, parameters: Any = None) -> Any: ...

    async def scalars(self, statement: Any, parameters: Any = None) -> Any: ...

    async def commit(self) -> None: ...

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T: ...


class LoopConnection:
    """A synchronous SQLAlchemy connection used from the event loop (SQLite only)."""

    def __init__(self, sync: Connection) -> None:
        self.sync = sync

    @property
    def dialect(self) -> Dialect:
        return self.sync.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.scalar(statement, parameters)

    async def scalars(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.scalars(statement, parameters)

    async def commit(self) -> None:
        self.sync.commit()

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync, *args)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _sqlite_engine(url: str, *, writer: bool) -> Engine:
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_engine(
        sync_url,
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": 30, "check_same_thread": False},
        json_deserializer=orjson.loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if writer:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """Connections to the service store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self._sqlite_writer: Engine | None = None
        self._sqlite_reader: Engine | None = None
        self._write_lock = asyncio.Lock()
        self.engine: AsyncEngine | None = None
        if self.is_sqlite:
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._sqlite_writer = _sqlite_engine(url, writer=True)
            self._sqlite_reader = _sqlite_engine(url, writer=False)
        else:
            self.engine = create_async_engine(
                url,
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
                json_deserializer=orjson.loads,
            )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        """A transaction that commits on success and rolls back on error; then runs the
        callbacks registered with `after_commit` (only after a commit)."""
        callbacks: list[Callable[[], None]] = []
        token = _after_commit.set(callbacks)
        try:
            async with self._transaction() as conn:
                yield conn
        finally:
            _after_commit.reset(token)
        for callback in callbacks:
            callback()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        if self._sqlite_writer is None:
            assert self.engine is not None
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock:
            with self._sqlite_writer.connect() as sync:
                sync.begin()
                try:
                    yield LoopConnection(sync)
                except BaseException:
                    sync.rollback()
                    raise
                sync.commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A connection for reads."""
        if self._sqlite_reader is None:
            assert self.engine is not None
            async with self.engine.connect() as connection:
                yield connection
            return
        with self._sqlite_reader.connect() as sync:
            yield LoopConnection(sync)

    async def dispose(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
        for engine in (self._sqlite_writer, self._sqlite_reader):
            if engine is not None:
                engine.dispose()
