"""When the store, not the request, is at fault: which database errors those are, and
what the caller is told (`StoreUnavailable`, 503).

A full disk, a database locked by another process for longer than we wait, a
read-only or corrupt file, an I/O error, a PostgreSQL server that is down, read-only
or out of connections: trying again later may succeed, and none of it is the
request's fault. A constraint violation or a bad statement is not among them.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from peopletasks.errors import StoreUnavailable

#: SQLite's primary result codes (https://sqlite.org/rescode.html) we tell apart.
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_NOMEM = 7
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_PROTOCOL = 15
SQLITE_NOLFS = 22
SQLITE_NOTADB = 26

#: What each SQLite failure of the store means, and its error code.
_SQLITE: dict[int, tuple[str, str]] = {
    SQLITE_FULL: ("store_full", "the store is full (disk full or its size limit reached)"),
    SQLITE_BUSY: ("store_busy", "the store is locked by another connection"),
    SQLITE_LOCKED: ("store_busy", "the store is locked by another connection"),
    SQLITE_READONLY: ("store_unavailable", "the store is read-only (file or folder)"),
    SQLITE_CANTOPEN: ("store_unavailable", "the store's file cannot be opened"),
    SQLITE_PERM: ("store_unavailable", "no permission to use the store's file"),
    SQLITE_IOERR: ("store_unavailable", "an I/O error in the store"),
    SQLITE_CORRUPT: ("store_unavailable", "the store's file is corrupt"),
    SQLITE_NOTADB: ("store_unavailable", "the store's file is not a SQLite database"),
    SQLITE_NOMEM: ("store_unavailable", "the store ran out of memory"),
    SQLITE_PROTOCOL: ("store_unavailable", "the store's file is in use in a way SQLite refuses"),
    SQLITE_NOLFS: ("store_unavailable", "the store's file is too large for this system"),
}

#: PostgreSQL's SQLSTATEs (or their class, the first two characters) of a store that
#: cannot take work now.
_POSTGRES: dict[str, tuple[str, str]] = {
    "53100": ("store_full", "the store is full (PostgreSQL: disk full)"),
    "53": ("store_unavailable", "the store is out of resources (PostgreSQL)"),
    "08": ("store_unavailable", "the connection to the store failed (PostgreSQL)"),
    "28": ("store_unavailable", "the store refused the credentials (PostgreSQL)"),
    "3D000": ("store_unavailable", "the store's database does not exist (PostgreSQL)"),
    "57P01": ("store_unavailable", "the store is shutting down (PostgreSQL)"),
    "57P02": ("store_unavailable", "the store is shutting down (PostgreSQL)"),
    "57P03": ("store_unavailable", "the store does not accept connections now (PostgreSQL)"),
    "25006": ("store_unavailable", "the store is read-only (PostgreSQL)"),
    "58": ("store_unavailable", "a system error in the store (PostgreSQL)"),
    "XX001": ("store_unavailable", "the store's data is corrupt (PostgreSQL)"),
    "XX002": ("store_unavailable", "the store's index is corrupt (PostgreSQL)"),
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, what SQLAlchemy wrapped (`orig`), then the causes, each once (nearest
    first: a failure's own error before one that followed from it)."""
    seen: set[int] = set()
    pending: deque[BaseException | None] = deque([error])
    while pending:
        current = pending.popleft()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]


def sqlite_code(error: BaseException) -> int | None:
    """SQLite's primary result code behind `error`, if it is a SQLite error."""
    for current in _chain(error):
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None:
                return int(code) & 0xFF
    return None


def is_busy(error: BaseException) -> bool:
    """SQLite could not take a lock another connection holds (SQLITE_BUSY)."""
    return sqlite_code(error) == SQLITE_BUSY


def _sqlstate(error: BaseException) -> str | None:
    for current in _chain(error):
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state:
            return state
    return None


def store_unavailable(error: BaseException, *, connecting: bool = False) -> StoreUnavailable | None:
    """The `StoreUnavailable` that `error` means, or None when it is not the store's
    state that failed (a constraint, a bad statement, a bug). `connecting`: `error`
    came from opening a connection (a refused or unreachable server is an OSError)."""
    if isinstance(error, StoreUnavailable):
        return error
    code = sqlite_code(error)
    if code is not None:
        kind = _SQLITE.get(code)
        if kind is None:
            return None
        return _described(error, *kind)
    state = _sqlstate(error)
    if state is not None:
        kind = _POSTGRES.get(state) or _POSTGRES.get(state[:2])
        if kind is None:
            return None
        return _described(error, *kind)
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return _described(error, "store_busy", "every connection to the store is in use")
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return _described(error, "store_unavailable", "the connection to the store was lost")
    if connecting and isinstance(error, OSError | TimeoutError):
        return _described(error, "store_unavailable", "the store cannot be reached")
    return None


def _described(error: BaseException, code: str, meaning: str) -> StoreUnavailable:
    detail = _driver_message(error)
    message = f"{meaning}: {detail}" if detail and detail not in meaning else meaning
    failure = StoreUnavailable(message, code=code)
    failure.__cause__ = error
    return failure


def _driver_message(error: BaseException) -> str:
    """What the database said, in one line (without SQLAlchemy's statement and link)."""
    for current in _chain(error):
        if isinstance(current, sa_exc.StatementError | sa_exc.SQLAlchemyError):
            continue
        text = str(current).strip().splitlines()
        if text:
            return text[0]
    return ""
