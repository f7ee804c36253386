"""The outbox: an event per task status change, written in the changing transaction.

Every status change (approved, rejected, due) calls `record_status_event` on
the connection that made the change, so the change and its webhook deliveries
commit together or not at all. The dispatcher (peopletasks.webhooks) sends
them afterwards.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from sqlalchemy import Row, insert, select

from peopletasks.domain.views import task_view
from peopletasks.store.database import Conn
from peopletasks.store.tables import webhook_deliveries, webhook_events, webhooks
from peopletasks.timeutil import utcnow


def event_type(status: str) -> str:
    return f"task.{status}"


def event_body(task: dict[str, Any], type_: str) -> str:
    """The task as the API returns it, plus the event type."""
    return orjson.dumps({"type": type_, **task}).decode()


async def record_status_event(conn: Conn, task_row: Row[Any]) -> int:
    """Write the event of `task_row`'s new status and a delivery per active webhook.

    Returns how many deliveries were written (0 when the task has no webhooks).
    """
    hooks = (
        await conn.execute(
            select(webhooks.c.id).where(
                webhooks.c.task_seq == task_row.seq, webhooks.c.disabled_at.is_(None)
            )
        )
    ).all()
    if not hooks:
        return 0
    now = utcnow()
    type_ = event_type(task_row.status)
    event_id = (
        await conn.execute(
            webhook_events.insert()
            .values(
                public_id=f"msg_{secrets.token_hex(12)}",
                org_id=task_row.org_id,
                task_seq=task_row.seq,
                type=type_,
                body=event_body(task_view(task_row), type_),
                created_at=now,
            )
            .returning(webhook_events.c.id)
        )
    ).scalar_one()
    await conn.execute(
        insert(webhook_deliveries),
        [
            {
                "public_id": secrets.token_hex(12),
                "event_id": event_id,
                "webhook_id": hook.id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for hook in hooks
        ],
    )
    return len(hooks)


__all__ = ["event_body", "event_type", "record_status_event"]
