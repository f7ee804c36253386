"""Passing a task to someone else: a reassignment (by its approver, or a user who may
edit it, or the escalation) and standing delegations for absences.

A reassignment makes `to` the approver of a task that can still take a decision.
The old approver's links stop deciding at once (a link is signed for its task's
approver), the new approver gets the request with links of their own (`notices`),
the task keeps the change in `reassignments` and a `task.reassigned` webhook event
tells the world. It locks the task as a decision does: a reassignment racing a
decision has one winner, and the loser gets 409 (or, as the old approver, 403).

A standing delegation (`PUT /delegations`) sends tasks created for `from` while it is
in force to `to` (and on, if `to` delegates too), recorded on the task as
`delegatedFrom`. A delegation that would lead back to its own `from` is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain import notices
from peopletasks.domain.approvers import states_of
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import refuse_unless_open
from peopletasks.domain.events import record_event
from peopletasks.domain.inputs import Delegation
from peopletasks.domain.lookup import load_task
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import check_delegator, check_reassigner
from peopletasks.domain.values import email_key
from peopletasks.domain.views import task_view
from peopletasks.errors import NotFound, ValidationFailed
from peopletasks.store import delegations as stored
from peopletasks.store import tasks as stored_tasks
from peopletasks.store.database import Conn
from peopletasks.timeutil import format_datetime, utcnow

#: How far a chain of delegations is followed (a -> b -> c ...).
MAX_CHAIN = 10
REASSIGNED_EVENT = "task.reassigned"


async def reassign_task(
    domain: Domain, principal: Principal, task_id: str, to: str, comment: str | None
) -> dict[str, Any]:
    """`PUT /tasks/{id}/reassign`: the task as it now stands."""
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        old = check_reassigner(principal, row)
        row = await reassign_row(
            domain, conn, row, to, by=principal.email, comment=comment, reason="reassigned", old=old
        )
    return task_view(row)


async def reassign_row(
    domain: Domain,
    conn: Conn,
    row: Row[Any],
    to: str,
    *,
    by: str | None,
    comment: str | None,
    reason: str,
    also: dict[str, Any] | None = None,
    old: str | None = None,
) -> Row[Any]:
    """Make `to` the approver of the task `row` (read locked, in this transaction) in
    place of `old` (default: its approver), setting the columns in `also` with it; `by`
    None: the system (the escalation)."""
    now = utcnow()
    await refuse_unless_open(domain, conn, row, now)
    old = old or row.approver
    to = email_key(to)
    if to == old:
        raise ValidationFailed.field("to", f"{to} is already the approver")
    states = states_of(row)
    if to in (s["email"] for s in states):
        raise ValidationFailed.field("to", f"{to} is already one of the approvers")
    if to == row.requester and not row.allow_self_approval:
        raise ValidationFailed.field(
            "to", "is the requester, who may not approve their own request"
        )
    entry = {
        "from": old,
        "to": to,
        "reassignedAt": format_datetime(now),
        "reassignedBy": by,
        "comment": comment,
        "reason": reason,
    }
    columns: dict[str, Any] = {
        **(also or {}),
        "updated_at": now,
        "reassignments": [*(row.reassignments or ()), entry],
    }
    if row.approvers:  # several: `to` takes `old`'s place, and their state
        columns["approvers"] = [
            {**s, "email": to} if s["email"] == old else s for s in row.approvers
        ]
        await stored_tasks.replace_approver(conn, row.seq, old, to)
    if old == row.approver:
        columns.update(approver=to, approver_given=None)
    changed = await stored_tasks.update_task(conn, row.seq, columns)
    await record_event(domain, conn, changed, REASSIGNED_EVENT, status_change=False)
    await notices.on_reassigned(domain, conn, changed, entry)
    return changed


async def resolve_approver(
    conn: Conn, org_id: int, approver: str, now: datetime
) -> tuple[str, str | None]:
    """Who decides a task created now for `approver`, following the delegations in force;
    and whom it was delegated from (None: nobody delegates)."""
    current, seen = approver, {approver}
    for _ in range(MAX_CHAIN):
        delegate = await stored.delegate_of(conn, org_id, current, now)
        if delegate is None or delegate in seen:
            break
        current = delegate
        seen.add(current)
    return current, (approver if current != approver else None)


def _delegation_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "from": row.from_email,
        "to": row.to_email,
        "start": format_datetime(row.starts_at),
        "end": format_datetime(row.ends_at),
        "createdBy": row.created_by,
        "createdAt": format_datetime(row.created_at),
    }


async def set_delegation(domain: Domain, principal: Principal, data: Delegation) -> dict[str, Any]:
    """`PUT /delegations`: `from`'s delegation (one per person, replaced)."""
    check_delegator(principal, data.from_)
    now = utcnow()
    start = data.start or now
    if data.end <= start:
        raise ValidationFailed.field("end", "must come after start")
    if data.end <= now:
        raise ValidationFailed.field("end", "is already past")
    async with domain.db.write() as conn:
        others = {
            r.from_email: r.to_email
            for r in await stored.overlapping(conn, principal.org_id, start, data.end)
            if r.from_email != data.from_
        }
        current, path = data.to, [data.from_, data.to]
        for _ in range(MAX_CHAIN):
            current = others.get(current, "")
            if not current:
                break
            path.append(current)
            if current == data.from_:
                raise ValidationFailed.field(
                    "to",
                    "a delegation loop in that window: " + " -> ".join(path),
                )
        values = {
            "org_id": principal.org_id,
            "from_email": data.from_,
            "to_email": data.to,
            "starts_at": start,
            "ends_at": data.end,
            "created_by": principal.email,
            "created_at": now,
        }
        await stored.put(conn, values)
        rows = await stored.touching(conn, principal.org_id, data.from_)
    return next(_delegation_view(r) for r in rows if r.from_email == data.from_)


async def list_delegations(domain: Domain, principal: Principal) -> list[dict[str, Any]]:
    """`GET /delegations`: the caller's, from them and to them."""
    check_delegator(principal, principal.email)
    async with domain.db.read() as conn:
        rows = await stored.touching(conn, principal.org_id, principal.email)
    return [_delegation_view(r) for r in rows]


async def delete_delegation(domain: Domain, principal: Principal, from_email: str) -> None:
    """`DELETE /delegations/{from}`: end `from`'s delegation now."""
    check_delegator(principal, from_email)
    async with domain.db.write() as conn:
        if not await stored.remove(conn, principal.org_id, from_email):
            raise NotFound(f"{from_email} has no delegation")
