"""What the service does by itself for a pending task: the approver it goes to and how
people are told when it is created, then its reminders and its escalation when their
time comes (the scheduler's work besides deadlines: `service.workers.DeadlineScheduler`).

Both are kept on the task row (`next_reminder_at`, `reminders_sent`, `escalate_at`),
so they survive a restart, and are read from partial indexes of the pending tasks
that have one. Several replicas may fire at once: each locks the tasks it takes and
skips those another holds (PostgreSQL `SKIP LOCKED`; SQLite has one writer).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain import notices
from peopletasks.domain.approvers import asked
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import decide_as_system
from peopletasks.domain.delegation import reassign_row, resolve_approver
from peopletasks.domain.events import record_event
from peopletasks.domain.rules import Standing, standing
from peopletasks.domain.schedule import check_follow_ups, escalation_time, next_reminder
from peopletasks.domain.status import Status
from peopletasks.errors import ValidationFailed
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn
from peopletasks.timeutil import utcnow

ESCALATED_EVENT = "task.escalated"


async def for_new_task(
    domain: Domain,
    conn: Conn,
    org_id: int,
    values: dict[str, Any],
    approvers: list[str],
    now: datetime,
) -> tuple[dict[str, Any], list[str]]:
    """The columns a new task (its column `values`, asked of `approvers`) gets from what
    the service does for it: its approvers after standing delegations (and
    `delegated_from`: whose task the first delegated one was), `notify` as the service
    does it (none without SMTP), the times of its first reminder and its escalation;
    and the approvers after delegations. Raises ValidationFailed for reminders or an
    escalation that could not happen as asked."""
    reminders, escalation = values["reminders"], values["escalation"]
    decision_by = values["decision_by"]
    check_follow_ups(
        reminders, escalation, created_at=now, decision_by=decision_by, approver=values["approver"]
    )
    if escalation and escalation["action"] == "reassign" and len(approvers) > 1:
        raise ValidationFailed.field(
            "escalation.action",
            "reassign needs a task with one approver (with several, use notify, approve or reject)",
        )
    resolved: list[str] = []
    delegated_from = None
    for approver in approvers:
        delegate, was = await resolve_approver(conn, org_id, approver, now)
        resolved.append(delegate)
        delegated_from = delegated_from or was
    if len(set(resolved)) < len(resolved):
        raise ValidationFailed.field(
            "approvers",
            "a standing delegation sends one approver's tasks to another approver of "
            "this task: "
            + ", ".join(f"{a} -> {r}" for a, r in zip(approvers, resolved, strict=True) if a != r),
        )
    notify = values["notify"] if values["notify"] is not None else list(domain.notify_default)
    first = None
    if domain.mail_enabled:
        first = next_reminder(reminders, now, decision_by, after=now, sent=0)
    columns = {
        "delegated_from": delegated_from,
        "notify": (notify or None) if domain.mail_enabled else None,
        "next_reminder_at": first,
        "escalate_at": escalation_time(escalation, now),
    }
    if resolved[0] != approvers[0]:  # the first approver's tasks go to their delegate
        columns.update(approver=resolved[0], approver_given=None)
    return columns, resolved


def rescheduled(domain: Domain, row: Row[Any], decision_by: datetime | None) -> dict[str, Any]:
    """The next reminder of task `row` once its deadline moves to `decision_by`."""
    if not domain.mail_enabled or not row.reminders:
        return {}
    after = max(utcnow(), row.created_at)
    return {
        "next_reminder_at": next_reminder(
            row.reminders, row.created_at, decision_by, after=after, sent=row.reminders_sent
        )
    }


async def fire_due_reminders(domain: Domain, *, limit: int = 500) -> int:
    """Queue the reminders that are due (one per task, however many times were missed)
    and schedule each task's next. Returns how many tasks were due. A replica without
    SMTP leaves them to one with."""
    if not domain.mail_enabled:
        return 0
    now = utcnow()
    async with domain.db.write() as conn:
        rows = await stored.due_reminders(conn, now, limit)
        messages: list[dict[str, Any]] = []
        schedule: list[tuple[int, int, datetime | None]] = []
        for row in rows:
            if standing(row, now) is not Standing.OPEN:
                schedule.append((row.seq, row.reminders_sent, None))
                continue
            sent = row.reminders_sent + 1
            messages += [
                notices.message(row, notices.REMINDER, to, sequence=sent) for to in asked(row)
            ]
            following = next_reminder(
                row.reminders, row.created_at, row.decision_by, after=now, sent=sent
            )
            schedule.append((row.seq, sent, following))
        await notices.queue(domain, conn, messages)
        await stored.set_reminders(conn, schedule)
    return len(rows)


async def fire_due_escalations(domain: Domain, *, limit: int = 100) -> int:
    """Act on the escalations that are due. Returns how many tasks were due."""
    now = utcnow()
    async with domain.db.write() as conn:
        rows = await stored.due_escalations(conn, now, limit)
        for row in rows:
            if standing(row, now) is not Standing.OPEN:
                await stored.update_task(conn, row.seq, {"escalate_at": None})
                continue
            escalation = row.escalation
            action, to = escalation["action"], escalation.get("to")
            reason = f"no decision within {escalation['after']} (escalation)"
            done = {"escalate_at": None, "escalated_at": now}
            context = {
                "action": action,
                "to": to,
                "after": escalation["after"],
                "approver": row.approver,
                "reason": reason,
            }
            if action == "reassign" and to is not None and to != row.approver:
                changed = await reassign_row(
                    domain, conn, row, to, by=None, comment=reason, reason="escalation", also=done
                )
            elif action in ("approve", "reject"):
                decision = Status.APPROVED if action == "approve" else Status.REJECTED
                changed = await decide_as_system(domain, conn, row, decision, reason, also=done)
            else:
                changed = await stored.update_task(conn, row.seq, {**done, "updated_at": now})
                await record_event(domain, conn, changed, ESCALATED_EVENT, status_change=False)
            await notices.on_escalated(domain, conn, changed, context)
    return len(rows)


async def next_follow_up(domain: Domain) -> datetime | None:
    """The earliest reminder (where this replica mails) or escalation still to come."""
    async with domain.db.read() as conn:
        return await stored.next_follow_up(conn, reminders=domain.mail_enabled)
