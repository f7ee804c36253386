"""The outbox: an event per task status change, written in the changing transaction.

Every status change (approved, rejected, due) calls `record_status_event` on
the connection that made the change, so the change and its webhook deliveries
commit together or not at all. The dispatcher (peopletasks.webhooks) sends
them afterwards.

The fast path: when this process runs a dispatcher with room (`Domain.handoff`),
the deliveries are written already claimed by it (a lease, as a claim would) and
handed to it the moment the transaction commits, so no claim query stands between
a decision and its webhooks. Should the process die first, the lease expires and
any dispatcher attempts them: nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
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

from peopletasks.domain.deliveries import ClaimedDelivery
from peopletasks.domain.views import task_view
from peopletasks.store.database import Conn, after_commit, prepared
from peopletasks.store.tables import webhook_deliveries, webhook_events, webhooks
from peopletasks.store.types import UTCDateTime
from peopletasks.timeutil import utcnow


class Handoff(Protocol):
    """A dispatcher in this process that takes fresh deliveries straight from commit."""

    @property
    def lease_seconds(self) -> float:
        """How long a handed-over delivery stays claimed."""
        ...

    def room(self) -> int:
        """How many more deliveries it would start now."""
        ...

    def take(self, deliveries: list[ClaimedDelivery]) -> None:
        """Start these (already claimed) deliveries."""
        ...


#: What an event needs of each webhook it goes to.
EVENT_HOOK_COLUMNS = ("id", "public_id", "kind", "url", "target", "key_id")

# Built once (values bound per call).
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


def event_type(status: str) -> str:
    return f"task.{status}"


def event_body(task: dict[str, Any], type_: str) -> str:
    """The task as the API returns it, plus the event type."""
    return orjson.dumps({"type": type_, **task}).decode()


async def record_status_event(
    conn: Conn,
    task_row: Row[Any],
    handoff: Handoff | None = None,
    ready: asyncio.Event | None = None,
    *,
    hooks: Sequence[Any] | None = None,
) -> int:
    """Write the event of `task_row`'s new status and a delivery per active webhook.

    With a `handoff` that has room, the deliveries are claimed for it and handed
    over after commit; otherwise `ready` (the local dispatcher's wake-up) is set after
    commit. `hooks`: the task's active webhooks (`EVENT_HOOK_COLUMNS`), when the caller
    has read them already. Returns how many deliveries were written.
    """
    if hooks is None:
        hooks = (await conn.execute(_HOOKS_OF, {"task_seq": task_row.seq})).all()
    if not hooks:
        return 0
    now = utcnow()
    type_ = event_type(task_row.status)
    message_id = f"msg_{secrets.token_hex(12)}"
    body = event_body(task_view(task_row), type_)
    event = {
        "public_id": message_id,
        "org_id": task_row.org_id,
        "task_seq": task_row.seq,
        "type": type_,
        "body": body,
        "created_at": now,
    }
    handing = handoff is not None and handoff.room() >= len(hooks)
    claim: dict[str, Any] = {"attempts": 0, "claimed_until": None}
    if handoff is not None and handing:
        claim = {"attempts": 1, "claimed_until": now + timedelta(seconds=handoff.lease_seconds)}
    if conn.dialect.name == "postgresql":
        deliveries = [{"public_id": secrets.token_hex(12), "webhook_id": h.id} for h in hooks]
        written = await conn.execute(
            _EVENT_ON_POSTGRES, {**event, **claim, "deliveries": deliveries}
        )
        by_webhook = {row.webhook_id: row.id for row in written}
        ids = [by_webhook[hook.id] for hook in hooks]
    else:
        event_id = (await conn.execute(_INSERT_EVENT, event)).scalar_one()
        rows = [
            {
                "public_id": secrets.token_hex(12),
                "event_id": event_id,
                "webhook_id": hook.id,
                "status": "pending",
                "next_attempt_at": now,
                "created_at": now,
                **claim,
            }
            for hook in hooks
        ]
        if handing:
            ids = [(await conn.execute(_INSERT_DELIVERY, row)).scalar_one() for row in rows]
        else:
            await conn.execute(insert(webhook_deliveries), rows)
    if not handing:
        if ready is not None:
            after_commit(ready.set)
        return len(hooks)
    assert handoff is not None
    claimed = [
        _claimed(delivery_id, hook, message_id, type_, body, now)
        for delivery_id, hook in zip(ids, hooks, strict=True)
    ]
    registered = after_commit(lambda: handoff.take(claimed))
    assert registered, "record_status_event runs inside Database.write()"
    return len(hooks)


def _claimed(
    delivery_id: int, hook: Any, message_id: str, type_: str, body: str, now: datetime
) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=delivery_id,
        attempt=1,
        message_id=message_id,
        event_type=type_,
        body=body,
        event_created_at=now,
        webhook_id=hook.id,
        webhook_public_id=hook.public_id,
        kind=hook.kind,
        url=hook.url,
        target=hook.target,
        key_id=hook.key_id,
    )


__all__ = ["Handoff", "event_body", "event_type", "record_status_event"]
