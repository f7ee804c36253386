"""Before serving or migrating: can the store be opened and written? If not, which file
(or server) and why, in one line (`StoreUnavailable`), instead of a stack trace from
deep inside a migration or the first request."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from peopletasks.errors import StoreUnavailable
from peopletasks.store.database import sqlite_path
from peopletasks.store.failures import store_unavailable
from peopletasks.store.prepared import check_sqlalchemy

#: How long the check waits for a write lock another process holds (it runs before the
#: service, off any event loop).
LOCK_WAIT_SECONDS = 30.0


def safe_url(url: str) -> str:
    """`url` without its password."""
    return make_url(url).render_as_string(hide_password=True)


def check_store(url: str) -> None:
    """Raise `StoreUnavailable` ("cannot open the store X: why") unless the store at `url`
    can be opened and written. SQLite: its folder is made if missing; the file is
    opened, read and written in a transaction that is rolled back. PostgreSQL is
    checked by connecting (see `migrate`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    check_sqlalchemy()
    path = sqlite_path(url)
    if path is None:  # in memory: nothing to open
        return
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(
            f"cannot open the store {path}: cannot create its folder {folder}: {error.strerror}"
        ) from error
    if path.exists() and not path.is_file():
        raise StoreUnavailable(f"cannot open the store {path}: it is not a file")
    try:
        _open_and_write(path)
    except sqlite3.Error as error:
        failure = store_unavailable(error) or StoreUnavailable(str(error))
        hint = _permissions(path)
        why = f"{hint} ({failure.message})" if hint else failure.message
        raise StoreUnavailable(f"cannot open the store {path}: {why}") from error


def _open_and_write(path: Path) -> None:
    connection = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            # A write (refused on a read-only file) that changes nothing, rolled back.
            connection.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
    finally:
        connection.close()


def _permissions(path: Path) -> str:
    """What the file system says against writing the store, if anything."""
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable (SQLite keeps its -wal and -shm files there)"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "the file is not readable and writable"
    return ""
