"""The outbox: an event per task status change (and per reassignment or escalation),
written in the changing transaction.

Every status change (approved, rejected, due) calls `record_status_change` on the
connection that made it, so the change, its webhook deliveries and its announcement
to other replicas commit together or not at all. The dispatcher (peopletasks.webhooks)
sends the deliveries afterwards; with a dispatcher in this process that has room,
they are handed to it at commit (see `handoff`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row

from peopletasks.domain.context import Domain
from peopletasks.domain.handoff import ClaimedDelivery
from peopletasks.domain.views import task_view
from peopletasks.store import outbox
from peopletasks.store.database import Conn, after_commit
from peopletasks.store.tasks import announce_change
from peopletasks.timeutil import utcnow


def event_type(status: str) -> str:
    return f"task.{status}"


def event_body(task: dict[str, Any], type_: str) -> str:
    """The task as the API returns it, plus the event type."""
    return orjson.dumps({"type": type_, **task}).decode()


async def record_status_change(domain: Domain, conn: Conn, task_row: Row[Any]) -> int:
    """Announce `task_row`'s new status, and write its event with a delivery per active
    webhook. Returns how many deliveries were written."""
    await announce_change(conn, task_row.id)
    after_commit(lambda: domain.decisions.notify(task_row.id))
    return await record_event(domain, conn, task_row, event_type(task_row.status))


async def record_response(domain: Domain, conn: Conn, task_row: Row[Any], email: str) -> int:
    """A `task.responded` event for one approver's response on a task with several: the
    task as it now stands and `response` (that approver's state)."""
    view = task_view(task_row)
    response = next(a for a in view["approvers"] if a["email"] == email)
    content = {**view, "response": response}
    return await record_event(
        domain, conn, task_row, "task.responded", status_change=False, content=content
    )


async def record_event(
    domain: Domain,
    conn: Conn,
    task_row: Row[Any],
    type_: str,
    *,
    status_change: bool = True,
    content: dict[str, Any] | None = None,
) -> int:
    """Write the event `type_` of `task_row` (its body `content`, by default the task as
    it now stands) with a delivery per active webhook; a change that is not of status
    (`task.responded`, `task.reassigned`, `task.escalated`) goes to URL webhooks only (a
    `prefect` one resumes a flow run with the decision). Returns how many deliveries
    were written."""
    hooks = await outbox.active_webhooks(conn, task_row.seq)
    if not status_change:
        hooks = [hook for hook in hooks if hook.kind == "http"]
    if not hooks:  # nobody listens: no body to build (most tasks have no webhook)
        return 0
    body = task_view(task_row) if content is None else content
    return await _write_event(domain, conn, task_row, hooks, type_, body)


async def record_current_status(
    domain: Domain, conn: Conn, task_row: Row[Any], hook: Row[Any]
) -> int:
    """Tell one webhook, registered after its task was decided or became due, the
    status it missed: an event of that status with a delivery to `hook` alone (the
    task's other webhooks heard it when it happened)."""
    type_ = event_type(task_row.status)
    return await _write_event(domain, conn, task_row, [hook], type_, task_view(task_row))


async def _write_event(
    domain: Domain,
    conn: Conn,
    task_row: Row[Any],
    hooks: Sequence[Row[Any]],
    type_: str,
    content: dict[str, Any],
) -> int:
    """An event `type_` of `task_row` (its body `content`) with a delivery per webhook of
    `hooks` (`outbox.EVENT_HOOK_COLUMNS`), handed to this process's dispatcher at commit
    when it has room. Returns how many deliveries were written."""
    if not hooks:
        return 0
    now = utcnow()
    message_id = f"msg_{secrets.token_hex(12)}"
    body = event_body(content, type_)
    event = {
        "public_id": message_id,
        "org_id": task_row.org_id,
        "task_seq": task_row.seq,
        "type": type_,
        "body": body,
        "created_at": now,
    }
    deliveries = [{"public_id": secrets.token_hex(12), "webhook_id": h.id} for h in hooks]
    handoff = domain.handoff
    handing = handoff is not None and handoff.room() >= len(hooks)
    claim: dict[str, Any] = {"attempts": 0, "claimed_until": None}
    if handoff is not None and handing:
        claim = {"attempts": 1, "claimed_until": now + timedelta(seconds=handoff.lease_seconds)}
    ids = await outbox.insert_event(conn, event, deliveries, claim, want_ids=handing)
    if handoff is None or ids is None or not handing:
        after_commit(domain.outbox_ready.set)
        return len(hooks)
    claimed = [
        _claimed(delivery_id, hook, message_id, type_, body, now)
        for delivery_id, hook in zip(ids, hooks, strict=True)
    ]
    registered = after_commit(lambda: handoff.take(claimed))
    assert registered, "record_status_change runs inside Database.write()"
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
