"""A task's responses and status changes: an approver responds (approve, reject, or
one of the task's own options), the task is decided when its rule is met
(`approvers`), or turns due when its deadline passes. Written once, here, for every
caller (API, pages, edits, the deadline scheduler).

A change reads the task locked (PostgreSQL `FOR UPDATE`; SQLite has one writer),
asks `rules` whether it may happen, and writes the approvers' states, the new status
with its history entry, its webhook events, its announcement and its mail (`notices`)
in the same transaction: the task's status moves exactly once, and a later decision
gets `Conflict` with the task as it stands. An escalation decides as the system
(`decide_as_system`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain import notices
from peopletasks.domain.approvers import Rule, responded, states_of, verdict
from peopletasks.domain.context import Domain
from peopletasks.domain.events import record_response, record_status_change
from peopletasks.domain.forms import check_data
from peopletasks.domain.lookup import load_task
from peopletasks.domain.options import first_of, option_named, options_of
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import Standing, check_responder, check_turn, standing
from peopletasks.domain.status import DECISIONS, Status
from peopletasks.domain.views import status_entry, task_view
from peopletasks.errors import Conflict, ValidationFailed
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn, keep_so_far
from peopletasks.timeutil import format_datetime, utcnow


async def decide_task(
    domain: Domain,
    principal: Principal,
    task_id: str,
    decision: Status,
    comment: str | None = None,
) -> dict[str, Any]:
    """Approve or reject (`/approve`, `/reject`): the approver's response with the task's
    first option of that outcome."""
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        row = await decide_row(domain, conn, principal, row, decision, comment)
    return task_view(row)


async def respond_to_task(
    domain: Domain,
    principal: Principal,
    task_id: str,
    option: str,
    comment: str | None = None,
    data: Any = None,
) -> dict[str, Any]:
    """An approver's response: one of the task's options, a comment, the form's data."""
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        row = await respond_row(domain, conn, principal, row, option, comment, data)
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
    """`decide_task` on the task `row`, read locked in this transaction."""
    if decision not in DECISIONS:
        raise ValidationFailed.field("status", "a decision is approved or rejected")
    option = first_of(row, decision)["key"]
    return await respond_row(domain, conn, principal, row, option, comment, None, also)


async def respond_row(
    domain: Domain,
    conn: Conn,
    principal: Principal,
    row: Row[Any],
    option_key: str,
    comment: str | None,
    data: Any,
    also: dict[str, Any] | None = None,
) -> Row[Any]:
    """Respond to the task `row` (read locked, in this transaction), setting the columns
    in `also` with it; the task's status moves when its rule is met. A task found past
    its deadline turns due, and that is kept even though the response is refused."""
    option = option_named(row, option_key)
    if option is None:
        keys = ", ".join(o["key"] for o in options_of(row))
        raise ValidationFailed.field("option", f"no option {option_key!r}; this task's: {keys}")
    outcome = Status(option["outcome"])
    mine = check_responder(principal, row)
    now = utcnow()
    await refuse_unless_open(domain, conn, row, now)
    check_turn(row, mine)
    data = check_data(row.form, data, complete=outcome is Status.APPROVED)
    decided = {
        "decided_by": principal.email,
        "decided_at": now,
        "comment": comment,
        "option": option_key,
        "decision_data": data,
    }
    if not row.approvers:  # one approver: the response is the decision
        values = {**decided, **(also or {})}
        return await _change_status(domain, conn, row, outcome, principal.email, now, values)
    rule = Rule(row.decision_rule)
    states = responded(
        states_of(row),
        principal.email,
        outcome,
        at=format_datetime(now),
        comment=comment,
        option=option_key,
        data=data,
        rule=rule,
    )
    values = {"approvers": states, **(also or {})}
    final = verdict(states, rule, row.quorum)
    if final is None:
        changed = await stored.update_task(conn, row.seq, {**values, "updated_at": now})
        await record_response(domain, conn, changed, principal.email)
        await notices.on_response(domain, conn, row, changed)
        return changed
    values.update(decided)
    return await _change_status(
        domain, conn, row, final, principal.email, now, values, responded_by=principal.email
    )


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
    *,
    responded_by: str | None = None,
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
    if responded_by is not None:
        await record_response(domain, conn, changed, responded_by)
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
