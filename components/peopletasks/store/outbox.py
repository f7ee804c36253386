"""The statements of the webhook outbox: a task's active webhooks, and an event with
its deliveries (one round trip on PostgreSQL, prepared inserts on SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Row,
    String,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from peopletasks.store.database import Conn, prepared
from peopletasks.store.tables import webhook_deliveries, webhook_events, webhooks
from peopletasks.store.types import UTCDateTime

#: What an event needs of each webhook it goes to.
EVENT_HOOK_COLUMNS = ("id", "public_id", "kind", "url", "target", "key_id")

_HOOKS_OF = prepared(
    select(*(webhooks.c[name] for name in EVENT_HOOK_COLUMNS)).where(
        webhooks.c.task_seq == bindparam("task_seq"), webhooks.c.disabled_at.is_(None)
    )
)
_INSERT_EVENT = prepared(insert(webhook_events).returning(webhook_events.c.id))
_INSERT_DELIVERY = prepared(insert(webhook_deliveries).returning(webhook_deliveries.c.id))


def _event_on_postgres() -> Any:
    """PostgreSQL: the event and its deliveries in one round trip (their webhooks and
    public ids as a JSON array), returning each delivery's id and webhook."""
    event = (
        insert(webhook_events)
        .values(
            {
                name: bindparam(name)
                for name in ("public_id", "org_id", "task_seq", "type", "body", "created_at")
            }
        )
        .returning(webhook_events.c.id)
        .cte("event")
    )
    each = (
        func.jsonb_to_recordset(bindparam("deliveries", type_=JSONB))
        .table_valued(column("public_id", String), column("webhook_id", BigInteger))
        .render_derived(name="each", with_types=True)
    )
    rows = select(
        each.c.public_id,
        event.c.id,
        each.c.webhook_id,
        literal("pending"),
        bindparam("created_at", type_=UTCDateTime()),
        bindparam("created_at", type_=UTCDateTime()),
        bindparam("attempts", type_=Integer),
        bindparam("claimed_until", type_=UTCDateTime()),
    ).join_from(event, each, true())
    columns = ["public_id", "event_id", "webhook_id", "status", "next_attempt_at", "created_at"]
    return (
        insert(webhook_deliveries)
        .from_select([*columns, "attempts", "claimed_until"], rows)
        .returning(webhook_deliveries.c.id, webhook_deliveries.c.webhook_id)
    )


_EVENT_ON_POSTGRES = _event_on_postgres()


async def active_webhooks(conn: Conn, task_seq: int) -> list[Row[Any]]:
    """The webhooks of a task that take events (`EVENT_HOOK_COLUMNS`)."""
    return list((await conn.execute(_HOOKS_OF, {"task_seq": task_seq})).all())


async def insert_event(
    conn: Conn,
    event: dict[str, Any],
    deliveries: list[dict[str, Any]],
    claim: dict[str, Any],
    *,
    want_ids: bool,
) -> list[int] | None:
    """Write an event (`public_id`, `org_id`, `task_seq`, `type`, `body`, `created_at`)
    and its deliveries (`public_id`, `webhook_id` each), pending from the event's time,
    with `claim` (`attempts`, `claimed_until`). The deliveries' ids, in order, when
    `want_ids` (else None, and SQLite inserts them in one batch)."""
    if conn.dialect.name == "postgresql":
        written = await conn.execute(
            _EVENT_ON_POSTGRES, {**event, **claim, "deliveries": deliveries}
        )
        by_webhook = {row.webhook_id: row.id for row in written}
        return [by_webhook[d["webhook_id"]] for d in deliveries]
    event_id = (await conn.execute(_INSERT_EVENT, event)).scalar_one()
    rows = [
        {
            **delivery,
            "event_id": event_id,
            "status": "pending",
            "next_attempt_at": event["created_at"],
            "created_at": event["created_at"],
            **claim,
        }
        for delivery in deliveries
    ]
    if not want_ids:
        await conn.execute(insert(webhook_deliveries), rows)
        return None
    return [(await conn.execute(_INSERT_DELIVERY, row)).scalar_one() for row in rows]
