"""The statements of tasks, and where the two databases differ for them.

The domain decides what changes; these read and write it. Statements used on every
request are built once with bound parameters (`prepared`: SQLite runs them without
SQLAlchemy's per-execution work). Where SQLite and PostgreSQL differ (row locks,
NOTIFY, planner hints, advisory locks), the difference is here and nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text

from peopletasks.store.database import Conn, prepared
from peopletasks.store.tables import (
    PENDING_DEADLINE_INDEX,
    PENDING_ESCALATION_INDEX,
    PENDING_ESCALATION_ONLY,
    PENDING_ONLY,
    PENDING_REMINDER_INDEX,
    PENDING_REMINDER_ONLY,
    task_approvers,
    task_assignees,
    task_notes,
    tasks,
)
from peopletasks.store.types import UTCDateTime

#: The PostgreSQL channel on which a replica announces a task's new status.
CHANGES_CHANNEL = "peopletasks_decided"
#: The PostgreSQL advisory lock class of re-parenting (the key is the organization).
_PARENT_LOCK = 0x5054  # "PT"

_BY_ID = prepared(
    select(tasks).where(tasks.c.id == bindparam("b_id"), tasks.c.org_id == bindparam("b_org"))
)
# SQLite has no row locks (and needs none: one connection writes, one transaction at a
# time); SQLAlchemy leaves FOR UPDATE out there.
_BY_ID_LOCKED = prepared(
    select(tasks)
    .where(tasks.c.id == bindparam("b_id"), tasks.c.org_id == bindparam("b_org"))
    .with_for_update()
)
_BY_ID_ANY_ORG = prepared(select(tasks).where(tasks.c.id == bindparam("b_id")))
_PEOPLE_BY_ID = prepared(
    select(tasks.c.org_id, tasks.c.approver, tasks.c.approvers, tasks.c.requester).where(
        tasks.c.id == bindparam("b_id")
    )
)
_INSERT = prepared(tasks.insert().returning(tasks), row_from_values=True)
# The columns to set are the parameters given (besides `b_seq`).
_UPDATE = prepared(
    tasks.update().where(tasks.c.seq == bindparam("b_seq")).returning(tasks),
    reread_by=("seq", "b_seq"),
)


async def task_by_id(
    conn: Conn, task_id: str, org_id: int | None, *, for_update: bool = False
) -> Row[Any] | None:
    """A task of organization `org_id` (None: of any), locked until the transaction
    ends when `for_update` (inside `Database.write()`)."""
    if org_id is None:
        return (await conn.execute(_BY_ID_ANY_ORG, {"b_id": task_id})).first()  # type: ignore[no-any-return]
    statement = _BY_ID_LOCKED if for_update else _BY_ID
    return (await conn.execute(statement, {"b_id": task_id, "b_org": org_id})).first()  # type: ignore[no-any-return]


async def task_people(conn: Conn, task_id: str) -> Row[Any] | None:
    """Whose a task's secrets are: its organization, approver(s) and requester (a
    secret is checked before anything else of the task is read)."""
    return (await conn.execute(_PEOPLE_BY_ID, {"b_id": task_id})).first()  # type: ignore[no-any-return]


async def task_by_request_key(conn: Conn, org_id: int, request_key: str) -> Row[Any] | None:
    query = select(tasks).where(tasks.c.org_id == org_id, tasks.c.request_key == request_key)
    return (await conn.execute(query)).first()  # type: ignore[no-any-return]


async def insert_task(conn: Conn, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(_INSERT, values)).one()  # type: ignore[no-any-return]


async def update_task(conn: Conn, seq: int, values: dict[str, Any]) -> Row[Any]:
    """Set `values` (column -> value) on task `seq`; the task as it now stands."""
    return (await conn.execute(_UPDATE, {**values, "b_seq": seq})).one()  # type: ignore[no-any-return]


async def overdue_tasks(conn: Conn, now: datetime, limit: int) -> list[Row[Any]]:
    """Pending tasks whose deadline has passed, earliest first, locked (PostgreSQL skips
    those another replica holds, so replicas expire different tasks)."""
    query = (
        select(tasks)
        .where(text(PENDING_ONLY), tasks.c.decision_by <= now)
        .order_by(tasks.c.decision_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


#: The earliest deadline of a pending task, from the index of pending deadlines (its
#: first entry). SQLite is told which index: with sampled statistics it judged the
#: partial index large and walked a role index instead (28 ms at 226,000 tasks, on
#: the event loop, each time the scheduler woke; measured).
_NEXT_DEADLINE = {
    "sqlite": text(
        f"SELECT min(decision_by) AS earliest FROM tasks INDEXED BY {PENDING_DEADLINE_INDEX}"  # noqa: S608
        f" WHERE {PENDING_ONLY}"
    ).columns(earliest=UTCDateTime()),
    "postgresql": select(func.min(tasks.c.decision_by)).where(text(PENDING_ONLY)),
}


async def next_deadline(conn: Conn) -> datetime | None:
    earliest: datetime | None = await conn.scalar(_NEXT_DEADLINE[conn.dialect.name])
    return earliest


def _earliest(column: str, index: str, condition: str) -> dict[str, Any]:
    """The earliest `column` of the tasks of a partial index, as `_NEXT_DEADLINE`."""
    return {
        "sqlite": text(
            f"SELECT min({column}) AS earliest FROM tasks INDEXED BY {index}"  # noqa: S608
            f" WHERE {condition}"
        ).columns(earliest=UTCDateTime()),
        "postgresql": select(func.min(tasks.c[column])).where(text(condition)),
    }


_NEXT_REMINDER = _earliest("next_reminder_at", PENDING_REMINDER_INDEX, PENDING_REMINDER_ONLY)
_NEXT_ESCALATION = _earliest("escalate_at", PENDING_ESCALATION_INDEX, PENDING_ESCALATION_ONLY)


async def next_follow_up(conn: Conn, *, reminders: bool = True) -> datetime | None:
    """The earliest escalation (and reminder) still to come of a pending task."""
    dialect = conn.dialect.name
    times = [await conn.scalar(_NEXT_ESCALATION[dialect])]
    if reminders:
        times.append(await conn.scalar(_NEXT_REMINDER[dialect]))
    return min((t for t in times if t is not None), default=None)


#: What a reminder needs of its task (a burst reads thousands: not the whole row).
REMINDER_COLUMNS = (
    "seq",
    "org_id",
    "approver",
    "status",
    "decision_by",
    "allow_late_decision",
    "created_at",
    "reminders",
    "reminders_sent",
    # whom a reminder goes to (`approvers.asked`)
    "approvers",
    "decided_by",
    "decided_at",
    "comment",
    "option",
    "decision_data",
)


async def due_reminders(conn: Conn, now: datetime, limit: int) -> list[Row[Any]]:
    """Pending tasks whose next reminder is due (`REMINDER_COLUMNS`), earliest first,
    locked (PostgreSQL skips those another replica holds)."""
    query = (
        select(*(tasks.c[name] for name in REMINDER_COLUMNS))
        .where(text(PENDING_REMINDER_ONLY), tasks.c.next_reminder_at <= now)
        .order_by(tasks.c.next_reminder_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


async def due_escalations(conn: Conn, now: datetime, limit: int) -> list[Row[Any]]:
    """Pending tasks whose escalation is due, earliest first, locked (as above)."""
    query = (
        select(tasks)
        .where(text(PENDING_ESCALATION_ONLY), tasks.c.escalate_at <= now)
        .order_by(tasks.c.escalate_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


_SET_REMINDER = (
    tasks.update()
    .where(tasks.c.seq == bindparam("b_seq"))
    .values(
        next_reminder_at=bindparam("b_next", type_=UTCDateTime()),
        reminders_sent=bindparam("b_sent"),
    )
)


async def set_reminders(conn: Conn, schedule: list[tuple[int, int, datetime | None]]) -> None:
    """(task seq, reminders sent, next reminder) for many tasks in one statement."""
    if schedule:
        await conn.execute(
            _SET_REMINDER,
            [{"b_seq": seq, "b_sent": sent, "b_next": nxt} for seq, sent, nxt in schedule],
        )


async def announce_change(conn: Conn, task_id: str) -> None:
    """Tell the other replicas that task `task_id` changed status (PostgreSQL NOTIFY,
    sent when the transaction commits; SQLite serves one process, which knows)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :id)"), {"channel": CHANGES_CHANNEL, "id": task_id}
        )


async def parent_of(conn: Conn, org_id: int, task_id: str) -> tuple[bool, str | None]:
    """Whether task `task_id` exists in the organization, and its parent's id."""
    row = (
        await conn.execute(
            select(tasks.c.parent_id).where(tasks.c.id == task_id, tasks.c.org_id == org_id)
        )
    ).first()
    return (False, None) if row is None else (True, row.parent_id)


async def hold_reparenting(conn: Conn, org_id: int) -> None:
    """One re-parenting at a time per organization until the transaction ends: two
    crossing moves (A under B, B under A) would each pass a cycle check alone. (SQLite
    has one writer, so nothing to do.)"""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(_PARENT_LOCK, org_id)))


async def set_assignees(conn: Conn, seq: int, assignees: list[dict[str, str]] | None) -> None:
    """Keep task_assignees (what `filter=assignee:` searches) in step with the row."""
    await conn.execute(task_assignees.delete().where(task_assignees.c.task_seq == seq))
    if assignees:
        await conn.execute(
            task_assignees.insert(),
            [
                {"task_seq": seq, "entity_type": a["type"], "entity_id": a["id"], "position": i}
                for i, a in enumerate(assignees)
            ],
        )


async def set_approvers(conn: Conn, seq: int, emails: list[str]) -> None:
    """Index a task's approvers (task_approvers: what a person's list searches)."""
    await conn.execute(
        task_approvers.insert(),
        [{"task_seq": seq, "email": email, "position": i} for i, email in enumerate(emails)],
    )


async def replace_approver(conn: Conn, seq: int, old: str, new: str) -> None:
    """`new` takes `old`'s place among a task's indexed approvers (a reassignment)."""
    await conn.execute(
        task_approvers.update()
        .where(task_approvers.c.task_seq == seq, task_approvers.c.email == old)
        .values(email=new)
    )


async def insert_note(conn: Conn, seq: int, values: dict[str, Any], now: datetime) -> Row[Any]:
    """Append a note to task `seq` (and count it on the task)."""
    note = (
        await conn.execute(task_notes.insert().values(task_seq=seq, **values).returning(task_notes))
    ).one()
    await conn.execute(
        tasks.update()
        .where(tasks.c.seq == seq)
        .values(notes_count=tasks.c.notes_count + 1, updated_at=now)
    )
    return note  # type: ignore[no-any-return]


async def notes_of(conn: Conn, seq: int, *, limit: int, offset: int) -> list[Row[Any]]:
    rows = await conn.execute(
        select(task_notes)
        .where(task_notes.c.task_seq == seq)
        .order_by(task_notes.c.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows)
