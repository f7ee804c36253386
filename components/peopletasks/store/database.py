"""The database handle: `write()` for a transaction, `read()` for queries.

SQLite (the embedded default) runs its statements right on the event loop, through
the standard `sqlite3` driver: a statement on an indexed table takes microseconds,
far less than handing it to a thread (what aiosqlite does, ~0.1-0.3 ms per call,
several calls per query). Writes go through one connection, one transaction at a
time, so writers queue in-process instead of failing with "database is locked";
reads use a second connection in WAL mode and never wait for writers. Both
connections stay open for the life of the handle. One process serves a SQLite
store (`peopletasks serve --workers N` refuses SQLite).

A lock held elsewhere (another process's write transaction, a backup, WAL recovery)
never stalls the event loop: SQLite's own busy handler would sleep on the loop, every
request with it, so the loop's connections have none (`busy_timeout=0`). A statement
that meets SQLITE_BUSY (the writer's BEGIN IMMEDIATE, a read, opening a connection)
is tried again after an asyncio sleep, backing off as SQLite's handler does, for up
to BUSY_SECONDS in all; then it fails with 503 `store_busy`. Inside a write
transaction the lock is ours (WAL): no statement there, COMMIT included, waits.

Group commit (SQLite): writers that come while a transaction is open join it, each
inside its own savepoint (an error rolls back that writer's work only), and one
COMMIT at the end of the event loop's turn makes the group durable; every
`write()` returns (and runs its `after_commit` callbacks) only after that commit.
A commit writes every changed page to the WAL: shared by the group, concurrent
creates and decisions cost a fraction of one each.

Checkpoints (SQLite): a commit appends to the WAL; copying the WAL back into the
database file (a checkpoint, with two fsyncs) runs on a thread of its own at most
every second, beside the writers, instead of inside the COMMIT that fills the WAL
(which held the event loop, every request with it, for 100-200 ms each 10,000
pages). Under a load that never pauses, writers wait briefly every RESTART_FRAMES
frames so that the WAL can start afresh instead of growing.

Statements the domain builds once (`prepared(...)`) run on SQLite through the fast
path of `store.prepared`, held to plain SQLAlchemy's result.

PostgreSQL (asyncpg) uses a pool of async connections for both.

When the store, not the request, fails (a full disk, a lock held past BUSY_SECONDS,
a read-only or corrupt file, a server down), `write()` and `read()` raise
`StoreUnavailable` (503; `store.failures` says which errors those are). A failed
write is remembered until a write succeeds: meanwhile `health()` probes whether
writes would work again (free space, a page allocated and rolled back, the file
writable), so `/healthz` answers 503 while writes fail and recovers by itself.

SQLite's query planner needs statistics (`ANALYZE`) to choose between indexes well:
without them `filter=assignee:<id>` walks a whole organization. `Database.optimize`
refreshes them where they are missing or stale, cheaply: before the first statement,
hourly (the service's background workers) and at close.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import Connection, Dialect, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from peopletasks.errors import StoreUnavailable
from peopletasks.store.failures import is_busy, store_unavailable
from peopletasks.store.prepared import (
    PreparedResult,
    check_sqlalchemy,
    plan_for,
    prepared,
    run,
    translated,
)

__all__ = [
    "BUSY_SECONDS",
    "Conn",
    "Database",
    "LoopConnection",
    "PreparedResult",
    "after_commit",
    "keep_so_far",
    "prepared",
    "sqlite_path",
]

T = TypeVar("T")
#: SQLite page cache per connection (KiB) and memory-mapped reads (bytes): a create
#: touches a page of each of the task's indexes; read through the OS with the
#: default 2 MB cache, that cost more CPU than the rest of the request.
CACHE_KIB = 64 * 1024
MMAP_BYTES = 256 * 1024 * 1024
#: The WAL is copied into the database file on a thread of its own (`_Checkpointer`),
#: at most this often while there are commits. SQLite's automatic checkpoint runs
#: inside the COMMIT that fills the WAL and held the event loop through its two
#: fsyncs (measured: 28,000 frames, 208 ms; 26 ms unsynced), every request with it.
CHECKPOINT_SECONDS = 1.0
#: A checkpoint beside running writers never quite catches up, so the WAL would
#: grow without end under a steady load: once it holds this many frames, writers
#: wait while the frames written since the last checkpoint are copied, and the next
#: transaction starts the WAL afresh.
RESTART_FRAMES = 40_000
#: How long, in all, a statement on the event loop waits for a SQLite lock that
#: another connection holds (asyncio sleeps between tries, never the loop's time).
BUSY_SECONDS = 30.0
#: The pauses between tries (the last repeated): those of SQLite's own busy handler.
_BUSY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05)
#: `health()` after a failed write: the folder of a SQLite file needs this much free
#: space, and a transaction must be able to allocate this much (then rolled back).
MIN_FREE_BYTES = 1024 * 1024
PROBE_BYTES = 64 * 1024
#: How long `health()` waits for the write lock (it answers a monitor, not a caller).
PROBE_BUSY_SECONDS = 1.0
#: PostgreSQL connections kept per process, and how many more it may open at once.
POOL_SIZE = 32
POOL_OVERFLOW = 8
#: The savepoint of each writer inside a group transaction (SQLite).
_SAVEPOINT = "writer"

log = logging.getLogger("peopletasks.store")

#: From 3.46 `PRAGMA optimize` bounds its own ANALYZE and, with 0x10000, checks every
#: table, not only those its connection used; before that we do both ourselves.
_OPTIMIZE_CHECKS_ALL = sqlite3.sqlite_version_info >= (3, 46, 0)
#: Rows ANALYZE reads per index (older SQLite): ~3 ms on 100,000 tasks, and the same
#: plans as a full ANALYZE (~250 ms) for our indexes.
ANALYSIS_LIMIT = 400
#: A table analyzed when it had n rows is analyzed again at 25 n (or n / 25), as SQLite does.
_REANALYZE_RATIO = 25


async def patiently(call: Callable[[], T], patience: float | None = None) -> T:
    """`call()`; while it fails with SQLITE_BUSY, again after an asyncio sleep, for up to
    `patience` seconds in all (BUSY_SECONDS by default; then its last error). The loop
    never waits on a lock."""
    if patience is None:
        patience = BUSY_SECONDS
    try:
        return call()
    except Exception as error:
        if patience <= 0 or not is_busy(error):
            raise
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    for pause in itertools.chain(_BUSY_PAUSES, itertools.repeat(_BUSY_PAUSES[-1])):
        await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))
        try:
            return call()
        except Exception as error:
            if loop.time() >= deadline or not is_busy(error):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _commit_failed(error: sqlite3.Error) -> Exception:
    """A group's COMMIT (or the transaction) failed: nothing of it is stored."""
    failure = translated(error, "COMMIT")
    failure.peopletasks_commit_failed = True  # type: ignore[attr-defined]
    return failure


def _is_commit_failure(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "peopletasks_commit_failed", False):
            return True
        seen = seen.__cause__
    return False


class _Callbacks:
    """The `after_commit` callbacks of a `write()` block: those of work made durable by
    `keep_so_far` (run even if the block then fails), and the rest."""

    __slots__ = ("kept", "pending")

    def __init__(self) -> None:
        self.kept: list[Callable[[], None]] = []
        self.pending: list[Callable[[], None]] = []


#: Callbacks of the current `Database.write()` transaction, run once it has committed.
_after_commit: ContextVar[_Callbacks | None] = ContextVar("peopletasks_after_commit", default=None)


def after_commit(callback: Callable[[], None]) -> bool:
    """Run `callback` once the current `write()` transaction commits (never on rollback).

    False (and nothing registered) outside a `write()` block.
    """
    callbacks = _after_commit.get()
    if callbacks is None:
        return False
    callbacks.pending.append(callback)
    return True


async def keep_so_far(conn: Conn) -> None:
    """Commit the work of the current `write()` block so far: it stays even if the rest
    of the block fails, and its `after_commit` callbacks run either way."""
    await conn.commit()
    callbacks = _after_commit.get()
    if callbacks is not None:
        callbacks.kept.extend(callbacks.pending)
        callbacks.pending.clear()


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
    """A synchronous SQLAlchemy connection used from the event loop (SQLite only).

    `patient`: a statement that meets a lock held elsewhere is tried again (`patiently`):
    the reader's (each statement its own transaction). The writer's statements run
    inside its transaction, whose lock it holds.
    """

    def __init__(self, sync: Connection, *, patient: bool = False) -> None:
        self.sync = sync
        self.patient = patient

    @property
    def dialect(self) -> Dialect:
        return self.sync.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        plan = plan_for(statement, parameters, self.sync.dialect)
        if plan is not None:
            raw = self.sync.connection.dbapi_connection
            try:
                return run(raw, plan, parameters)
            except Exception as error:
                if not self.patient or not is_busy(error):
                    raise
            return await patiently(lambda: run(raw, plan, parameters))
        return await self._plain(self.sync.execute, statement, parameters)

    async def _plain(self, method: Callable[..., T], statement: Any, parameters: Any) -> T:
        try:
            return method(statement, parameters)
        except Exception as error:
            if not self.patient or not is_busy(error):
                raise
        return await patiently(lambda: method(statement, parameters))

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return await self._plain(self.sync.scalar, statement, parameters)

    async def scalars(self, statement: Any, parameters: Any = None) -> Any:
        return await self._plain(self.sync.scalars, statement, parameters)

    async def commit(self) -> None:
        """Keep the work so far, even if the rest of the `write()` block fails (it
        commits with the block's group; see `Database`)."""
        raw = self.sync.connection.dbapi_connection
        assert raw is not None
        if raw.in_transaction:
            raw.execute(f"RELEASE {_SAVEPOINT}")
            raw.execute(f"SAVEPOINT {_SAVEPOINT}")

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync, *args)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _json_text(value: Any) -> str:
    """JSON columns written by orjson (json.dumps was a few % of a create's CPU)."""
    return orjson.dumps(value).decode()


def _sqlite_engine(url: str) -> Engine:
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_engine(
        sync_url,
        pool_size=1,
        max_overflow=0,
        # No busy handler: it would sleep on the event loop (see `patiently`).
        connect_args={"timeout": 0, "check_same_thread": False},
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not _OPTIMIZE_CHECKS_ALL:
            cursor.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        # Checkpoints are the writer's `_Checkpointer`'s, off the event loop: SQLite's
        # own ran inside the COMMIT that filled the WAL.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return engine


def _open(connection: Connection | None, engine: Engine) -> Connection:
    """`connection`, or a new one of `engine` when there is none or it broke."""
    if connection is not None and not connection.invalidated and not connection.closed:
        return connection
    if connection is not None:
        connection.close()
    return engine.connect()


async def _open_patiently(connection: Connection | None, engine: Engine) -> Connection:
    """`_open`, trying again while the file is locked elsewhere (e.g. WAL recovery)."""
    if connection is not None and not connection.invalidated and not connection.closed:
        return connection
    return await patiently(lambda: _open(connection, engine))


def _sqlite_statistics(dbapi_connection: Any) -> list[tuple[Any, ...]]:
    try:
        return list(dbapi_connection.execute("SELECT tbl, idx, stat FROM sqlite_stat1"))
    except sqlite3.OperationalError:  # no such table: never analyzed
        return []


def _stale_tables(dbapi_connection: Any) -> list[str]:
    """Tables with indexes whose statistics are missing (and that have rows) or whose
    size changed 25-fold since (max(rowid) as the cheap size estimate)."""
    analyzed: dict[str, int] = {}
    for table, _index, stat in _sqlite_statistics(dbapi_connection):
        analyzed[table] = int(str(stat or "0").split()[0] or 0)
    stale = []
    indexed = dbapi_connection.execute(
        "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'index'"
        " AND tbl_name NOT LIKE 'sqlite_%'"
    )
    for (table,) in list(indexed):
        quoted = '"' + table.replace('"', '""') + '"'  # a name from our own schema
        try:
            size = dbapi_connection.execute(f"SELECT max(rowid) FROM {quoted}")  # noqa: S608
        except sqlite3.OperationalError:  # a WITHOUT ROWID table: let SQLite judge it
            continue
        rows = size.fetchone()[0] or 0
        before = analyzed.get(table)
        if before is None:
            if rows:
                stale.append(quoted)
        elif rows >= before * _REANALYZE_RATIO or rows * _REANALYZE_RATIO <= before:
            stale.append(quoted)
    return stale


def optimize_sqlite(dbapi_connection: Any) -> bool:
    """SQLite's `PRAGMA optimize=0x10002` (analyze, bounded, every table whose statistics
    are missing or stale); emulated before 3.46. True when the statistics changed."""
    before = _sqlite_statistics(dbapi_connection)
    if _OPTIMIZE_CHECKS_ALL:
        dbapi_connection.execute("PRAGMA optimize=0x10002")
    else:
        for table in _stale_tables(dbapi_connection):
            dbapi_connection.execute(f"ANALYZE {table}")
        dbapi_connection.execute("PRAGMA optimize")
    return _sqlite_statistics(dbapi_connection) != before


class _GroupWriter:
    """The one connection writing to a SQLite file from an event loop, with group commit
    (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        self.engine = _sqlite_engine(url)
        self.users: weakref.WeakSet[Database] = weakref.WeakSet()
        self.closed = False
        self._write_lock = asyncio.Lock()
        self._writer: Connection | None = None
        #: The open transaction's group of writers (resolved by its commit).
        self._group: asyncio.Future[None] | None = None
        self._commit_scheduled = False
        #: Copies the WAL into the file off the event loop (None: in memory, no WAL).
        self._checkpointer = _Checkpointer(path, self) if path is not None else None

    def busy(self) -> bool:
        """A writer is inside its block, or waiting for the file's write lock."""
        return self._write_lock.locked()

    @asynccontextmanager
    async def transaction(self, patience: float | None = None) -> AsyncIterator[LoopConnection]:
        """A writer's block in the group's transaction. `patience`: how long to wait
        for the file's write lock when another connection holds it (`patiently`)."""
        async with self._write_lock:
            sync = self._writer = await _open_patiently(self._writer, self.engine)
            raw = sync.connection.dbapi_connection
            assert raw is not None
            if self._group is None:
                await patiently(lambda: raw.execute("BEGIN IMMEDIATE"), patience)
                self._group = asyncio.get_running_loop().create_future()
            group = self._group
            raw.execute(f"SAVEPOINT {_SAVEPOINT}")
            failure: Exception | None = None
            try:
                yield LoopConnection(sync)
            except Exception as error:
                failure = error
                self._undo(raw)
            except BaseException:  # cancelled: nobody waits for the answer
                self._undo(raw)
                self._commit_soon()
                raise
            else:
                self._keep(raw)
            self._commit_soon()
        if failure is None:
            await asyncio.shield(group)
            return
        try:
            await asyncio.shield(group)  # work it kept (`keep_so_far`) is committed
        except Exception as lost:
            raise failure from lost
        raise failure

    def _keep(self, raw: Any) -> None:
        try:
            raw.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as error:
            self._abandon_group(raw, error)

    def _undo(self, raw: Any) -> None:
        try:
            raw.execute(f"ROLLBACK TO {_SAVEPOINT}")
            raw.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as error:
            self._abandon_group(raw, error)

    def _abandon_group(self, raw: Any, error: sqlite3.Error) -> None:
        """The transaction cannot go on: roll it all back, fail every writer of the group."""
        group, self._group = self._group, None
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        if group is not None and not group.done():
            group.set_exception(_commit_failed(error))

    def _commit_soon(self) -> None:
        if not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_group)

    def _commit_group(self) -> None:
        """Commit the writers that ran since the group began, unless one is still inside
        its block (it schedules this again when it leaves)."""
        self._commit_scheduled = False
        if self._group is None or self._write_lock.locked():
            return
        self._commit_open_group()

    def _commit_open_group(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        assert self._writer is not None
        raw = self._writer.connection.dbapi_connection
        assert raw is not None
        try:
            raw.execute("COMMIT")
        except sqlite3.Error as error:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            group.set_exception(_commit_failed(error))
            return
        group.set_result(None)
        if self._checkpointer is not None:
            self._checkpointer.committed()

    @asynccontextmanager
    async def writers_held(self) -> AsyncIterator[None]:
        """No writer runs, and every group is committed, inside this block."""
        async with self._write_lock:
            self._commit_open_group()
            yield

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._group is not None and not self._write_lock.locked():
            self._commit_open_group()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()
        self.closed = True


def _probe_sqlite_writes(raw: Any) -> None:
    """Inside a write transaction: raise what a write would meet now (a read-only file,
    no page to allocate), changing nothing."""
    raw.execute("SAVEPOINT probe")
    try:
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        raw.execute(f"PRAGMA user_version = {int(version)}")  # a write: refused if read-only
        raw.execute("CREATE TABLE peopletasks_probe (filler BLOB)")
        raw.execute("INSERT INTO peopletasks_probe VALUES (zeroblob(?))", (PROBE_BYTES,))
    finally:
        if raw.in_transaction:  # (SQLite may have rolled back all of it on a full disk)
            raw.execute("ROLLBACK TO probe")
            raw.execute("RELEASE probe")


def _free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


class _Checkpointer:
    """Copies a SQLite file's WAL into the file on a thread (one connection of its own),
    at most every CHECKPOINT_SECONDS while there are commits, beside the writers; past
    RESTART_FRAMES, the rest with the writers held, so the WAL starts afresh."""

    def __init__(self, path: Path, writer: _GroupWriter) -> None:
        self._path = path
        self._writer = writer
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoint")
        self._connection: sqlite3.Connection | None = None
        self._dirty: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def committed(self) -> None:
        if self._stopped:
            return
        if self._dirty is None:
            self._dirty = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._dirty.set()

    async def _run(self) -> None:
        assert self._dirty is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                frames = await loop.run_in_executor(self._thread, self._checkpoint)
                if frames >= RESTART_FRAMES:
                    async with self._writer.writers_held():
                        await loop.run_in_executor(self._thread, self._checkpoint)
            except Exception as error:  # the next one tries again
                log.warning("WAL checkpoint of %s failed: %s", self._path, error)
            await asyncio.sleep(CHECKPOINT_SECONDS)

    def _checkpoint(self) -> int:
        """One PASSIVE checkpoint (on the thread); the frames the WAL holds."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
        row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]) if row else 0

    def stop(self) -> None:
        """Stop checkpointing (a checkpoint under way finishes first)."""
        self._stopped = True
        if self._task is not None and not self._task.get_loop().is_closed():
            self._task.cancel()
        self._thread.shutdown(wait=True)
        if self._connection is not None:
            self._connection.close()
            self._connection = None


#: The group writers of each event loop, by SQLite file.
_GROUP_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _GroupWriter]] = (
    weakref.WeakKeyDictionary()
)


class Database:
    """Connections to the service store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.path: Path | None = None
        self._sqlite_url: str | None = None
        self._sqlite_key = ""
        self._sqlite_reader: Engine | None = None
        self._reader: Connection | None = None
        self._writers: dict[asyncio.AbstractEventLoop, _GroupWriter] = {}
        self._optimized = False
        #: Why the last write failed, while no write has succeeded since (see `health`).
        self.write_failure: StoreUnavailable | None = None
        self.engine: AsyncEngine | None = None
        if self.is_sqlite:
            check_sqlalchemy()
            self.path = path = sqlite_path(url)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise StoreUnavailable(
                        f"cannot create the store's folder {path.parent}: {error.strerror}"
                    ) from error
            self._sqlite_url = url
            # One writer per file (an in-memory store is this handle's own).
            self._sqlite_key = str(path.resolve()) if path is not None else f"memory:{id(self)}"
            self._sqlite_reader = _sqlite_engine(url)
        else:
            # A request holds a connection for its transaction. Connections beyond
            # the pool's size are closed when returned, and each new one costs a
            # PostgreSQL backend (a fork, and the handshake on both sides): with 10
            # kept, 32 concurrent decisions made 154-188/s; with 32 kept, 252/s.
            self.engine = create_async_engine(
                url,
                pool_size=POOL_SIZE,
                max_overflow=POOL_OVERFLOW,
                pool_pre_ping=True,
                json_serializer=_json_text,
                json_deserializer=orjson.loads,
            )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        """A transaction that commits on success and rolls back on error; then runs the
        callbacks registered with `after_commit` (only after a commit).

        Raises `StoreUnavailable` when the store cannot take the write (see
        `store.failures`); other errors as they are."""
        if not self._optimized:
            await self.optimize()
        callbacks = _Callbacks()
        token = _after_commit.set(callbacks)
        try:
            async with self._transaction() as conn:
                yield conn
        except Exception as error:
            if not _is_commit_failure(error):
                for callback in callbacks.kept:
                    callback()
            failure = store_unavailable(error)
            if failure is None:
                raise
            self._write_failed(failure)
            if failure is error:
                raise
            raise failure from error
        finally:
            _after_commit.reset(token)
        self._write_succeeded()
        for callback in (*callbacks.kept, *callbacks.pending):
            callback()

    def _write_failed(self, failure: StoreUnavailable) -> None:
        if self.write_failure is None:
            log.warning("writes to the store %s fail: %s", self._where(), failure.message)
        self.write_failure = failure

    def _write_succeeded(self) -> None:
        if self.write_failure is not None:
            log.warning("the store %s takes writes again", self._where())
            self.write_failure = None

    def _where(self) -> str:
        return str(self.path) if self.path is not None else make_url(self.url).render_as_string()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        if self._sqlite_url is None:
            # Not `engine.begin()`: after `keep_so_far` commits, the block goes on in a
            # new transaction (begun on its next statement).
            async with self._postgres() as connection:
                await connection.begin()
                try:
                    yield connection
                except BaseException:
                    await connection.rollback()
                    raise
                await connection.commit()
            return
        async with self._group_writer().transaction() as conn:
            yield conn

    @asynccontextmanager
    async def _postgres(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; a server that cannot be reached is `StoreUnavailable`."""
        assert self.engine is not None
        async with AsyncExitStack() as stack:
            try:
                connection = await stack.enter_async_context(self.engine.connect())
            except Exception as error:
                failure = store_unavailable(error, connecting=True)
                if failure is None or failure is error:
                    raise
                raise failure from error
            yield connection

    def _group_writer(self) -> _GroupWriter:
        """The writer of this store's file on the running event loop (shared by every
        `Database` of that file on the loop: two would block each other's commits)."""
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            assert self._sqlite_url is not None
            on_loop = _GROUP_WRITERS.setdefault(loop, {})
            key = self._sqlite_key
            writer = on_loop.get(key)
            if writer is None or writer.closed:
                writer = on_loop[key] = _GroupWriter(self._sqlite_url)
            writer.users.add(self)
            self._writers[loop] = writer
        return writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A connection for reads. Raises `StoreUnavailable` when the store cannot answer."""
        if not self._optimized:
            await self.optimize(wait=False)
        try:
            if self._sqlite_reader is None:
                async with self._postgres() as connection:
                    yield connection
                return
            self._reader = await _open_patiently(self._reader, self._sqlite_reader)
            yield LoopConnection(self._reader, patient=True)
        except Exception as error:
            failure = store_unavailable(error)
            if failure is None or failure is error:
                raise
            raise failure from error

    async def health(self) -> None:
        """Raise `StoreUnavailable` unless the store answers reads and, after a failed
        write, would take writes again (a probe that changes nothing; then the failure
        is forgotten). Cheap while writes succeed: one read."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))
        if self.write_failure is None:
            return
        try:
            await self._probe_writes()
        except Exception as error:
            failure = store_unavailable(error, connecting=True)
            if failure is None:
                raise
            self.write_failure = failure
            if failure is error:
                raise
            raise failure from error
        self._write_succeeded()

    async def _probe_writes(self) -> None:
        if self._sqlite_url is None:
            async with self._postgres() as connection, connection.begin():
                read_only = await connection.scalar(text("SHOW transaction_read_only"))
            if read_only == "on":
                raise StoreUnavailable("the store is read-only (PostgreSQL)")
            return
        if self.path is not None:
            free = await asyncio.to_thread(_free_bytes, self.path.parent)
            if free < MIN_FREE_BYTES:
                raise StoreUnavailable(
                    f"the store is full: {free} bytes free on its disk", code="store_full"
                )
        writer = self._group_writer()
        async with writer.transaction(PROBE_BUSY_SECONDS) as conn:
            _probe_sqlite_writes(conn.sync.connection.dbapi_connection)

    async def optimize(self, *, wait: bool = True) -> None:
        """Refresh SQLite's query-planner statistics where missing or stale (a few ms; a
        no-op when nothing changed, and on PostgreSQL, which analyzes by itself).
        `wait=False`: not now if writers are busy or the file is locked elsewhere
        (then on a later call)."""
        if self._sqlite_url is None:
            self._optimized = True
            return
        writer = self._group_writer()
        if not wait and writer.busy():
            return
        self._optimized = True
        try:
            async with writer.transaction(None if wait else 0.0) as conn:
                changed = optimize_sqlite(conn.sync.connection.dbapi_connection)
        except Exception as error:
            if is_busy(error) and not wait:
                self._optimized = False
                return
            failure = store_unavailable(error)
            if failure is not None:
                log.warning("refreshing the SQLite statistics failed: %s", failure.message)
            else:
                log.exception("refreshing the SQLite statistics failed; queries still work")
            return
        if changed and self._reader is not None:
            # A connection keeps the statistics it loaded: read with a new one.
            self._reader.close()
            self._reader = None
            assert self._sqlite_reader is not None
            self._sqlite_reader.dispose()  # the pool would hand back the same one

    async def dispose(self) -> None:
        if self._optimized:
            await self.optimize(wait=False)  # as SQLite recommends before closing
        for loop, writer in self._writers.items():
            writer.users.discard(self)
            if not writer.users:
                writer.close()
                _GROUP_WRITERS.get(loop, {}).pop(self._sqlite_key, None)
        self._writers.clear()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.engine is not None:
            await self.engine.dispose()
        if self._sqlite_reader is not None:
            self._sqlite_reader.dispose()
