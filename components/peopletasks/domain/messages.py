"""The mail outbox's bookkeeping: claim due messages with what their mail shows, record
each attempt, list a task's messages.

A claim is a lease (`store.leases`, as webhook deliveries are claimed): while it
runs, no other dispatcher (on any replica) sends the message; if its holder dies,
the lease expires and the message is sent again, with the same `Message-ID`.

A message to the approver (`notices.TO_APPROVER`) is checked when its turn comes:
once the task can no longer take a decision, or the recipient is no longer its
approver, it is cancelled instead of sent (so reminders stop the moment the task is
decided, and an old approver never gets the new one's links).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain.approvers import asked, emails_of
from peopletasks.domain.context import Domain
from peopletasks.domain.links import links_for
from peopletasks.domain.lookup import load_task
from peopletasks.domain.notices import TO_APPROVER
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import Standing, standing
from peopletasks.domain.views import task_view
from peopletasks.store import leases
from peopletasks.store import mail as outbox
from peopletasks.store.tables import mail_messages
from peopletasks.timeutil import format_datetime, utcnow


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed message and everything its mail shows."""

    id: int
    attempt: int  #: 1 for the first attempt
    kind: str
    to: str
    sequence: int
    context: dict[str, Any]
    created_at: datetime
    #: The task as the API shows it, now.
    task: dict[str, Any]
    #: Fresh approve / reject links for the approver's messages (else None).
    links: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened on one attempt, and what to do next."""

    id: int
    attempted_at: datetime
    latency_ms: int
    sent: bool
    message_id: str | None = None
    smtp_code: int | None = None
    error: str | None = None
    #: When to try again (None: give up); ignored when sent.
    retry_at: datetime | None = None


async def has_due_messages(domain: Domain) -> bool:
    async with domain.db.read() as conn:
        return await leases.any_due(conn, mail_messages, utcnow())


async def next_message_due(domain: Domain) -> datetime | None:
    async with domain.db.read() as conn:
        return await leases.earliest_due(conn, mail_messages)


def _no_longer_true(message: Row[Any], task: Row[Any], now: datetime) -> str | None:
    if message.kind not in TO_APPROVER:
        return None
    if standing(task, now) is not Standing.OPEN:
        return f"not sent: the task is {task.status}" + (
            "" if task.status != "pending" else " past its deadline"
        )
    if message.recipient not in asked(task):
        if message.recipient in emails_of(task):
            return f"not sent: {message.recipient} has responded"
        passed = [e["to"] for e in task.reassignments or () if e["from"] == message.recipient]
        return f"not sent: the task was reassigned to {passed[-1] if passed else 'someone else'}"
    return None


async def claim_messages(domain: Domain, limit: int, lease: float) -> list[Outgoing]:
    """Lease up to `limit` due messages for `lease` seconds, oldest first; those no
    longer true are cancelled instead."""
    now = utcnow()
    outgoing: list[Outgoing] = []
    cancelled: list[tuple[int, str]] = []
    async with domain.db.write() as conn:
        for message, task in await outbox.claim_messages(conn, now, limit, lease):
            reason = _no_longer_true(message, task, now)
            if reason is not None:
                cancelled.append((message.id, reason))
                continue
            outgoing.append(
                Outgoing(
                    id=message.id,
                    attempt=message.attempts,
                    kind=message.kind,
                    to=message.recipient,
                    sequence=message.sequence,
                    context=message.context or {},
                    created_at=message.created_at,
                    task=task_view(task),
                    links=links_for(domain, task, message.recipient)
                    if message.kind in TO_APPROVER
                    else None,
                )
            )
        await outbox.cancel(conn, cancelled)
    return outgoing


async def record_results(domain: Domain, results: list[SendResult]) -> None:
    """Log each attempt and move its message on: sent, retry later, or give up."""
    if not results:
        return
    attempts = [
        {
            "message_id": r.id,
            "attempted_at": r.attempted_at,
            "latency_ms": r.latency_ms,
            "smtp_code": r.smtp_code,
            "error": r.error,
        }
        for r in results
    ]
    outcomes: list[dict[str, Any]] = []
    for r in results:
        if r.sent:
            values: dict[str, Any] = {"status": outbox.SENT, "sent_at": r.attempted_at}
        elif r.retry_at is not None:
            values = {"next_attempt_at": r.retry_at}
        else:
            values = {"status": outbox.FAILED}
        if r.message_id is not None:
            values["message_id"] = r.message_id
        outcomes.append({"id": r.id, "last_error": r.error, **values})
    async with domain.db.write() as conn:
        await outbox.record_attempts(conn, attempts, outcomes)


async def release_claims(domain: Domain) -> int:
    """Free every lease (only for a store with a single replica, e.g. SQLite at start)."""
    async with domain.db.write() as conn:
        return await leases.release_all(conn, mail_messages)


# -- API ----------------------------------------------------------------------


def _message_view(row: Row[Any], attempts: list[Row[Any]]) -> dict[str, Any]:
    m = row._mapping
    pending = m["status"] == outbox.PENDING
    return {
        "id": m["public_id"],
        "kind": m["kind"],
        "to": m["recipient"],
        "sequence": m["sequence"],
        "status": m["status"],
        "attempts": m["attempts"],
        "messageId": m["message_id"],
        "createdAt": format_datetime(m["created_at"]),
        "sentAt": format_datetime(m["sent_at"]),
        "nextAttemptAt": format_datetime(m["next_attempt_at"]) if pending else None,
        "lastError": m["last_error"],
        "attemptLog": [
            {
                "attemptedAt": format_datetime(a.attempted_at),
                "latencyMs": a.latency_ms,
                "smtpCode": a.smtp_code,
                "error": a.error,
            }
            for a in attempts
        ],
    }


async def list_messages(
    domain: Domain, principal: Principal, task_id: str, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The mail the service sent (or will send) about a task the caller may read,
    oldest first, each with its attempts: to whom, what kind, how it went; no bodies."""
    async with domain.db.read() as conn:
        task = await load_task(conn, principal, task_id)
        rows = await outbox.messages_of(conn, task.seq, limit=limit, offset=offset)
        attempts = await outbox.attempts_of(conn, [r.id for r in rows])
    return [_message_view(r, attempts[r.id]) for r in rows]
