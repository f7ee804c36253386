"""A task's life apart from its decision: create, read, list, edit, notes.

Decisions and deadlines are `decisions`; who may do what is `rules`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select, union
from sqlalchemy.exc import IntegrityError

from peopletasks.domain import follow_ups, notices
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import decide_row
from peopletasks.domain.fields import BY_NAME, columns_for
from peopletasks.domain.inputs import TaskCreate, TaskEdit
from peopletasks.domain.links import links_for
from peopletasks.domain.lookup import load_task
from peopletasks.domain.principals import Principal, PrincipalKind, issue_secrets
from peopletasks.domain.selection import (
    parse_filters,
    parse_projection,
    parse_sort,
    title_pattern,
)
from peopletasks.domain.status import Status
from peopletasks.domain.views import history_view, note_view, status_entry, task_view
from peopletasks.domain.waiting import wait_event
from peopletasks.errors import Conflict, Forbidden, ValidationFailed
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn
from peopletasks.store.tables import tasks
from peopletasks.timeutil import utcnow

MAX_LIMIT = 1000
MAX_NOTES = 1000
#: How far up a parent chain a cycle check looks (deeper chains are refused).
MAX_PARENT_DEPTH = 100


def new_public_id() -> str:
    """24 hex characters (like Appmixer's ids): 4 bytes of time, 8 random bytes."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


# -- reading ------------------------------------------------------------------


def _listed(principal: Principal, role: str | None) -> ColumnElement[bool]:
    """The tasks a principal's list covers: theirs, optionally in one role."""
    in_org = tasks.c.org_id == principal.org_id
    if not principal.is_user:
        if role is not None and role != principal.kind.value:
            raise Forbidden(
                f"role: this is a {principal.kind.value} secret; it lists tasks in the "
                f"{principal.kind.value} role only"
            )
        column = (
            tasks.c.approver
            if principal.kind is PrincipalKind.APPROVER_SECRET
            else (tasks.c.requester)
        )
        return and_(in_org, column == principal.email)
    if role == "approver":
        return and_(in_org, tasks.c.approver == principal.email)
    if role == "requester":
        return and_(in_org, tasks.c.requester == principal.email)
    return and_(
        in_org,
        or_(
            tasks.c.approver == principal.email,
            tasks.c.requester == principal.email,
            tasks.c.created_by == principal.email,
        ),
    )


async def get_task(domain: Domain, principal: Principal, task_id: str) -> dict[str, Any]:
    async with domain.db.read() as conn:
        return task_view(await load_task(conn, principal, task_id))


async def wait_for_decision(
    domain: Domain, principal: Principal, task_id: str, *, timeout: float
) -> dict[str, Any]:
    """The task once it is no longer pending, or as it stands after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = domain.decisions.subscribe(task_id)
        try:
            task = await get_task(domain, principal, task_id)
            remaining = deadline - loop.time()
            if task["status"] != Status.PENDING.value or remaining <= 0:
                return task
            await wait_event(event, min(remaining, domain.wait_recheck_seconds))
        finally:
            domain.decisions.unsubscribe(task_id, event)


async def task_history_of(
    domain: Domain, principal: Principal, task_id: str
) -> list[dict[str, Any]]:
    """Every status change of a task, oldest first (its creation the first), with the
    decision's comment: the row's `statusHistory`, kept with the status itself."""
    async with domain.db.read() as conn:
        row = await load_task(conn, principal, task_id)
    return history_view(row)


async def add_note(domain: Domain, principal: Principal, task_id: str, text: str) -> dict[str, Any]:
    """Append a note to a task the caller may read (a token of its organization, or
    the task's approver or requester secret); the caller is its author."""
    now = utcnow()
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        if row.notes_count >= MAX_NOTES:
            raise Conflict(f"a task holds at most {MAX_NOTES} notes", code="too_many_notes")
        note = await stored.insert_note(
            conn,
            row.seq,
            {
                "public_id": new_public_id(),
                "note": text,
                "author": principal.email,
                "created_at": now,
            },
            now,
        )
    return note_view(note)


async def list_notes(
    domain: Domain, principal: Principal, task_id: str, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """A task's notes, oldest first."""
    async with domain.db.read() as conn:
        row = await load_task(conn, principal, task_id)
        return [
            note_view(r) for r in await stored.notes_of(conn, row.seq, limit=limit, offset=offset)
        ]


def _selection_rest(filters: list[str], pattern: str | None) -> list[ColumnElement[bool]]:
    where = parse_filters(filters)
    by_title = title_pattern(pattern)
    if by_title is not None:
        where.append(by_title)
    return where


def _selection(
    principal: Principal, role: str | None, filters: list[str], pattern: str | None
) -> list[ColumnElement[bool]]:
    return [_listed(principal, role), *_selection_rest(filters, pattern)]


async def list_tasks(
    domain: Domain,
    principal: Principal,
    *,
    role: str | None = None,
    filters: list[str] | None = None,
    sort: str | None = None,
    projection: str | None = None,
    pattern: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    order = parse_sort(sort)
    fields = parse_projection(projection)
    if principal.is_user and role is None:
        # "My tasks" is three lists (approver, requester, creator): take the first
        # offset+limit of each by index, then merge (an OR would scan the organization).
        rest = _selection_rest(filters or [], pattern)
        branches = [
            select(tasks.c.seq)
            .where(tasks.c.org_id == principal.org_id, column == principal.email, *rest)
            .order_by(*order)
            .limit(offset + limit)
            .subquery()
            for column in (tasks.c.approver, tasks.c.requester, tasks.c.created_by)
        ]
        merged = union(*(select(branch.c.seq) for branch in branches)).subquery()
        query = select(tasks).where(tasks.c.seq.in_(select(merged.c.seq)))
    else:
        query = select(tasks).where(*_selection(principal, role, filters or [], pattern))
    query = query.order_by(*order).limit(limit).offset(offset)
    async with domain.db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [task_view(row, fields) for row in rows]


async def count_tasks(
    domain: Domain,
    principal: Principal,
    *,
    role: str | None = None,
    filters: list[str] | None = None,
    pattern: str | None = None,
) -> int:
    where = _selection(principal, role, filters or [], pattern)
    async with domain.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(tasks).where(*where)) or 0)


# -- changing -----------------------------------------------------------------


def _require_user(principal: Principal, action: str) -> None:
    if not principal.is_user:
        raise Forbidden(f"{action} needs an API token; a task secret may not do it")


async def _check_parent(
    conn: Conn, org_id: int, parent_id: str | None, task_id: str | None
) -> None:
    """`parent_id` is a task of the organization and not the task or one of its descendants."""
    if parent_id is None:
        return
    if parent_id == task_id:
        raise ValidationFailed.field("parentId", "a task cannot be its own parent")
    await stored.hold_reparenting(conn, org_id)
    current: str | None = parent_id
    for _ in range(MAX_PARENT_DEPTH):
        assert current is not None
        exists, current = await stored.parent_of(conn, org_id, current)
        if not exists:
            raise ValidationFailed.field("parentId", f"no task {parent_id!r} in this organization")
        if current is None:
            return
        if current == task_id:
            raise ValidationFailed.field(
                "parentId", f"task {parent_id!r} is below this task: that would make a cycle"
            )
    raise ValidationFailed.field(
        "parentId", f"the parent chain is deeper than {MAX_PARENT_DEPTH} tasks"
    )


async def create_task(domain: Domain, principal: Principal, data: TaskCreate) -> dict[str, Any]:
    """Create a pending task; the answer carries `approverSecret`, `requesterSecret` and
    `links`. With a `requestKey` already used, the existing task is answered instead
    (`created` is False)."""
    _require_user(principal, "creating a task")
    given = data.with_defaults()
    if given["status"] is not Status.PENDING:
        raise ValidationFailed.field(
            "status", "a new task is pending; decide it with /approve or /reject"
        )
    request_key = given["requestKey"]
    if request_key is not None:
        existing = await _by_request_key(domain, principal, request_key)
        if existing is not None:
            return existing
    now = utcnow()
    values = {
        **columns_for(given),
        "id": new_public_id(),
        "org_id": principal.org_id,
        "status": Status.PENDING.value,
        "created_by": principal.email,
        "created_at": now,
        "updated_at": now,
        "status_history": [status_entry(None, Status.PENDING.value, principal.email, now)],
    }
    try:
        async with domain.db.write() as conn:
            await _check_parent(conn, principal.org_id, given["parentId"], None)
            values.update(
                await follow_ups.for_new_task(domain, conn, principal.org_id, values, now)
            )
            approver_secret, requester_secret = await issue_secrets(
                domain, conn, principal.org_id, values["approver"], given["requester"]
            )
            row = await stored.insert_task(conn, values)
            if values["assignees"]:
                await stored.set_assignees(conn, row.seq, values["assignees"])
            await notices.on_create(domain, conn, row)
    except IntegrityError:
        if request_key is None:
            raise
        # Another create with the same key won the race: answer with its task.
        existing = await _by_request_key(domain, principal, request_key)
        if existing is None:
            raise
        return existing
    for when in (row.decision_by, row.next_reminder_at, row.escalate_at):
        domain.deadlines.note(when)
    return _with_secrets(domain, row, approver_secret, requester_secret, created=True)


def _with_secrets(
    domain: Domain, row: Row[Any], approver_secret: str, requester_secret: str, *, created: bool
) -> dict[str, Any]:
    view = task_view(row)
    view["approverSecret"] = approver_secret
    view["requesterSecret"] = requester_secret
    view["links"] = links_for(domain, row)
    view["created"] = created
    return view


async def _by_request_key(
    domain: Domain, principal: Principal, request_key: str
) -> dict[str, Any] | None:
    async with domain.db.write() as conn:
        row = await stored.task_by_request_key(conn, principal.org_id, request_key)
        if row is None:
            return None
        approver_secret, requester_secret = await issue_secrets(
            domain, conn, row.org_id, row.approver, row.requester
        )
    return _with_secrets(domain, row, approver_secret, requester_secret, created=False)


async def edit_task(
    domain: Domain, principal: Principal, task_id: str, data: TaskEdit
) -> dict[str, Any]:
    """Change a task's fields; a status change here is a decision, with its rules."""
    _require_user(principal, "editing a task")
    given = data.given()
    for name, value in given.items():
        if value is None and name in BY_NAME and not BY_NAME[name].clearable:
            raise ValidationFailed.field(name, "may not be null")
    status = given.pop("status", None)
    comment = given.pop("comment", None)
    if comment is not None and status is None:
        raise ValidationFailed.field("comment", "goes with a decision: set status too")
    changes = columns_for(given)
    now = utcnow()
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        if "parentId" in given:
            await _check_parent(conn, row.org_id, given["parentId"], row.id)
        if "decision_by" in changes:
            changes.update(follow_ups.rescheduled(domain, row, changes["decision_by"]))
        if "approver" in given or "requester" in given:
            await issue_secrets(
                domain,
                conn,
                row.org_id,
                given.get("approver", row.approver),
                given.get("requester", row.requester),
            )
        if status is not None and status != row.status:
            if status is Status.PENDING:
                raise Conflict(
                    f"a {row.status} task cannot go back to pending",
                    task=task_view(row),
                    code="already_decided",
                )
            if status is Status.DUE:
                raise ValidationFailed.field("status", "a task becomes due by its deadline only")
            row = await decide_row(domain, conn, principal, row, status, comment, changes)
        elif changes:
            row = await stored.update_task(conn, row.seq, {**changes, "updated_at": now})
        if "assignees" in changes:
            await stored.set_assignees(conn, row.seq, changes["assignees"])
    domain.deadlines.note(changes.get("decision_by"))
    domain.deadlines.note(changes.get("next_reminder_at"))
    return task_view(row)
