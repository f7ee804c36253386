"""The statements of standing delegations (tasks for one person go to another)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from peopletasks.store.database import Conn, prepared
from peopletasks.store.tables import delegations

_DELEGATE_OF = prepared(
    select(delegations.c.to_email).where(
        delegations.c.org_id == bindparam("org_id"),
        delegations.c.from_email == bindparam("email"),
        delegations.c.starts_at <= bindparam("now"),
        delegations.c.ends_at > bindparam("now"),
    )
)


def _upsert(insert: Any) -> Any:
    statement = insert(delegations)
    return statement.on_conflict_do_update(
        index_elements=["org_id", "from_email"],
        set_={
            name: statement.excluded[name]
            for name in ("to_email", "starts_at", "ends_at", "created_by", "created_at")
        },
    )


#: One delegation per person: a new one replaces theirs.
_UPSERT = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


async def delegate_of(conn: Conn, org_id: int, email: str, now: datetime) -> str | None:
    """Who decides `email`'s new tasks now instead (None: they do)."""
    row = (await conn.execute(_DELEGATE_OF, {"org_id": org_id, "email": email, "now": now})).first()
    return str(row.to_email) if row is not None else None


async def put(conn: Conn, values: dict[str, Any]) -> None:
    """Set `from_email`'s delegation (replacing theirs)."""
    await conn.execute(_UPSERT[conn.dialect.name], values)


async def overlapping(conn: Conn, org_id: int, start: datetime, end: datetime) -> list[Row[Any]]:
    """The organization's delegations in force at some time of [start, end)."""
    rows = await conn.execute(
        select(delegations).where(
            delegations.c.org_id == org_id,
            delegations.c.starts_at < end,
            delegations.c.ends_at > start,
        )
    )
    return list(rows)


async def touching(conn: Conn, org_id: int, email: str) -> list[Row[Any]]:
    """The delegations from or to `email`, by start."""
    rows = await conn.execute(
        select(delegations)
        .where(
            delegations.c.org_id == org_id,
            or_(delegations.c.from_email == email, delegations.c.to_email == email),
        )
        .order_by(delegations.c.starts_at, delegations.c.id)
    )
    return list(rows)


async def remove(conn: Conn, org_id: int, from_email: str) -> bool:
    result = await conn.execute(
        delegations.delete().where(
            and_(delegations.c.org_id == org_id, delegations.c.from_email == from_email)
        )
    )
    return bool(result.rowcount)
