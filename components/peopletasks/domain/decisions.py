"""A task's status changes: decided (approved / rejected) by its approver, or due when
its deadline passes. Written once, here, for every caller (API, pages, edits, the
deadline scheduler).

A change reads the task locked (PostgreSQL `FOR UPDATE`; SQLite has one writer),
asks `rules` whether it may happen, and writes the new status with its history
entry, its webhook event, its announcement and its mail (`notices`) in the same
transaction: the first decision wins, a later one gets `Conflict` with the task as it
stands. An escalation decides as the system (`decide_as_system`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain import notices
from peopletasks.domain.context import Domain
from peopletasks.domain.events import record_status_change
from peopletasks.domain.lookup import load_task
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import Standing, check_decider, standing
from peopletasks.domain.status import DECISIONS, Status
from peopletasks.domain.views import status_entry, task_view
from peopletasks.errors import Conflict, ValidationFailed
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn, keep_so_far
from peopletasks.timeutil import utcnow


async def decide_task(
    domain: Domain,
    principal: Principal,
    task_id: str,
    decision: Status,
    comment: str | None = None,
) -> dict[str, Any]:
    """Approve or reject: only the approver, only while the task can take a decision."""
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        row = await decide_row(domain, conn, principal, row, decision, comment)
    return task_view(row)


async def decide_row(
    domain: Domain,
    conn: Conn,
    principal: Principal,
    row: Row[Any],
    decision: Status,
    comment: str | None,
    also: dict[str, Any] | None = None,
) -> Row[Any]:
    """Decide the task `row` (read locked, in this transaction), setting the columns in
    `also` with it. A task found past its deadline turns due, and that is kept even
    though the decision is refused."""
    if decision not in DECISIONS:
        raise ValidationFailed.field("status", "a decision is approved or rejected")
    check_decider(principal, row)
    now = utcnow()
    await refuse_unless_open(domain, conn, row, now)
    values = {"decided_by": principal.email, "decided_at": now, "comment": comment, **(also or {})}
    return await _change_status(domain, conn, row, decision, principal.email, now, values)


async def refuse_unless_open(domain: Domain, conn: Conn, row: Row[Any], now: datetime) -> None:
    """Raise `Conflict` unless the task `row` (read locked) can take a decision now. A
    task found past its deadline turns due, and that is kept though the caller's
    change is refused."""
    match standing(row, now):
        case Standing.OVERDUE:
            row = await _change_status(domain, conn, row, Status.DUE, None, now)
            await keep_so_far(conn)
            raise Conflict(
                "the deadline has passed; the task is due",
                task=task_view(row),
                code="deadline_passed",
            )
        case Standing.CLOSED:
            raise Conflict(
                f"the task is already {row.status}", task=task_view(row), code="already_decided"
            )


async def decide_as_system(
    domain: Domain,
    conn: Conn,
    row: Row[Any],
    decision: Status,
    reason: str,
    also: dict[str, Any] | None = None,
) -> Row[Any]:
    """Decide the open task `row` (read locked) as the service itself (an escalation):
    nobody's decision (`decidedBy` null, `decidedBySystem`), `reason` as its comment."""
    now = utcnow()
    values = {
        "decided_by": None,
        "decided_at": now,
        "comment": reason,
        "decided_by_system": True,
        **(also or {}),
    }
    return await _change_status(domain, conn, row, decision, None, now, values)


async def _change_status(
    domain: Domain,
    conn: Conn,
    row: Row[Any],
    status: Status,
    by: str | None,
    now: datetime,
    values: dict[str, Any] | None = None,
) -> Row[Any]:
    entry = status_entry(row.status, status.value, by, now)
    changed = await stored.update_task(
        conn,
        row.seq,
        {
            **(values or {}),
            "status": status.value,
            "updated_at": now,
            "status_history": [*(row.status_history or ()), entry],
        },
    )
    await record_status_change(domain, conn, changed)
    await notices.on_status_change(domain, conn, changed)
    return changed


async def expire_due_tasks(domain: Domain, *, limit: int = 500) -> int:
    """Turn pending tasks whose deadline has passed into `due` (with history and
    webhook events). Returns how many; safe to run on several replicas at once."""
    now = utcnow()
    async with domain.db.write() as conn:
        rows = await stored.overdue_tasks(conn, now, limit)
        for row in rows:
            await _change_status(domain, conn, row, Status.DUE, None, now)
    return len(rows)


async def next_deadline(domain: Domain) -> datetime | None:
    """The earliest deadline of a pending task."""
    async with domain.db.read() as conn:
        return await stored.next_deadline(conn)
