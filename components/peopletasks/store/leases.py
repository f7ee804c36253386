"""Leases on outbox rows: webhook deliveries and mail messages are claimed alike.

An outbox table has `id`, `status` (`pending` until done), `next_attempt_at`,
`attempts` and `claimed_until`. A claim is a lease: while `claimed_until` is in the
future, no other dispatcher (on any replica) attempts the row; if its holder dies,
the lease expires and the row is attempted again (at least once, never lost). On
PostgreSQL a claim skips rows another replica is claiming (`FOR UPDATE SKIP
LOCKED`); SQLite has one writer and needs no row lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, or_, select, update

from peopletasks.store.database import Conn

PENDING = "pending"


def claimable(table: Table, now: datetime) -> Any:
    """Rows due now and not leased."""
    return and_(
        table.c.status == PENDING,
        table.c.next_attempt_at <= now,
        or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
    )


async def any_due(conn: Conn, table: Table, now: datetime) -> bool:
    """A cheap read: is anything waiting to be claimed now?"""
    found = await conn.scalar(select(table.c.id).where(claimable(table, now)).limit(1))
    return found is not None


async def earliest_due(conn: Conn, table: Table) -> datetime | None:
    """When the earliest pending row becomes due (or its lease expires)."""
    row = (
        await conn.execute(
            select(table.c.next_attempt_at, table.c.claimed_until)
            .where(table.c.status == PENDING)
            .order_by(table.c.next_attempt_at)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    due: datetime = max(row.next_attempt_at, row.claimed_until or row.next_attempt_at)
    return due


async def claim(conn: Conn, table: Table, now: datetime, limit: int, lease: float) -> list[int]:
    """Lease up to `limit` due rows for `lease` seconds, oldest first, counting the
    attempt; their ids."""
    due = (
        select(table.c.id)
        .where(claimable(table, now))
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await conn.execute(
        update(table)
        .where(table.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + timedelta(seconds=lease), attempts=table.c.attempts + 1)
        .returning(table.c.id)
    )
    return sorted(row.id for row in rows)


async def release_all(conn: Conn, table: Table) -> int:
    """Free every lease (only for a store with a single replica, e.g. SQLite at start)."""
    result = await conn.execute(
        update(table)
        .where(table.c.status == PENDING, table.c.claimed_until.is_not(None))
        .values(claimed_until=None)
    )
    return int(result.rowcount or 0)
