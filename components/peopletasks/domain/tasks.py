"""A task's life apart from its decision: create, read, list, edit, notes.

Decisions and deadlines are `decisions`; who may do what is `rules`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, union, union_all
from sqlalchemy.exc import IntegrityError

from peopletasks.domain import follow_ups, notices
from peopletasks.domain.approvers import Rule, emails_of, initial_states
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import decide_row
from peopletasks.domain.fields import BY_NAME, columns_for
from peopletasks.domain.forms import check_schema
from peopletasks.domain.inputs import TaskCreate, TaskEdit
from peopletasks.domain.links import links_for
from peopletasks.domain.lookup import load_task
from peopletasks.domain.principals import Principal, PrincipalKind, task_secrets
from peopletasks.domain.rules import check_editor, terms_are_final
from peopletasks.domain.selection import (
    parse_filters,
    parse_projection,
    parse_sort,
    title_pattern,
)
from peopletasks.domain.status import DECISIONS, Status
from peopletasks.domain.values import email_key
from peopletasks.domain.views import history_view, note_view, status_entry, task_view
from peopletasks.domain.waiting import wait_event
from peopletasks.errors import Conflict, Forbidden, ValidationFailed
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn
from peopletasks.store.tables import task_approvers, tasks
from peopletasks.timeutil import format_datetime, utcnow

MAX_LIMIT = 1000
MAX_NOTES = 1000
#: How far up a parent chain a cycle check looks (deeper chains are refused).
MAX_PARENT_DEPTH = 100


def new_public_id() -> str:
    """24 hex characters (like Appmixer's ids): 4 bytes of time, 8 random bytes."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


# -- reading ------------------------------------------------------------------


def _approving(principal: Principal) -> list[ColumnElement[bool]]:
    """The tasks the caller approves: as the (first) approver, or among several. One
    IN over both (each branch searching its own index): `approver = ? OR seq IN (...)`
    made SQLite walk the organization's whole approver index (a count of the busiest
    approver's pending tasks at 100,000 tasks: 15 ms; this way 4 ms)."""
    first = select(tasks.c.seq).where(
        tasks.c.org_id == principal.org_id, tasks.c.approver == principal.email
    )
    among = select(task_approvers.c.task_seq).where(task_approvers.c.email == principal.email)
    return [tasks.c.seq.in_(union_all(first, among))]


def _theirs(principal: Principal, role: str | None) -> list[ColumnElement[bool]]:
    """A list's tasks, as conditions any one of which makes a task the caller's (none:
    the whole organization), optionally in one role."""
    if principal.kind in (PrincipalKind.APPROVER_SECRET, PrincipalKind.REQUESTER_SECRET):
        if role is not None and role != principal.kind.value:
            raise Forbidden(
                f"role: this is a {principal.kind.value} secret; it lists tasks in the "
                f"{principal.kind.value} role only"
            )
        role = principal.kind.value
        if principal.task_id is not None:  # a task's own secret: that task
            return [tasks.c.id == principal.task_id]
    requesting = [tasks.c.requester == principal.email]
    if role is not None:
        return _approving(principal) if role == "approver" else requesting
    if principal.kind is PrincipalKind.PERSON:
        return [*_approving(principal), *requesting]
    if principal.admin:
        return []
    return [*_approving(principal), *requesting, tasks.c.created_by == principal.email]


def _any_of(principal: Principal, theirs: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """One condition for "any of `theirs`": an IN over each one's own search (an OR of
    them would walk the whole organization)."""
    if len(theirs) == 1:
        return theirs[0]
    in_org = tasks.c.org_id == principal.org_id
    return tasks.c.seq.in_(union_all(*(select(tasks.c.seq).where(in_org, c) for c in theirs)))


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
    in_org = tasks.c.org_id == principal.org_id
    rest = _selection_rest(filters or [], pattern)
    theirs = _theirs(principal, role)
    if len(theirs) > 1:
        # "My tasks" is several lists (approver, requester, creator): take the first
        # offset+limit of each by index, then merge (an OR would scan the organization).
        branches = [
            select(tasks.c.seq)
            .where(in_org, condition, *rest)
            .order_by(*order)
            .limit(offset + limit)
            .subquery()
            for condition in theirs
        ]
        merged = union(*(select(branch.c.seq) for branch in branches)).subquery()
        query = select(tasks).where(tasks.c.seq.in_(select(merged.c.seq)))
    else:
        query = select(tasks).where(in_org, *theirs, *rest)
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
    theirs = _theirs(principal, role)
    where = [tasks.c.org_id == principal.org_id, *_selection_rest(filters or [], pattern)]
    if theirs:
        where.append(_any_of(principal, theirs))
    async with domain.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(tasks).where(*where)) or 0)


async def count_by_status(
    domain: Domain,
    principal: Principal,
    *,
    role: str | None = None,
    pattern: str | None = None,
) -> dict[str, int]:
    """How many of the caller's tasks (as `count_tasks` selects them) have each status:
    one query for a list's tabs."""
    theirs = _theirs(principal, role)
    where = [tasks.c.org_id == principal.org_id, *_selection_rest([], pattern)]
    if theirs:
        where.append(_any_of(principal, theirs))
    query = select(tasks.c.status, func.count()).where(*where).group_by(tasks.c.status)
    async with domain.db.read() as conn:
        counted = {status: int(n) for status, n in (await conn.execute(query)).all()}
    return {status.value: counted.get(status.value, 0) for status in Status}


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
    approvers = _approvers_of(given)
    request_key = given["requestKey"]
    if request_key is not None:
        existing = await _by_request_key(domain, principal, request_key)
        if existing is not None:
            return existing
    now = utcnow()
    values = {
        **columns_for(given),
        "approvers": None,  # with several, their states (below, after delegations)
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
            follow, approvers = await follow_ups.for_new_task(
                domain, conn, principal.org_id, values, approvers, now
            )
            values.update(follow)
            if len(approvers) > 1:
                values["approvers"] = initial_states(approvers, given["decisionRule"])
            approver_secrets, requester_secret = await task_secrets(
                domain, conn, principal.org_id, values["id"], approvers, values["requester"]
            )
            row = await stored.insert_task(conn, values)
            if values["assignees"]:
                await stored.set_assignees(conn, row.seq, values["assignees"])
            if len(approvers) > 1:
                await stored.set_approvers(conn, row.seq, approvers)
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
    return _with_secrets(domain, row, approver_secrets, requester_secret, created=True)


def _approvers_of(given: dict[str, Any]) -> list[str]:
    """A create's approvers (`approvers`, or the one `approver`), checked with its rule,
    quorum, form and whether the requester may be among them; `given["approver"]` set
    to the first."""
    listed: list[str] | None = given.pop("approvers", None)
    approver = given["approver"]
    if listed is None:
        if approver is None:
            raise ValidationFailed.field("approver", "is required (or give approvers)")
        listed = [approver]
    elif approver is not None and email_key(approver) != email_key(listed[0]):
        raise ValidationFailed.field(
            "approver", f"is the first of approvers ({listed[0]}) when both are given"
        )
    given["approver"] = approver or listed[0]  # shown as given
    approvers = [email_key(email) for email in listed]  # compared, stored, signed for
    rule, quorum = given["decisionRule"], given["quorum"]
    if rule is Rule.QUORUM:
        if quorum is None or quorum > len(approvers):
            raise ValidationFailed.field(
                "quorum", f"decisionRule quorum needs quorum between 1 and {len(approvers)}"
            )
    elif quorum is not None:
        raise ValidationFailed.field("quorum", "goes with decisionRule quorum")
    if given["form"] is not None:
        check_schema(given["form"])
    if email_key(given["requester"]) in approvers and not given["allowSelfApproval"]:
        raise ValidationFailed.field(
            "requester",
            "is among the approvers: a requester may not approve their own request "
            "unless allowSelfApproval is true",
        )
    return approvers


def _with_secrets(
    domain: Domain,
    row: Row[Any],
    approver_secrets: dict[str, str],
    requester_secret: str,
    *,
    created: bool,
) -> dict[str, Any]:
    view = task_view(row)
    view["approverSecret"] = approver_secrets[row.approver]
    view["approverSecrets"] = approver_secrets
    view["requesterSecret"] = requester_secret
    view["links"] = links_for(domain, row)
    if len(approver_secrets) > 1:  # each approver's own links, for a client that mails
        view["approverLinks"] = {email: links_for(domain, row, email) for email in approver_secrets}
    view["created"] = created
    return view


async def _by_request_key(
    domain: Domain, principal: Principal, request_key: str
) -> dict[str, Any] | None:
    async with domain.db.write() as conn:
        row = await stored.task_by_request_key(conn, principal.org_id, request_key)
        if row is None:
            return None
        approver_secrets, requester_secret = await task_secrets(
            domain, conn, row.org_id, row.id, emails_of(row), row.requester
        )
    return _with_secrets(domain, row, approver_secrets, requester_secret, created=False)


def _changes(row: Row[Any], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Of the given fields, those whose value differs from the task's: name -> columns."""
    now = row._mapping
    changed = {}
    for name, value in given.items():
        columns = BY_NAME[name].columns(value)
        if any(now[column] != v for column, v in columns.items()):
            changed[name] = columns
    return changed


def _change_entry(
    row: Row[Any], changed: dict[str, dict[str, Any]], by: str, now: datetime
) -> dict[str, Any]:
    """The change-log entry of an edit: each changed field as shown, from and to."""
    after = SimpleNamespace(
        **{**row._mapping, **{c: v for columns in changed.values() for c, v in columns.items()}}
    )
    return {
        "changedAt": format_datetime(now),
        "changedBy": by,
        "changes": {
            name: {"from": BY_NAME[name].shown(row), "to": BY_NAME[name].shown(after)}
            for name in changed
        },
    }


async def edit_task(
    domain: Domain, principal: Principal, task_id: str, data: TaskEdit
) -> dict[str, Any]:
    """Change a task's fields (its creator or an admin; a decided task's terms are
    final) and record the change; a status set here is a decision, with its rules."""
    given = data.given()
    for name, value in given.items():
        if value is None and name in BY_NAME and not BY_NAME[name].clearable:
            raise ValidationFailed.field(name, "may not be null")
    status = given.pop("status", None)
    comment = given.pop("comment", None)
    if comment is not None and status is None:
        raise ValidationFailed.field("comment", "goes with a decision: set status too")
    if status is Status.DUE:
        raise ValidationFailed.field("status", "a task becomes due by its deadline only")
    if not principal.is_user:
        raise Forbidden("editing a task needs an API token; a task secret may not do it")
    now = utcnow()
    async with domain.db.write() as conn:
        row = await load_task(conn, principal, task_id, for_update=True)
        if given:
            check_editor(principal, row)
        changed = _changes(row, given)
        if "approver" in changed and row.approvers:
            raise ValidationFailed.field(
                "approver", "this task has several approvers, set when it was created"
            )
        terms = [name for name in changed if BY_NAME[name].term]
        if terms and terms_are_final(row):
            raise Conflict(
                f"the task is {row.status}: its terms ({', '.join(terms)}) are final",
                task=task_view(row),
                code="terms_final",
            )
        if "parentId" in changed:
            await _check_parent(conn, row.org_id, given["parentId"], row.id)
        columns = {c: v for fields in changed.values() for c, v in fields.items()}
        if "decision_by" in columns:
            columns.update(follow_ups.rescheduled(domain, row, columns["decision_by"]))
        if changed:
            entry = _change_entry(row, changed, principal.email, now)
            columns["change_log"] = [*(row.change_log or ()), entry]
        if status is Status.PENDING and row.status != Status.PENDING:
            raise Conflict(
                f"a {row.status} task cannot go back to pending",
                task=task_view(row),
                code="already_decided",
            )
        if status in DECISIONS:
            row = await decide_row(domain, conn, principal, row, status, comment, columns)
        elif columns:
            row = await stored.update_task(conn, row.seq, {**columns, "updated_at": now})
        if "assignees" in columns:
            await stored.set_assignees(conn, row.seq, columns["assignees"])
    domain.deadlines.note(columns.get("decision_by"))
    domain.deadlines.note(columns.get("next_reminder_at"))
    return task_view(row)
