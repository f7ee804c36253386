"""The database handle: `write()` for a transaction, `read()` for queries.

SQLite (the embedded default) runs its statements right on the event loop, through
the standard `sqlite3` driver: a statement on an indexed table takes microseconds,
far less than handing it to a thread (what aiosqlite does, ~0.1-0.3 ms per call,
several calls per query). Writes go through one connection, one transaction at a
time, so writers queue in-process instead of failing with "database is locked";
reads use a second connection in WAL mode and never wait for writers. Both
connections stay open for the life of the handle. One process serves a SQLite
store.

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

Statements the domain builds once (`prepared(...)`, values bound per call) run on
SQLite without SQLAlchemy's per-execution machinery: compiled once, their values
and rows converted by the same type processors SQLAlchemy uses (measured: a read
by id 75 -> 25 us).

PostgreSQL (asyncpg) uses a pool of async connections for both.

SQLite's query planner needs statistics (`ANALYZE`) to choose between indexes well:
without them `filter=assignee:<id>` walks a whole organization. `Database.optimize`
refreshes them where they are missing or stale, cheaply: before the first statement,
hourly (the service's background workers) and at close.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import weakref
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import Connection, Dialect, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
_MISSING: Any = object()
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
#: PostgreSQL connections kept per process, and how many more it may open at once.
POOL_SIZE = 32
POOL_OVERFLOW = 8
#: The savepoint of each writer inside a group transaction (SQLite).
_SAVEPOINT = "writer"


def _translated(error: sqlite3.Error, sql: str) -> Exception:
    """The SQLAlchemy exception SQLAlchemy would have raised (IntegrityError, ...)."""
    kinds: list[tuple[type[sqlite3.Error], type[sa_exc.DBAPIError]]] = [
        (sqlite3.IntegrityError, sa_exc.IntegrityError),
        (sqlite3.OperationalError, sa_exc.OperationalError),
        (sqlite3.ProgrammingError, sa_exc.ProgrammingError),
        (sqlite3.DataError, sa_exc.DataError),
    ]
    for driver, ours in kinds:
        if isinstance(error, driver):
            return ours(sql, None, error)
    return sa_exc.DatabaseError(sql, None, error)


log = logging.getLogger("peopletasks.store")

#: From 3.46 `PRAGMA optimize` bounds its own ANALYZE and, with 0x10000, checks every
#: table, not only those its connection used; before that we do both ourselves.
_OPTIMIZE_CHECKS_ALL = sqlite3.sqlite_version_info >= (3, 46, 0)
#: Rows ANALYZE reads per index (older SQLite): ~3 ms on 100,000 tasks, and the same
#: plans as a full ANALYZE (~250 ms) for our indexes.
ANALYSIS_LIMIT = 400
#: A table analyzed when it had n rows is analyzed again at 25 n (or n / 25), as SQLite does.
_REANALYZE_RATIO = 25


def _commit_failed(error: sqlite3.Error) -> Exception:
    """A group's COMMIT (or the transaction) failed: nothing of it is stored."""
    failure = _translated(error, "COMMIT")
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


#: Statements built once by the domain (see `prepared`), by id; kept alive here.
_PREPARED: dict[int, Any] = {}
#: Statements of `prepared(..., reread_by=...)`: (key column, parameter).
_REREAD_BY: dict[int, tuple[str, str]] = {}
#: Statements of `prepared(..., row_from_values=True)`.
_ROW_FROM_VALUES: set[int] = set()

S = TypeVar("S")


def prepared(
    statement: S, *, reread_by: tuple[str, str] | None = None, row_from_values: bool = False
) -> S:
    """Mark `statement` (built once, its values bound per call) for SQLite's fast path.

    `reread_by=(column, parameter)`: an UPDATE ... RETURNING whose `column` (unique,
    left unchanged) equals `parameter` runs without RETURNING on SQLite, and its row
    is read back by that key (RETURNING cost ~30 us more on a decision, measured).

    `row_from_values`: an INSERT ... RETURNING of one row answers with the values it
    was given, the new key, and for the columns it does not name the defaults its
    first row read back (their server defaults are constants: checked). The first
    row is also compared with the values given: a column the database would store
    otherwise (a type it converts) keeps the read back. Saves the read back (~20 us
    and the conversion of every column, on a task).
    """
    _PREPARED[id(statement)] = statement
    if reread_by is not None:
        _REREAD_BY[id(statement)] = reread_by
    if row_from_values:
        _ROW_FROM_VALUES.add(id(statement))
    return statement


def _constant_defaults(table: Any, given: tuple[str, ...]) -> bool:
    """Every column an INSERT naming `given` leaves to the database gets a constant."""
    for column in table.columns:
        if column.key in given or column.primary_key:
            continue
        default = column.server_default
        if default is not None and not isinstance(getattr(default, "arg", None), str):
            return False
    return True


class _Plan:
    """A prepared statement compiled for SQLite, with its type processors."""

    __slots__ = (
        "compiled",
        "defaults",
        "direct",
        "from_values",
        "key_column",
        "learned",
        "names",
        "processors",
        "reread",
        "reread_param",
        "results",
        "returns",
        "row",
        "sql",
        "steps",
    )

    def __init__(
        self,
        statement: Any,
        dialect: Dialect,
        keys: tuple[str, ...],
        reread_by: tuple[str, str] | None = None,
        row_from_values: bool = False,
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.positiontup is None or compiled._render_postcompile:
            raise ValueError("not a plain positional statement")
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("expanding (IN) parameters are not prepared")
        self.compiled = compiled
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup)
        self.processors = compiled._bind_processors
        self.steps = tuple((name, self.processors.get(name)) for name in self.names)
        #: Values written into the statement (`status == 'pending'`), by bind name.
        self.defaults = {
            name: compiled.binds[name].effective_value
            for name in self.names
            if not compiled.binds[name].required
        }
        self.direct = not compiled.escaped_bind_names
        columns = compiled._result_columns or []
        self.returns = bool(columns)
        self.row = _row_class(tuple(column[0] for column in columns))
        self.results = tuple(
            column[3]._cached_result_processor(dialect, None) for column in columns
        )
        #: An INSERT's RETURNING, read back by rowid instead: SQLite's RETURNING cost
        #: 74 us on a task insert (measured), the read back 20.
        self.reread: str | None = None
        #: Whose value keys the read back (None: the inserted rowid).
        self.reread_param: str | None = None
        head, returning, listed = self.sql.rpartition(" RETURNING ")
        key: str | None = None
        if returning and compiled.isinsert and " ON CONFLICT " not in head:
            key = "rowid"
        elif returning and compiled.isupdate and reread_by is not None:
            column, self.reread_param = reread_by
            key = dialect.identifier_preparer.quote(column)
        if key is not None:
            table = dialect.identifier_preparer.format_table(statement.table)
            self.sql = head
            # Names from our own schema, as SQLAlchemy rendered them.
            self.reread = f"SELECT {listed} FROM {table} WHERE {key} = ?"  # noqa: S608
        #: `row_from_values` (see `prepared`): the INSERT's rowid column, and what the
        #: columns it does not name hold (learned from its first row; None until then,
        #: and for good when that row did not read back as given).
        self.from_values = False
        self.key_column: str | None = None
        self.learned: dict[str, Any] | None = None
        if row_from_values and key == "rowid":
            primary = list(statement.table.primary_key.columns)
            returned = {column[0] for column in columns}
            if (
                len(primary) == 1
                and primary[0].key in returned
                and primary[0].key not in keys
                and _constant_defaults(statement.table, keys)
            ):
                self.from_values = True
                self.key_column = primary[0].key

    def row_of(self, parameters: dict[str, Any], rowid: int) -> Any:
        """The INSERT's row from its values (`row_from_values`, once learned)."""
        assert self.learned is not None and self.key_column is not None
        values = {**self.learned, **self.defaults, **parameters, self.key_column: rowid}
        return self.row(*[values[name] for name in self.row._fields])

    def learn(self, parameters: dict[str, Any], row: Any) -> None:
        """From the first row read back: the values of the columns not named, and
        whether the named ones read back as given (else keep reading back)."""
        given = {**self.defaults, **parameters}
        stored = row._asdict()
        if any(stored[name] != value for name, value in given.items() if name in stored):
            self.from_values = False
            return
        self.learned = {
            name: value
            for name, value in stored.items()
            if name not in given and name != self.key_column
        }

    def values(self, parameters: dict[str, Any] | None) -> list[Any]:
        if self.direct:
            given = {**self.defaults, **parameters} if parameters else self.defaults
            try:
                return [
                    given[name] if process is None else process(given[name])
                    for name, process in self.steps
                ]
            except KeyError:
                pass  # a value is missing: SQLAlchemy says which
        given = self.compiled.construct_params(parameters)
        processors = self.processors
        return [
            processors[name](given[name]) if name in processors else given[name]
            for name in self.names
        ]

    def rows(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        results = self.results
        make = self.row
        return [
            make(*[f(v) if f is not None else v for f, v in zip(results, row, strict=True)])
            for row in raw
        ]


def _row_class(keys: tuple[str, ...]) -> Any:
    """A row with attribute access and `_mapping`, like SQLAlchemy's `Row`."""
    if not keys:
        return None
    base = namedtuple("PreparedRow", keys)  # type: ignore[misc]

    class PreparedRow(base):
        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(keys, self, strict=True))

    return PreparedRow


class PreparedResult:
    """What the domain uses of a result, over rows fetched at once."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (
                NoResultFound("expected one row")
                if not self._rows
                else MultipleResultsFound("expected one row")
            )
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


_PLANS: dict[tuple[int, tuple[str, ...]], _Plan | None] = {}


class LoopConnection:
    """A synchronous SQLAlchemy connection used from the event loop (SQLite only)."""

    def __init__(self, sync: Connection) -> None:
        self.sync = sync

    @property
    def dialect(self) -> Dialect:
        return self.sync.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        key = id(statement)
        if key in _PREPARED and (parameters is None or type(parameters) is dict):
            names = tuple(sorted(parameters)) if parameters else ()
            plan = _PLANS.get((key, names), _MISSING)
            if plan is _MISSING:
                try:
                    plan = _Plan(
                        statement,
                        self.sync.dialect,
                        names,
                        _REREAD_BY.get(key),
                        key in _ROW_FROM_VALUES,
                    )
                except ValueError:
                    plan = None
                _PLANS[(key, names)] = plan
            if plan is not None:
                assert isinstance(plan, _Plan)
                return self._run(plan, parameters)
        return self.sync.execute(statement, parameters)

    def _run(self, plan: _Plan, parameters: dict[str, Any] | None) -> PreparedResult:
        raw = self.sync.connection.dbapi_connection
        assert raw is not None
        try:
            cursor = raw.execute(plan.sql, plan.values(parameters))
        except sqlite3.Error as error:
            raise _translated(error, plan.sql) from error
        if plan.reread is not None:
            if cursor.rowcount != 1:
                return PreparedResult([], cursor.rowcount)
            if plan.reread_param is None:
                key = cursor.lastrowid
                if plan.learned is not None and parameters:
                    return PreparedResult([plan.row_of(parameters, key)], 1)
            else:
                assert parameters is not None
                key = parameters[plan.reread_param]
            again = plan.rows(raw.execute(plan.reread, (key,)).fetchall())
            if plan.from_values and plan.learned is None and parameters and again:
                plan.learn(parameters, again[0])
            return PreparedResult(again, 1)
        if plan.returns:
            return PreparedResult(plan.rows(cursor.fetchall()), cursor.rowcount)
        return PreparedResult([], cursor.rowcount)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.scalar(statement, parameters)

    async def scalars(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.scalars(statement, parameters)

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
        connect_args={"timeout": 30, "check_same_thread": False},
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
        cursor.execute("PRAGMA busy_timeout=30000")
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

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._write_lock:
            sync = self._writer = _open(self._writer, self.engine)
            raw = sync.connection.dbapi_connection
            assert raw is not None
            if self._group is None:
                raw.execute("BEGIN IMMEDIATE")
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
        self._sqlite_url: str | None = None
        self._sqlite_key = ""
        self._sqlite_reader: Engine | None = None
        self._reader: Connection | None = None
        self._writers: dict[asyncio.AbstractEventLoop, _GroupWriter] = {}
        self._optimized = False
        self.engine: AsyncEngine | None = None
        if self.is_sqlite:
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
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
        callbacks registered with `after_commit` (only after a commit)."""
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
            raise
        finally:
            _after_commit.reset(token)
        for callback in (*callbacks.kept, *callbacks.pending):
            callback()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        if self._sqlite_url is None:
            assert self.engine is not None
            # Not `engine.begin()`: after `keep_so_far` commits, the block goes on in a
            # new transaction (begun on its next statement).
            async with self.engine.connect() as connection:
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
        """A connection for reads."""
        if not self._optimized:
            await self.optimize()
        if self._sqlite_reader is None:
            assert self.engine is not None
            async with self.engine.connect() as connection:
                yield connection
            return
        self._reader = _open(self._reader, self._sqlite_reader)
        yield LoopConnection(self._reader)

    async def optimize(self) -> None:
        """Refresh SQLite's query-planner statistics where missing or stale (a few ms; a
        no-op when nothing changed, and on PostgreSQL, which analyzes by itself)."""
        self._optimized = True
        if self._sqlite_url is None:
            return
        try:
            async with self._group_writer().transaction() as conn:
                assert isinstance(conn, LoopConnection)
                changed = optimize_sqlite(conn.sync.connection.dbapi_connection)
        except Exception:
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
            await self.optimize()  # as SQLite recommends before closing
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
