"""SQLite's fast path for statements built once (`prepared(...)`) gives what plain
SQLAlchemy gives.

Every statement the code marks `prepared(...)` over the service's tables (found in the
registry, so a new one is covered as soon as it exists) runs here both ways, on the
same data: through plain SQLAlchemy (`conn.sync.execute`) inside a savepoint that is
then rolled back, and through the fast path; rows (names, values, types), rowcount,
errors and the table it writes must be the same. The workload is the service's own
(create, read with each kind of caller, decide from pending and from due, webhooks
handed to the dispatcher), so `row_from_values` and `reread_by` answer from the
values given and from the read back, as in production. And a table with Python-side
defaults (`default=`, `onupdate=`: scalar, callable, context-sensitive, SQL) stores
the same row both ways.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
)
from sqlalchemy.exc import CompileError, ResourceClosedError
from sqlalchemy.sql.compiler import SQLCompiler

from peopletasks.domain.decisions import expire_due_tasks
from peopletasks.errors import StoreUnavailable
from peopletasks.service.workers import BackgroundWorkers
from peopletasks.store import Database
from peopletasks.store import prepared as prepared_module
from peopletasks.store.database import LoopConnection
from peopletasks.store.prepared import PREPARED, Plan, PreparedResult, plan_for, prepared, run
from peopletasks.store.tables import metadata as service_metadata
from tests.conftest import new_database_url, service_on, settings_for
from tests.support.receiver import Receiver, eventually
from tests.test_task_fields import EVERY_FIELD


def _stored(raw: Any, statement: Any) -> list[tuple[Any, ...]] | None:
    """What the table a DML statement writes holds, as SQLite stores it."""
    table = getattr(statement, "table", None)
    if table is None or not getattr(statement, "is_dml", False):
        return None
    quoted = '"' + table.name.replace('"', '""') + '"'
    return list(raw.execute(f"SELECT * FROM {quoted} ORDER BY rowid"))  # noqa: S608


def _outcome(produce: Callable[[], Any], returning: bool) -> tuple[Any, Any]:
    """(what a caller sees of the result, the result or the error).

    The rowcount of an INSERT / UPDATE ... RETURNING is left out: SQLAlchemy's on
    SQLite is not the number of rows (the driver counts them once its rows are read,
    and SQLAlchemy reads it before: 0 for an UPDATE; for an INSERT, 0 or 1 depending on
    when it is asked; its docs call rowcount unreliable with RETURNING). The fast path
    answers the number of rows, as PostgreSQL does: checked here instead."""
    try:
        result = produce()
    except Exception as error:
        return ("error", type(error).__name__), error
    if not result.returns_rows:
        with pytest.raises(ResourceClosedError):
            result.all()
        return ("no rows", result.rowcount), result
    rows = [(tuple(row._fields), repr(tuple(row))) for row in result.all()]
    if returning:
        if isinstance(result, PreparedResult):
            assert result.rowcount == len(rows)
        return ("rows", rows), result
    return ("rows", rows, result.rowcount), result


def both_ways(conn: LoopConnection, statement: Any, parameters: Any, plan: Plan) -> Any:
    """Run `statement` through plain SQLAlchemy and (on the same data) the fast path;
    fail unless they agree. The fast path's result (or error) is the caller's."""
    sync = conn.sync
    raw = sync.connection.dbapi_connection
    raw.execute("SAVEPOINT both_ways")
    try:
        returning = bool(getattr(statement, "is_dml", False) and statement._returning)
        plain, _ = _outcome(lambda: sync.execute(statement, parameters), returning)
        plain_stored = _stored(raw, statement)
        raw.execute("ROLLBACK TO both_ways")
        fast, result = _outcome(lambda: run(raw, plan, parameters), returning)
        fast_stored = _stored(raw, statement)
    finally:
        raw.execute("RELEASE both_ways")
    assert fast == plain, (str(statement), parameters)
    assert fast_stored == plain_stored, (str(statement), parameters)
    if isinstance(result, Exception):
        raise result
    # A fresh result over the same rows (`_outcome` consumed nothing of a PreparedResult).
    return result


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Every prepared statement the fast path runs, run both ways; the ids of those run."""
    ran: set[int] = set()
    original = LoopConnection.execute

    async def checked(self: LoopConnection, statement: Any, parameters: Any = None) -> Any:
        if id(statement) in PREPARED:
            ran.add(id(statement))
        plan = plan_for(statement, parameters, self.sync.dialect)
        if plan is None:
            return await original(self, statement, parameters)
        return both_ways(self, statement, parameters, plan)

    monkeypatch.setattr(LoopConnection, "execute", checked)
    return ran


def _service_statements() -> dict[int, Any]:
    """The registry's statements over the service's tables that SQLite runs (those built
    for PostgreSQL, with its constructs, are left out)."""
    sqlite = sqlalchemy.dialects.sqlite.dialect()  # type: ignore[attr-defined]
    found = {}
    for key, statement in PREPARED.items():
        module = type(statement).__module__
        if module.startswith("sqlalchemy.dialects.") and ".sqlite" not in module:
            continue
        froms = statement.get_final_froms() if hasattr(statement, "get_final_froms") else []
        tables = [statement.table] if getattr(statement, "is_dml", False) else froms
        if not tables or any(t not in service_metadata.sorted_tables for t in tables):
            continue
        try:
            statement.compile(dialect=sqlite)
        except CompileError:
            continue
        found[key] = statement
    return found


async def test_every_prepared_statement_gives_what_plain_sqlalchemy_gives(
    request: pytest.FixtureRequest, tmp_path: Path, compared: set[int]
) -> None:
    url = new_database_url(request, "sqlite", tmp_path)
    with Receiver() as receiver:
        async with service_on(url, "creator@example.com") as (domain, api):
            workers = BackgroundWorkers(domain, settings_for(url))
            await workers.start()  # the dispatcher takes deliveries as they are written
            try:
                for round_ in range(3):  # the first inserts learn, the next answer from values
                    fields = EVERY_FIELD if round_ == 0 else {}  # JSON, custom fields, ...
                    task = await api.create(
                        **{**fields, "title": f"t{round_}", "approver": "boss@example.com"}
                    )
                    hook = await api.post(
                        "/webhooks", json={"url": receiver.url("/h"), "taskId": task["id"]}
                    )
                    assert hook.status_code == 201, hook.text
                    for secret in (task["approverSecret"], task["requesterSecret"]):
                        seen = await api.http.get(
                            f"/people-task/tasks/{task['id']}", params={"secret": secret}
                        )
                        assert seen.status_code == 200, seen.text
                    assert (await api.get(f"/tasks/{task['id']}")).status_code == 200
                    # The approve link's page (a link names its task, not its org).
                    page = urlsplit(task["links"]["approve"])
                    opened = await api.http.get(page.path, params=page.query)
                    assert opened.status_code == 200, opened.text
                    decided = await api.http.put(
                        f"/people-task/tasks/{task['id']}/approve",
                        json={"secret": task["approverSecret"], "comment": "fine"},
                    )
                    assert decided.json()["status"] == "approved", decided.text
                    again = await api.http.put(
                        f"/people-task/tasks/{task['id']}/reject",
                        json={"secret": task["approverSecret"]},
                    )
                    assert again.status_code == 409, again.text
                await eventually(lambda: len(receiver.at("/h")) >= 3 or None)
                # Decided late: pending past its deadline -> due -> approved.
                past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
                late = await api.create(
                    approver="boss@example.com", decisionBy=past, allowLateDecision=True
                )
                await expire_due_tasks(domain)
                due = await api.get(f"/tasks/{late['id']}")
                assert due.json()["status"] == "due", due.text
                decided = await api.http.put(
                    f"/people-task/tasks/{late['id']}/approve",
                    json={"secret": late["approverSecret"]},
                )
                assert decided.json()["status"] == "approved", decided.text
            finally:
                await workers.stop()
        # Person-wide secrets (PEOPLETASKS_PERSON_SECRETS): issued, then read with.
        async with service_on(url, "creator@example.com", person_secrets=True) as (_, api):
            for _round in range(2):
                task = await api.create(approver="boss@example.com")
                seen = await api.http.get(
                    f"/people-task/tasks/{task['id']}", params={"secret": task["approverSecret"]}
                )
                assert seen.status_code == 200, seen.text
    statements = _service_statements()
    assert statements, "no prepared statements found"
    never = [str(statements[key]) for key in statements if key not in compared]
    assert not never, f"the workload above never ran these prepared statements: {never}"


# A table with every kind of Python-side default SQLAlchemy fills in before executing.
class Counter:
    """A default that gives 1, 2, 3, ...; `at` rewinds it (to run a statement twice)."""

    def __init__(self, prefix: str = "") -> None:
        self.n = 0
        self.prefix = prefix

    def __call__(self) -> Any:
        self.n += 1
        return f"{self.prefix}{self.n}" if self.prefix else self.n


codes, serials, edits = Counter("code-"), Counter(), Counter()
COUNTERS = (codes, serials, edits)


def _echo_name(context: Any) -> str:
    return str(context.get_current_parameters()["name"]) + "!"


defaults = MetaData()
things = Table(
    "things",
    defaults,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False, default="plain"),  # NOT NULL: was IntegrityError
    Column("note", String, default="no note"),  # nullable: was stored as NULL
    Column("code", String, default=codes),  # a callable object: called per execution
    # What SQLAlchemy cannot inspect (a partial, a builtin) is called without arguments.
    Column("serial", Integer, default=functools.partial(Counter.__call__, serials)),
    Column("lowered", String, default=func.lower("SQL")),  # in the SQL itself
    Column("server", String, nullable=False, server_default="server"),
    Column("edits", Integer, default=0, onupdate=lambda: edits()),
    Column("edited_by", String, onupdate="someone"),
)
echoed = Table(
    "echoed",
    defaults,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("shout", String, default=_echo_name),  # needs SQLAlchemy's execution context
)

_INSERT_THING = prepared(things.insert().returning(things), row_from_values=True)
_INSERT_THING_PLAIN = prepared(things.insert())
_RENAME_THING = prepared(
    things.update()
    .where(things.c.name == bindparam("b_name"))
    .values(name=bindparam("b_new"))
    .returning(things),
    reread_by=("name", "b_new"),
)
_TOUCH_THING = prepared(things.update().where(things.c.id == bindparam("b_id")))
_INSERT_ECHOED = prepared(echoed.insert().returning(echoed))


@pytest.fixture
async def defaults_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(new_database_url(request, "sqlite", tmp_path))
    async with db.write() as conn:
        await conn.run_sync(defaults.create_all)
    yield db
    await db.dispose()


async def test_python_side_defaults_are_stored_as_plain_sqlalchemy_stores_them(
    defaults_store: Database,
) -> None:
    """Both ways on the same data, the counters rewound in between: the values they
    give, the rows answered and the rows stored must match."""

    def both(conn: LoopConnection, statement: Any, parameters: dict[str, Any]) -> None:
        plan = plan_for(statement, parameters, conn.sync.dialect)
        assert plan is not None, "a prepared statement left to plain SQLAlchemy"
        raw = conn.sync.connection.dbapi_connection
        before = [counter.n for counter in COUNTERS]
        raw.execute("SAVEPOINT defaults")
        returning = bool(statement._returning)
        plain, _ = _outcome(lambda: conn.sync.execute(statement, parameters), returning)
        plain_stored = _stored(raw, statement)
        raw.execute("ROLLBACK TO defaults")
        for counter, n in zip(COUNTERS, before, strict=True):
            counter.n = n
        fast, _ = _outcome(lambda: run(raw, plan, parameters), returning)
        fast_stored = _stored(raw, statement)
        raw.execute("RELEASE defaults")
        assert fast == plain, str(statement)
        assert fast_stored == plain_stored, str(statement)
        assert plain[0] != "error", plain

    async with defaults_store.write() as conn:
        assert isinstance(conn, LoopConnection)
        for i in range(3):  # the first learns from the read back, the next from the values
            both(conn, _INSERT_THING, {"name": f"thing-{i}"})
        both(conn, _INSERT_THING, {"name": "given", "kind": "special", "note": None})
        both(conn, _INSERT_THING_PLAIN, {"name": "plain"})
        both(conn, _RENAME_THING, {"b_name": "thing-0", "b_new": "renamed"})
        both(conn, _TOUCH_THING, {"b_id": 3, "note": "touched"})  # thing-2
    async with defaults_store.read() as conn:
        rows = {row.name: row for row in await conn.execute(select(things))}
    assert set(rows) == {"renamed", "thing-1", "thing-2", "given", "plain"}
    one, two = rows["thing-1"], rows["thing-2"]
    assert (one.kind, one.note, one.lowered, one.server, one.edits) == (
        "plain",
        "no note",
        "sql",
        "server",
        0,
    )
    assert one.code != two.code and one.serial != two.serial  # called once per row
    assert (rows["given"].kind, rows["given"].note) == ("special", None)
    assert rows["renamed"].edited_by == "someone" and rows["renamed"].edits != 0
    assert two.note == "touched" and two.edited_by == "someone"


async def test_a_context_sensitive_default_runs_through_plain_sqlalchemy(
    defaults_store: Database,
) -> None:
    """A default that reads SQLAlchemy's execution context cannot run without it: that
    statement is left to SQLAlchemy, which stores what it always does."""
    async with defaults_store.write() as conn:
        assert isinstance(conn, LoopConnection)
        assert plan_for(_INSERT_ECHOED, {"name": "hey"}, conn.dialect) is None
        row = (await conn.execute(_INSERT_ECHOED, {"name": "hey"})).one()
    assert row.shout == "hey!"


def test_the_sqlalchemy_internals_it_needs_are_there() -> None:
    prepared_module.check_sqlalchemy()


def test_a_sqlalchemy_without_them_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a SQLAlchemy release that renamed an internal looks like: the store refuses
    to open, saying which version and what to install."""
    monkeypatch.setattr(prepared_module, "_CHECKED", False)
    monkeypatch.delattr(SQLCompiler, "_within_exec_param_key_getter")
    with pytest.raises(StoreUnavailable) as refused:
        prepared_module.check_sqlalchemy()
    message = refused.value.message
    assert "\n" not in message
    assert sqlalchemy.__version__ in message and "sqlalchemy>=2.0.30,<2.1" in message
    with pytest.raises(StoreUnavailable):
        Database("sqlite+aiosqlite:///:memory:")


async def test_a_missing_value_fails_as_in_sqlalchemy(defaults_store: Database) -> None:
    async with defaults_store.write() as conn:
        assert isinstance(conn, LoopConnection)
        for parameters in ({"b_name": "x"}, {"b_new": "y"}):
            plan = plan_for(_RENAME_THING, parameters, conn.dialect)
            assert plan is not None
            with pytest.raises(sqlalchemy.exc.StatementError, match="A value is required"):
                both_ways(conn, _RENAME_THING, parameters, plan)
