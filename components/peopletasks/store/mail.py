"""The statements of the mail outbox: queue messages, claim them with their tasks,
record attempts, list a task's messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update

from peopletasks.store import leases
from peopletasks.store.database import Conn
from peopletasks.store.tables import mail_attempts, mail_messages, tasks

PENDING, SENT, FAILED, CANCELLED = leases.PENDING, "sent", "failed", "cancelled"


async def insert_messages(conn: Conn, rows: list[dict[str, Any]]) -> None:
    """Queue messages (`public_id`, `org_id`, `task_seq`, `kind`, `recipient`,
    `sequence`, `context`, `created_at`), due at once."""
    if rows:
        await conn.execute(
            insert(mail_messages),
            [
                {**row, "status": PENDING, "attempts": 0, "next_attempt_at": row["created_at"]}
                for row in rows
            ],
        )


async def claim_messages(
    conn: Conn, now: datetime, limit: int, lease: float
) -> list[tuple[Row[Any], Row[Any]]]:
    """Lease up to `limit` due messages; each with its task's row, oldest first."""
    ids = await leases.claim(conn, mail_messages, now, limit, lease)
    if not ids:
        return []
    messages = (
        await conn.execute(
            select(mail_messages).where(mail_messages.c.id.in_(ids)).order_by(mail_messages.c.id)
        )
    ).all()
    seqs = sorted({m.task_seq for m in messages})
    by_seq = {t.seq: t for t in await conn.execute(select(tasks).where(tasks.c.seq.in_(seqs)))}
    return [(m, by_seq[m.task_seq]) for m in messages]


async def cancel(conn: Conn, ids_and_reasons: list[tuple[int, str]]) -> None:
    """Messages no longer true when their turn came (their task decided, reassigned)."""
    for message_id, reason in ids_and_reasons:
        await conn.execute(
            update(mail_messages)
            .where(mail_messages.c.id == message_id)
            .values(status=CANCELLED, claimed_until=None, last_error=reason)
        )


async def record_attempts(
    conn: Conn, attempts: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> None:
    """Log attempts (`message_id` = the message's row id, `attempted_at`,
    `latency_ms`, `smtp_code`, `error`) and move each message on (`id` and the columns
    to set; its lease is freed)."""
    existing = set(
        (
            await conn.scalars(
                select(mail_messages.c.id).where(
                    mail_messages.c.id.in_([o["id"] for o in outcomes])
                )
            )
        ).all()
    )
    attempts = [a for a in attempts if a["message_id"] in existing]
    if attempts:
        await conn.execute(insert(mail_attempts), attempts)
    for outcome in outcomes:
        if outcome["id"] not in existing:
            continue  # its task was deleted meanwhile
        values = {k: v for k, v in outcome.items() if k != "id"}
        await conn.execute(
            update(mail_messages)
            .where(mail_messages.c.id == outcome["id"])
            .values(claimed_until=None, **values)
        )


async def messages_of(conn: Conn, task_seq: int, *, limit: int, offset: int) -> list[Row[Any]]:
    """A task's messages, oldest first."""
    rows = await conn.execute(
        select(mail_messages)
        .where(mail_messages.c.task_seq == task_seq)
        .order_by(mail_messages.c.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def attempts_of(conn: Conn, message_ids: list[int]) -> dict[int, list[Row[Any]]]:
    by_message: dict[int, list[Row[Any]]] = {i: [] for i in message_ids}
    if message_ids:
        rows = await conn.execute(
            select(mail_attempts)
            .where(mail_attempts.c.message_id.in_(message_ids))
            .order_by(mail_attempts.c.id)
        )
        for row in rows:
            by_message[row.message_id].append(row)
    return by_message
