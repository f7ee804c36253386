"""The statements of people (the holders of task secrets)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from peopletasks.store.database import Conn, prepared
from peopletasks.store.tables import people

# An insert that leaves an existing person (the same e-mail and role) as it is.
_INSERT_IF_NEW = {
    "postgresql": prepared(postgresql.insert(people).on_conflict_do_nothing()),
    "sqlite": prepared(sqlite.insert(people).on_conflict_do_nothing()),
}


async def insert_person_if_new(conn: Conn, values: dict[str, Any]) -> None:
    await conn.execute(_INSERT_IF_NEW[conn.dialect.name], values)
