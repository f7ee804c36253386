"""Delivery bookkeeping: claim due deliveries, record attempts, list and re-send.

A claim is a lease (`store.leases`, as mail messages are claimed): while it runs, no
other dispatcher (on any replica) attempts the delivery; if its holder dies, the
lease expires and the delivery is attempted again (at least once, never lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from peopletasks.domain.context import Domain
from peopletasks.domain.handoff import ClaimedDelivery
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import may_manage_webhook
from peopletasks.errors import Conflict, Forbidden, NotFound
from peopletasks.store import leases
from peopletasks.store.database import Conn
from peopletasks.store.tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_events,
    webhooks,
)
from peopletasks.timeutil import format_datetime, utcnow

PENDING, DELIVERED, FAILED, CANCELLED = leases.PENDING, "delivered", "failed", "cancelled"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened on one attempt, and what to do next."""

    delivery_id: int
    attempted_at: datetime
    latency_ms: int
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    #: when to try again (None: give up); ignored when delivered
    retry_at: datetime | None = None
    #: the receiver asked us to stop (HTTP 410): disable the webhook
    disable_webhook: bool = False


async def has_due_deliveries(domain: Domain) -> bool:
    """A cheap read: is anything waiting to be claimed now?"""
    async with domain.db.read() as conn:
        return await leases.any_due(conn, webhook_deliveries, utcnow())


async def next_attempt_due(domain: Domain) -> datetime | None:
    """When the earliest pending delivery becomes due (or its lease expires)."""
    async with domain.db.read() as conn:
        return await leases.earliest_due(conn, webhook_deliveries)


async def claim_deliveries(domain: Domain, limit: int, lease: float) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries for `lease` seconds; oldest first."""
    async with domain.db.write() as conn:
        ids = await leases.claim(conn, webhook_deliveries, utcnow(), limit, lease)
        if not ids:
            return []
        rows = await conn.execute(
            select(
                webhook_deliveries.c.id,
                webhook_deliveries.c.attempts,
                webhook_events.c.public_id.label("message_id"),
                webhook_events.c.type,
                webhook_events.c.body,
                webhook_events.c.created_at.label("event_created_at"),
                webhooks.c.id.label("webhook_id"),
                webhooks.c.public_id.label("webhook_public_id"),
                webhooks.c.kind,
                webhooks.c.url,
                webhooks.c.target,
                webhooks.c.key_id,
            )
            .join(webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id)
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(webhook_deliveries.c.id.in_(ids))
            .order_by(webhook_deliveries.c.id)
        )
        return [
            ClaimedDelivery(
                id=r.id,
                attempt=r.attempts,
                message_id=r.message_id,
                event_type=r.type,
                body=r.body,
                event_created_at=r.event_created_at,
                webhook_id=r.webhook_id,
                webhook_public_id=r.webhook_public_id,
                kind=r.kind,
                url=r.url,
                target=r.target,
                key_id=r.key_id,
            )
            for r in rows
        ]


async def record_attempts(domain: Domain, results: list[AttemptResult]) -> None:
    """Log each attempt and move its delivery on: delivered, retry later, or give up."""
    if not results:
        return
    async with domain.db.write() as conn:
        # A webhook deleted while its delivery was in flight took the delivery with it.
        existing = set(
            (
                await conn.scalars(
                    select(webhook_deliveries.c.id).where(
                        webhook_deliveries.c.id.in_([r.delivery_id for r in results])
                    )
                )
            ).all()
        )
        results = [r for r in results if r.delivery_id in existing]
        if not results:
            return
        await conn.execute(
            webhook_attempts.insert(),
            [
                {
                    "delivery_id": r.delivery_id,
                    "attempted_at": r.attempted_at,
                    "status_code": r.status_code,
                    "latency_ms": r.latency_ms,
                    "error": r.error,
                    "response_body": r.response_body,
                }
                for r in results
            ],
        )
        for r in results:
            if r.delivered:
                values: dict[str, Any] = {"status": DELIVERED, "delivered_at": r.attempted_at}
            elif r.retry_at is not None and not r.disable_webhook:
                values = {"next_attempt_at": r.retry_at}
            else:
                values = {"status": FAILED}
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == r.delivery_id)
                .values(
                    claimed_until=None,
                    last_status_code=r.status_code,
                    last_error=r.error,
                    **values,
                )
            )
            if r.disable_webhook:
                await _disable_webhook_of(conn, r.delivery_id, r.attempted_at)


async def _disable_webhook_of(conn: Conn, delivery_id: int, now: datetime) -> None:
    webhook_id = await conn.scalar(
        select(webhook_deliveries.c.webhook_id).where(webhook_deliveries.c.id == delivery_id)
    )
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id, webhooks.c.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason="the receiver answered 410 Gone")
    )
    await conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.webhook_id == webhook_id,
            webhook_deliveries.c.status == PENDING,
        )
        .values(status=CANCELLED, claimed_until=None)
    )


async def release_claims(domain: Domain) -> int:
    """Free every lease (only for a store with a single replica, e.g. SQLite at start)."""
    async with domain.db.write() as conn:
        return await leases.release_all(conn, webhook_deliveries)


# -- API ----------------------------------------------------------------------


async def _webhook_seq(conn: Conn, principal: Principal, webhook_id: str) -> int:
    if not principal.is_user:
        raise Forbidden("webhook deliveries need an API token")
    row = (
        await conn.execute(
            select(webhooks.c.id, webhooks.c.created_by).where(
                webhooks.c.public_id == webhook_id, webhooks.c.org_id == principal.org_id
            )
        )
    ).first()
    if row is None or not may_manage_webhook(principal, row.created_by):
        raise NotFound(f"no webhook {webhook_id!r}")
    return int(row.id)


def _delivery_query() -> Any:
    return select(
        webhook_deliveries,
        webhook_events.c.public_id.label("message_id"),
        webhook_events.c.type,
    ).join(webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id)


def _delivery_view(row: Any, attempts: list[Any]) -> dict[str, Any]:
    m = row._mapping
    return {
        "id": m["public_id"],
        "messageId": m["message_id"],
        "type": m["type"],
        "status": m["status"],
        "attempts": m["attempts"],
        "nextAttemptAt": format_datetime(m["next_attempt_at"]) if m["status"] == PENDING else None,
        "deliveredAt": format_datetime(m["delivered_at"]),
        "lastStatusCode": m["last_status_code"],
        "lastError": m["last_error"],
        "createdAt": format_datetime(m["created_at"]),
        "attemptLog": [
            {
                "attemptedAt": format_datetime(a.attempted_at),
                "statusCode": a.status_code,
                "latencyMs": a.latency_ms,
                "error": a.error,
                "responseBody": a.response_body,
            }
            for a in attempts
        ],
    }


async def _attempts_of(conn: Conn, delivery_ids: list[int]) -> dict[int, list[Any]]:
    by_delivery: dict[int, list[Any]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        rows = await conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id.in_(delivery_ids))
            .order_by(webhook_attempts.c.id)
        )
        for a in rows:
            by_delivery[a.delivery_id].append(a)
    return by_delivery


async def list_deliveries(
    domain: Domain, principal: Principal, webhook_id: str, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """A webhook's deliveries, newest first, each with its attempt log."""
    async with domain.db.read() as conn:
        seq = await _webhook_seq(conn, principal, webhook_id)
        rows = (
            await conn.execute(
                _delivery_query()
                .where(webhook_deliveries.c.webhook_id == seq)
                .order_by(webhook_deliveries.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).all()
        attempts = await _attempts_of(conn, [r.id for r in rows])
    return [_delivery_view(r, attempts[r.id]) for r in rows]


async def resend_delivery(
    domain: Domain, principal: Principal, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    """Send a delivery again (same `webhook-id`, so receivers can de-duplicate)."""
    async with domain.db.write() as conn:
        seq = await _webhook_seq(conn, principal, webhook_id)
        disabled = await conn.scalar(select(webhooks.c.disabled_at).where(webhooks.c.id == seq))
        if disabled is not None:
            raise Conflict("the webhook is disabled (its receiver answered 410)", code="disabled")
        now = utcnow()
        updated = (
            await conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.public_id == delivery_id,
                    webhook_deliveries.c.webhook_id == seq,
                    or_(
                        webhook_deliveries.c.claimed_until.is_(None),
                        webhook_deliveries.c.claimed_until < now,
                    ),
                )
                .values(status=PENDING, next_attempt_at=now, claimed_until=None)
                .returning(webhook_deliveries.c.id)
            )
        ).first()
        if updated is None:
            exists = await conn.scalar(
                select(webhook_deliveries.c.id).where(
                    webhook_deliveries.c.public_id == delivery_id,
                    webhook_deliveries.c.webhook_id == seq,
                )
            )
            if exists is None:
                raise NotFound(f"no delivery {delivery_id!r} of webhook {webhook_id!r}")
            raise Conflict("the delivery is being attempted right now", code="in_flight")
        row = (
            await conn.execute(_delivery_query().where(webhook_deliveries.c.id == updated.id))
        ).one()
        attempts = await _attempts_of(conn, [row.id])
    domain.outbox_ready.set()
    return _delivery_view(row, attempts[row.id])


__all__ = [
    "AttemptResult",
    "ClaimedDelivery",
    "claim_deliveries",
    "has_due_deliveries",
    "list_deliveries",
    "next_attempt_due",
    "record_attempts",
    "release_claims",
    "resend_delivery",
]
