"""SQLite's fast path for statements built once (`prepared(...)`), held to SQLAlchemy's result.

A statement the domain builds once, its values bound per call, runs on SQLite without
SQLAlchemy's per-execution machinery: compiled once (per set of parameter names, as
SQLAlchemy compiles it), its values and rows converted by the same type processors
SQLAlchemy uses (measured: a read by id 75 -> 25 us). What SQLAlchemy adds per
execution, this does too:

- Python-side column defaults (`Column(default=...)`) on INSERT and `onupdate=` on
  UPDATE, for the columns a call does not name: a scalar is bound as is; a callable
  that takes no argument is called once per execution, in SQLAlchemy's order. A
  callable that takes SQLAlchemy's execution context (`def f(context)`) cannot be
  honoured without that context: such a statement runs through plain SQLAlchemy
  (correct, without the speed). SQL-expression defaults (`default=func.now()`) are in
  the compiled SQL.
- Errors: the SQLAlchemy exception SQLAlchemy would raise (`IntegrityError`, ...).

`tests/test_prepared.py` runs every statement marked `prepared(...)` both ways on the
same data and compares rows, rowcount and what is stored.

This uses SQLAlchemy internals (`_bind_processors`, `_result_columns`, `positiontup`,
`escaped_bind_names`, `_render_postcompile`, prefetch lists, `_cached_result_processor`,
`_default_description_tuple`): pyproject pins the minor version it is tested on
(`sqlalchemy>=2.0.30,<2.1`), and `check_sqlalchemy()` (run when a SQLite store opens)
refuses to start, in one line, on a SQLAlchemy that lacks them.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Column, Dialect, Integer, MetaData, String, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound, ResourceClosedError
from sqlalchemy.sql.schema import ColumnDefault

from peopletasks.errors import StoreUnavailable

S = TypeVar("S")

#: Statements built once by the domain (see `prepared`), by id; kept alive here.
PREPARED: dict[int, Any] = {}
#: Statements of `prepared(..., reread_by=...)`: (key column, parameter).
REREAD_BY: dict[int, tuple[str, str]] = {}
#: Statements of `prepared(..., row_from_values=True)`.
ROW_FROM_VALUES: set[int] = set()


def prepared(
    statement: S, *, reread_by: tuple[str, str] | None = None, row_from_values: bool = False
) -> S:
    """Mark `statement` (built once, its values bound per call) for SQLite's fast path.

    `reread_by=(column, parameter)`: an UPDATE ... RETURNING whose `column` (unique,
    left unchanged) equals `parameter` runs without RETURNING on SQLite, and its row
    is read back by that key (RETURNING cost ~30 us more on a decision, measured).

    `row_from_values`: an INSERT ... RETURNING of one row answers with the values it
    was given (its Python-side defaults included), the new key, and for the columns
    it does not name the defaults its first row read back (their server defaults
    are constants: checked). The first row is also compared with the values given:
    a column the database would store otherwise (a type it converts) keeps the read
    back. Saves the read back (~20 us and the conversion of every column, on a task).
    """
    PREPARED[id(statement)] = statement
    if reread_by is not None:
        REREAD_BY[id(statement)] = reread_by
    if row_from_values:
        ROW_FROM_VALUES.add(id(statement))
    return statement


def translated(error: sqlite3.Error, sql: str) -> Exception:
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


#: The code of the wrappers SQLAlchemy puts around a default callable that takes no
#: argument (`lambda ctx: fn()`; one for functions, one for what it cannot inspect):
#: such a callable needs no execution context.
_NO_CONTEXT_CODES = frozenset(
    getattr(ColumnDefault(fn).arg, "__code__", None) for fn in (lambda: None, int)
) - {None}


def _takes_no_context(arg: Any) -> bool:
    return getattr(arg, "__code__", None) in _NO_CONTEXT_CODES


class _NeedsSQLAlchemy(ValueError):
    """The statement runs through plain SQLAlchemy (what it needs is not prepared)."""


def _constant_defaults(table: Any, given: tuple[str, ...]) -> bool:
    """Every column an INSERT naming `given` leaves to the database gets a constant."""
    for column in table.columns:
        if column.key in given or column.primary_key:
            continue
        default = column.server_default
        if default is not None and not isinstance(getattr(default, "arg", None), str):
            return False
        python_default = column.default
        if python_default is not None and not (
            python_default.is_scalar or python_default.is_callable
        ):
            return False  # a SQL expression (func.now()), a sequence: not a constant
    return True


class Plan:
    """A prepared statement compiled for SQLite, with its type processors."""

    __slots__ = (
        "compiled",
        "computed",
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
            raise _NeedsSQLAlchemy("not a plain positional statement")
        if any(bind.expanding for bind in compiled.binds.values()):
            raise _NeedsSQLAlchemy("expanding (IN) parameters are not prepared")
        self.compiled = compiled
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup)
        self.processors = compiled._bind_processors
        self.steps = tuple((name, self.processors.get(name)) for name in self.names)
        self.direct = not compiled.escaped_bind_names
        #: Values written into the statement (`status == 'pending'`), by bind name;
        #: with the scalar Python-side defaults of the columns not named.
        self.defaults: dict[str, Any] = {
            name: compiled.binds[name].effective_value
            for name in self.names
            if not compiled.binds[name].required
        }
        #: The callable Python-side defaults: (bind name, callable), called per execution.
        self.computed: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
        self._prefetch(compiled)
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
            named = {*keys, *self.defaults, *dict(self.computed)}
            if (
                len(primary) == 1
                and primary[0].key in returned
                and primary[0].key not in keys
                and named <= returned
                and _constant_defaults(statement.table, keys)
            ):
                self.from_values = True
                self.key_column = primary[0].key

    def _prefetch(self, compiled: Any) -> None:
        """The Python-side defaults SQLAlchemy fills in before executing (what its
        `DefaultExecutionContext._process_execute_defaults` does)."""
        if compiled.insert_prefetch:
            columns = compiled.insert_prefetch
            describe = "_default_description_tuple"
        elif compiled.update_prefetch:
            columns = compiled.update_prefetch
            describe = "_onupdate_description_tuple"
        else:
            return
        if not self.direct:
            raise _NeedsSQLAlchemy("Python-side defaults with escaped bind names")
        key_of = compiled._within_exec_param_key_getter
        computed: list[tuple[str, Callable[[Any], Any]]] = []
        for column in columns:
            arg, is_scalar, is_callable, is_sentinel = getattr(column, describe)
            name = key_of(column)
            if is_sentinel:
                raise _NeedsSQLAlchemy("an insert sentinel")
            if is_scalar:
                self.defaults[name] = arg
            elif is_callable and _takes_no_context(arg):
                computed.append((name, arg))
                self.defaults.pop(name, None)
            else:
                raise _NeedsSQLAlchemy(f"the default of {column} needs SQLAlchemy's context")
        self.computed = tuple(computed)

    def given(self, parameters: dict[str, Any] | None) -> dict[str, Any]:
        """The statement's values by bind name: the call's, the statement's own and the
        Python-side defaults (a callable's called now). Not to be changed."""
        given = {**self.defaults, **parameters} if parameters else self.defaults
        if self.computed:
            if given is self.defaults:
                given = dict(given)
            for name, make in self.computed:
                given[name] = make(None)  # SQLAlchemy's wrapper: `lambda ctx: fn()`
        return given

    def values(self, given: dict[str, Any], parameters: dict[str, Any] | None) -> list[Any]:
        """The DBAPI's positional values for `given` (from `given(parameters)`)."""
        if self.direct:
            try:
                return [
                    given[name] if process is None else process(given[name])
                    for name, process in self.steps
                ]
            except KeyError:
                pass  # a value is missing: SQLAlchemy says which
        try:
            checked = self.compiled.construct_params(parameters)
        except sa_exc.InvalidRequestError as error:  # a value is missing: as SQLAlchemy says
            raise sa_exc.StatementError(str(error), self.sql, [parameters], error) from error
        processors = self.processors
        return [
            processors[name](checked[name]) if name in processors else checked[name]
            for name in self.names
        ]

    def row_of(self, given: dict[str, Any], rowid: int) -> Any:
        """The INSERT's row from its values (`row_from_values`, once learned)."""
        assert self.learned is not None and self.key_column is not None
        values = {**self.learned, **given, self.key_column: rowid}
        return self.row(*[values[name] for name in self.row._fields])

    def learn(self, given: dict[str, Any], row: Any) -> None:
        """From the first row read back: the values of the columns not named, and
        whether the named ones read back as given (else keep reading back)."""
        stored = row._asdict()
        if any(stored[name] != value for name, value in given.items() if name in stored):
            self.from_values = False
            return
        self.learned = {
            name: value
            for name, value in stored.items()
            if name not in given and name != self.key_column
        }

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
    """What the domain uses of a result, over rows fetched at once. Like SQLAlchemy's,
    the result of a statement without rows (`returns_rows` False) refuses to give any."""

    __slots__ = ("_rows", "returns_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, returns_rows: bool = True) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.returns_rows = returns_rows

    def _fetched(self) -> list[Any]:
        if not self.returns_rows:
            raise ResourceClosedError(
                "This result object does not return rows. It has been closed automatically."
            )
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._fetched())

    def all(self) -> list[Any]:
        return self._fetched()

    def first(self) -> Any:
        rows = self._fetched()
        return rows[0] if rows else None

    def one(self) -> Any:
        rows = self._fetched()
        if len(rows) != 1:
            raise (
                NoResultFound("No row was found when one was required")
                if not rows
                else MultipleResultsFound("Multiple rows were found when exactly one was required")
            )
        return rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


_MISSING: Any = object()
#: Plans by (statement id, parameter names); None: the statement runs through SQLAlchemy.
_PLANS: dict[tuple[int, tuple[str, ...]], Plan | None] = {}


def plan_for(statement: Any, parameters: Any, dialect: Dialect) -> Plan | None:
    """The fast path's plan for running `statement` with `parameters` (None: not
    prepared, or it runs through plain SQLAlchemy)."""
    key = id(statement)
    if key not in PREPARED or not (parameters is None or type(parameters) is dict):
        return None
    names = tuple(sorted(parameters)) if parameters else ()
    plan = _PLANS.get((key, names), _MISSING)
    if plan is _MISSING:
        try:
            plan = Plan(statement, dialect, names, REREAD_BY.get(key), key in ROW_FROM_VALUES)
        except _NeedsSQLAlchemy:
            plan = None
        _PLANS[(key, names)] = plan
    return plan  # type: ignore[no-any-return]


def run(raw: Any, plan: Plan, parameters: dict[str, Any] | None) -> PreparedResult:
    """Execute `plan` on the DBAPI connection `raw` (sqlite3)."""
    given = plan.given(parameters)
    try:
        cursor = raw.execute(plan.sql, plan.values(given, parameters))
    except sqlite3.Error as error:
        raise translated(error, plan.sql) from error
    if plan.reread is not None:
        if cursor.rowcount != 1:  # none (the key is unique: never more)
            return PreparedResult([], cursor.rowcount)
        if plan.reread_param is None:
            key = cursor.lastrowid
            if plan.learned is not None:
                return PreparedResult([plan.row_of(given, key)], 1)
        else:
            assert parameters is not None
            key = parameters[plan.reread_param]
        try:
            again = plan.rows(raw.execute(plan.reread, (key,)).fetchall())
        except sqlite3.Error as error:
            raise translated(error, plan.reread) from error
        if plan.from_values and plan.learned is None and again:
            plan.learn(given, again[0])
        return PreparedResult(again, 1)
    if plan.returns:
        return PreparedResult(plan.rows(cursor.fetchall()), cursor.rowcount)
    return PreparedResult([], cursor.rowcount, returns_rows=False)


_CHECKED = False


def check_sqlalchemy() -> None:
    """Refuse (StoreUnavailable, one line) to run the fast path on a SQLAlchemy without
    the internals it uses; once per process."""
    global _CHECKED
    if _CHECKED:
        return
    try:
        _exercise_internals()
    except Exception as error:
        raise StoreUnavailable(
            f"SQLAlchemy {sqlalchemy.__version__} lacks what the SQLite store uses of its"
            f" internals ({type(error).__name__}: {error}); install the version pyproject"
            " pins (sqlalchemy>=2.0.30,<2.1)"
        ) from error
    _CHECKED = True


def _exercise_internals() -> None:
    """Build a plan the way the fast path does, on a table with every kind of default it
    handles: each internal it reads is read here."""
    table = Table(
        "check",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String, nullable=False),
        Column("scalar", Integer, default=1, onupdate=2),
        Column("called", Integer, default=lambda: 3),
    )
    dialect = sqlite_dialect.dialect(paramstyle="qmark")
    plan = Plan(table.insert().returning(table), dialect, ("name",), row_from_values=True)
    given = plan.given({"name": "x"})
    if plan.values(given, {"name": "x"}) != ["x", 1, 3] or plan.row is None:
        raise AssertionError(f"an INSERT's values came out as {plan.values(given, None)}")
    if not plan.from_values or plan.reread is None:
        raise AssertionError("an INSERT ... RETURNING is not read back by rowid")
    update = Plan(table.update().values(name="y"), dialect, ())
    if update.values(update.given(None), None) != ["y", 2]:
        raise AssertionError("an UPDATE's onupdate value is not prefetched")
