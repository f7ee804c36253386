"""Every state change of a task: create, edit, decide (approve / reject), expire.

Decisions are one conditional update (`... WHERE status = 'pending'`): the
first decision wins and a later one gets `Conflict` with the task as it
stands. Each change appends to the task's status history.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Row,
    String,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    type_coerce,
    union,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from peopletasks.domain.context import Domain
from peopletasks.domain.events import EVENT_HOOK_COLUMNS, record_status_event
from peopletasks.domain.inputs import FINAL_STATUSES, Status, TaskCreate, TaskEdit, TaskFields
from peopletasks.domain.links import links_for
from peopletasks.domain.principals import Principal, PrincipalKind, issue_secrets
from peopletasks.domain.selection import (
    parse_filters,
    parse_projection,
    parse_sort,
    title_pattern,
)
from peopletasks.domain.views import history_view, note_view, status_entry, task_view
from peopletasks.domain.waiting import CHANNEL, announce, wait_event
from peopletasks.errors import Conflict, Forbidden, NotFound, ValidationFailed
from peopletasks.store.database import Conn, keep_so_far, prepared
from peopletasks.store.tables import (
    PENDING_DEADLINE_INDEX,
    PENDING_ONLY,
    task_assignees,
    task_notes,
    tasks,
    webhooks,
)
from peopletasks.store.types import UTCDateTime
from peopletasks.timeutil import utcnow

MAX_LIMIT = 1000
MAX_NOTES = 1000
#: How far up a parent chain a cycle check looks (deeper chains are refused).
MAX_PARENT_DEPTH = 100
#: The PostgreSQL advisory lock class of re-parenting (the key is the organization).
_PARENT_LOCK = 0x5054  # "PT"


def new_public_id() -> str:
    """24 hex characters (like Appmixer's ids): 4 bytes of time, 8 random bytes."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


# -- reading ------------------------------------------------------------------


def _visible(kind: PrincipalKind, org_id: Any, email: Any) -> ColumnElement[bool]:
    """The tasks a principal of `kind` may read by id (values, or bound parameters)."""
    in_org = tasks.c.org_id == org_id
    if kind is PrincipalKind.APPROVER_SECRET:
        return and_(in_org, tasks.c.approver == email)
    if kind is PrincipalKind.REQUESTER_SECRET:
        return and_(in_org, tasks.c.requester == email)
    return cast(ColumnElement[bool], in_org)


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


#: A task by id as each kind of principal may read it (built once: values are bound).
_BY_ID = {
    kind: prepared(
        select(tasks).where(
            tasks.c.id == bindparam("b_id"),
            _visible(kind, bindparam("b_org"), bindparam("b_email")),
        )
    )
    for kind in PrincipalKind
}


async def _load(conn: Conn, principal: Principal, task_id: str) -> Row[Any]:
    """The task `task_id` if `principal` may read it (as `_visible` says), else NotFound."""
    parameters = {"b_id": task_id, "b_org": principal.org_id, "b_email": principal.email}
    row = (await conn.execute(_BY_ID[principal.kind], parameters)).first()
    if row is None:
        raise NotFound(f"no task {task_id!r}")
    return cast(Row[Any], row)


async def get_task(domain: Domain, principal: Principal, task_id: str) -> dict[str, Any]:
    async with domain.db.read() as conn:
        return task_view(await _load(conn, principal, task_id))


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
        row = await _load(conn, principal, task_id)
    return history_view(row)


async def add_note(domain: Domain, principal: Principal, task_id: str, text: str) -> dict[str, Any]:
    """Append a note to a task the caller may read (a token of its organization, or
    the task's approver or requester secret); the caller is its author."""
    now = utcnow()
    async with domain.db.write() as conn:
        row = await _load(conn, principal, task_id)
        if row.notes_count >= MAX_NOTES:
            raise Conflict(f"a task holds at most {MAX_NOTES} notes", code="too_many_notes")
        note = (
            await conn.execute(
                task_notes.insert()
                .values(
                    public_id=new_public_id(),
                    task_seq=row.seq,
                    note=text,
                    author=principal.email,
                    created_at=now,
                )
                .returning(task_notes)
            )
        ).one()
        await conn.execute(
            tasks.update()
            .where(tasks.c.seq == row.seq)
            .values(notes_count=tasks.c.notes_count + 1, updated_at=now)
        )
    return note_view(note)


async def list_notes(
    domain: Domain, principal: Principal, task_id: str, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """A task's notes, oldest first."""
    async with domain.db.read() as conn:
        row = await _load(conn, principal, task_id)
        rows = await conn.execute(
            select(task_notes)
            .where(task_notes.c.task_seq == row.seq)
            .order_by(task_notes.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [note_view(r) for r in rows]


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


def _history_plus(dialect: str, text: Any) -> ColumnElement[Any]:
    """SQL for the row's `status_history` with one entry appended (`text`: its JSON, a
    bound parameter): part of the UPDATE that changes the status, so the row's copy
    needs no statement of its own."""
    if dialect == "postgresql":
        history = func.coalesce(sql_cast(tasks.c.status_history, JSONB), sql_cast("[]", JSONB))
        appended = history.op("||")(func.jsonb_build_array(sql_cast(text, JSONB)))
        return sql_cast(appended, JSON)
    return func.json_insert(func.coalesce(tasks.c.status_history, "[]"), "$[#]", func.json(text))


def _field_columns(data: TaskFields, given: set[str]) -> dict[str, Any]:
    """The columns of the Peoplelogic / Plannr fields in `given` (null clears)."""
    values: dict[str, Any] = {}
    if "assignees" in given:
        values["assignees"] = [a.model_dump() for a in data.assignees or []] or None
    if "priority" in given:
        values["priority"] = data.priority
    if "order" in given:
        values["position"] = data.order
    if "orderGroup" in given:
        values["order_group"] = data.orderGroup
    if "customFields" in given:
        values["custom_fields"] = {
            f.key: {"name": f.name, "type": f.type, "value": f.value}
            for f in data.customFields or []
        } or None
    if "connectedTo" in given:
        values["connected_type"] = data.connectedTo.type if data.connectedTo else None
        values["connected_id"] = data.connectedTo.id if data.connectedTo else None
    if "parentId" in given:
        values["parent_id"] = data.parentId
    if "mappings" in given:
        values["mappings"] = [m.model_dump(exclude_none=True) for m in data.mappings or []] or None
    if "active" in given:
        if data.active is None:
            raise ValidationFailed.field("active", "may not be null")
        values["active"] = data.active
    return values


async def _check_parent(
    conn: Conn, org_id: int, parent_id: str | None, task_id: str | None
) -> None:
    """`parent_id` is a task of the organization and not the task or one of its descendants."""
    if parent_id is None:
        return
    if parent_id == task_id:
        raise ValidationFailed.field("parentId", "a task cannot be its own parent")
    current: str | None = parent_id
    for _ in range(MAX_PARENT_DEPTH):
        row = (
            await conn.execute(
                select(tasks.c.parent_id).where(tasks.c.id == current, tasks.c.org_id == org_id)
            )
        ).first()
        if row is None:
            if current == parent_id:
                raise ValidationFailed.field(
                    "parentId", f"no task {parent_id!r} in this organization"
                )
            return
        current = row.parent_id
        if current is None:
            return
        if current == task_id:
            raise ValidationFailed.field(
                "parentId", f"task {parent_id!r} is below this task: that would make a cycle"
            )
    raise ValidationFailed.field(
        "parentId", f"the parent chain is deeper than {MAX_PARENT_DEPTH} tasks"
    )


async def _set_assignees(conn: Conn, seq: int, assignees: list[dict[str, str]] | None) -> None:
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


async def create_task(domain: Domain, principal: Principal, data: TaskCreate) -> dict[str, Any]:
    """Create a pending task; the answer carries `approverSecret`, `requesterSecret` and
    `links`. With a `requestKey` already used, the existing task is answered instead
    (`created` is False)."""
    _require_user(principal, "creating a task")
    if data.status is not Status.PENDING:
        raise ValidationFailed.field(
            "status", "a new task is pending; decide it with /approve or /reject"
        )
    if data.requestKey is not None:
        existing = await _by_request_key(domain, principal, data.requestKey)
        if existing is not None:
            return existing
    now = utcnow()
    fields = _field_columns(data, data.model_fields_set)
    fields.setdefault("active", True)
    values = {
        **fields,
        "id": new_public_id(),
        "org_id": principal.org_id,
        "title": data.title,
        "description": data.description,
        "requester": data.requester,
        "approver": data.approver,
        "status": Status.PENDING.value,
        "decision_by": data.decisionBy,
        "public": data.public,
        "allow_late_decision": data.allowLateDecision,
        "created_by": principal.email,
        "created_at": now,
        "updated_at": now,
        "request_key": data.requestKey,
        "status_history": [status_entry(None, Status.PENDING.value, principal.email, now)],
    }
    try:
        async with domain.db.write() as conn:
            await _check_parent(conn, principal.org_id, data.parentId, None)
            approver_secret, requester_secret = await issue_secrets(
                domain, conn, principal.org_id, data.approver, data.requester
            )
            row = (await conn.execute(_INSERT_TASK, values)).one()
            if fields.get("assignees"):
                await _set_assignees(conn, row.seq, fields["assignees"])
    except IntegrityError:
        if data.requestKey is None:
            raise
        # Another create with the same key won the race: answer with its task.
        existing = await _by_request_key(domain, principal, data.requestKey)
        if existing is None:
            raise
        return existing
    domain.deadlines.note(data.decisionBy)
    return _with_secrets(domain, row, approver_secret, requester_secret, created=True)


_INSERT_TASK = prepared(tasks.insert().returning(tasks), row_from_values=True)


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
        row = (
            await conn.execute(
                select(tasks).where(
                    tasks.c.org_id == principal.org_id, tasks.c.request_key == request_key
                )
            )
        ).first()
        if row is None:
            return None
        approver_secret, requester_secret = await issue_secrets(
            domain, conn, row.org_id, row.approver, row.requester
        )
    return _with_secrets(domain, row, approver_secret, requester_secret, created=False)


def _decidable(now: Any, from_status: Status) -> ColumnElement[bool]:
    """A task in `from_status` can take a decision now (before its deadline, or late if allowed)."""
    if from_status is Status.PENDING:
        return and_(
            tasks.c.status == Status.PENDING.value,
            or_(
                tasks.c.decision_by.is_(None),
                tasks.c.decision_by > now,
                tasks.c.allow_late_decision.is_(True),
            ),
        )
    return and_(tasks.c.status == from_status.value, tasks.c.allow_late_decision.is_(True))


_DECIDE: dict[tuple[str, Status], Any] = {}


def _decide_statement(
    dialect: str, from_status: Status, extra: dict[str, Any] | None = None
) -> Any:
    """The conditional UPDATE of a decision (values bound per call; built once per
    dialect and starting status unless `extra` columns change too)."""
    key = (dialect, from_status)
    if not extra and key in _DECIDE:
        return _DECIDE[key]
    now = bindparam("b_now", type_=UTCDateTime())
    statement = (
        tasks.update()
        .where(
            tasks.c.id == bindparam("b_id"),
            tasks.c.org_id == bindparam("b_org"),
            tasks.c.approver == bindparam("b_email"),
            _decidable(now, from_status),
        )
        .values(
            status=bindparam("b_status"),
            decided_by=bindparam("b_email"),
            decided_at=now,
            comment=bindparam("b_comment"),
            updated_at=now,
            status_history=_history_plus(dialect, bindparam("b_entry", type_=String)),
            **(extra or {}),
        )
        .returning(tasks)
    )
    if not extra:
        _DECIDE[key] = prepared(statement, reread_by=("id", "b_id"))
    return statement


_DECIDE_ON_POSTGRES: dict[Status, Any] = {}


def _decision_on_postgres(from_status: Status, extra: dict[str, Any] | None = None) -> Any:
    """PostgreSQL: a decision in one round trip. The conditional UPDATE (the row's
    history with it), the NOTIFY to other replicas and the task's active webhooks (for
    its event) are one statement; as separate statements they were round trips, each
    waiting its turn on a busy event loop while the row stayed locked."""
    if not extra and from_status in _DECIDE_ON_POSTGRES:
        return _DECIDE_ON_POSTGRES[from_status]
    updated = _decide_statement("postgresql", from_status, extra).cte("updated")
    # Sent when the transaction commits; a CTE runs only when the query reads it.
    notified = select(func.pg_notify(bindparam("b_channel", type_=String), updated.c.id)).cte()
    keys_and_values: list[Any] = []
    for name in EVENT_HOOK_COLUMNS:
        keys_and_values += [literal(name), webhooks.c[name]]
    hook = func.json_build_object(*keys_and_values)
    hooks = (
        select(func.json_agg(hook))
        .where(webhooks.c.task_seq == updated.c.seq, webhooks.c.disabled_at.is_(None))
        .scalar_subquery()
    )
    statement = select(
        updated,
        select(func.count()).select_from(notified).scalar_subquery().label("notified"),
        type_coerce(hooks, JSON).label("webhooks"),
    )
    if not extra:
        _DECIDE_ON_POSTGRES[from_status] = statement
    return statement


async def _decide(
    domain: Domain,
    conn: Conn,
    principal: Principal,
    task_id: str,
    decision: Status,
    comment: str | None,
    extra: dict[str, Any] | None = None,
) -> Row[Any]:
    now = utcnow()
    if principal.kind is not PrincipalKind.REQUESTER_SECRET:
        for from_status in (Status.PENDING, Status.DUE):
            entry = status_entry(from_status.value, decision.value, principal.email, now)
            parameters = {
                "b_id": task_id,
                "b_org": principal.org_id,
                "b_email": principal.email,
                "b_now": now,
                "b_status": decision.value,
                "b_comment": comment,
                "b_entry": orjson.dumps(entry).decode(),
            }
            if conn.dialect.name == "postgresql":
                parameters["b_channel"] = CHANNEL
                statement = _decision_on_postgres(from_status, extra)
                updated = (await conn.execute(statement, parameters)).first()
                if updated is None:
                    continue
                hooks = [SimpleNamespace(**hook) for hook in updated.webhooks or ()]
                await record_status_event(
                    conn, updated, domain.handoff, domain.outbox_ready, hooks=hooks
                )
                return cast(Row[Any], updated)
            statement = _decide_statement(conn.dialect.name, from_status, extra)
            updated = (await conn.execute(statement, parameters)).first()
            if updated is not None:
                await record_status_event(conn, updated, domain.handoff, domain.outbox_ready)
                await announce(conn, updated.id)
                return cast(Row[Any], updated)
    # Why not? Read the task as it stands and say.
    row = await _load(conn, principal, task_id)
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        raise Forbidden("a requester secret may read a task, not decide it")
    if row.approver != principal.email:
        raise Forbidden(f"only the approver ({row.approver}) may decide this task")
    if row.status == Status.PENDING.value:  # its deadline has passed: it is due now
        row = await _expire(domain, conn, row, now)
        raise Conflict(
            "the deadline has passed; the task is due", task=task_view(row), code="deadline_passed"
        )
    raise Conflict(f"the task is already {row.status}", task=task_view(row), code="already_decided")


def _due_entry(now: datetime) -> Any:
    """The `statusHistory` entry of a task turning due, as a bound JSON parameter."""
    entry = status_entry(Status.PENDING.value, Status.DUE.value, None, now)
    return bindparam("b_entry", orjson.dumps(entry).decode(), type_=String)


async def _expire(domain: Domain, conn: Conn, row: Row[Any], now: datetime) -> Row[Any]:
    expired = (
        await conn.execute(
            tasks.update()
            .where(tasks.c.seq == row.seq, tasks.c.status == Status.PENDING.value)
            .values(
                status=Status.DUE.value,
                updated_at=now,
                status_history=_history_plus(conn.dialect.name, _due_entry(now)),
            )
            .returning(tasks)
        )
    ).first()
    if expired is None:
        return cast(
            Row[Any], (await conn.execute(select(tasks).where(tasks.c.seq == row.seq))).one()
        )
    await record_status_event(conn, expired, domain.handoff, domain.outbox_ready)
    await announce(conn, expired.id)
    return cast(Row[Any], expired)


async def decide_task(
    domain: Domain,
    principal: Principal,
    task_id: str,
    decision: Status,
    comment: str | None = None,
) -> dict[str, Any]:
    """Approve or reject: only the approver, only while the task can take a decision."""
    if decision not in (Status.APPROVED, Status.REJECTED):
        raise ValidationFailed.field("status", "a decision is approved or rejected")
    try:
        async with domain.db.write() as conn:
            row = await _keeping_expiry(
                conn, _decide(domain, conn, principal, task_id, decision, comment)
            )
    finally:
        domain.decisions.notify(task_id)
    return task_view(row)


async def _keeping_expiry(conn: Conn, deciding: Awaitable[Row[Any]]) -> Row[Any]:
    """Await a decision; when it finds the deadline passed, commit the expiry, then raise."""
    try:
        return await deciding
    except Conflict as conflict:
        if conflict.code == "deadline_passed":
            await keep_so_far(conn)
        raise


async def edit_task(
    domain: Domain, principal: Principal, task_id: str, data: TaskEdit
) -> dict[str, Any]:
    """Change a task's fields; a status change here is a decision, with its rules."""
    _require_user(principal, "editing a task")
    given = data.model_dump(exclude_unset=True)
    for name in ("title", "requester", "approver", "status", "public", "allowLateDecision"):
        if name in given and given[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    columns = {
        "title": "title",
        "description": "description",
        "requester": "requester",
        "approver": "approver",
        "decisionBy": "decision_by",
        "public": "public",
        "allowLateDecision": "allow_late_decision",
    }
    changes = {columns[k]: v for k, v in given.items() if k in columns}
    changes.update(_field_columns(data, data.model_fields_set))
    if changes.get("description", "") is None:
        changes["description"] = ""
    status = given.get("status")
    if given.get("comment") is not None and status is None:
        raise ValidationFailed.field("comment", "goes with a decision: set status too")
    async with domain.db.write() as conn:
        query = select(tasks).where(
            tasks.c.id == task_id, _visible(principal.kind, principal.org_id, principal.email)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        if changes.get("parent_id") is not None:
            if conn.dialect.name == "postgresql":
                # One re-parenting at a time per organization: two crossing moves
                # (A under B, B under A) would each pass the check alone.
                await conn.execute(select(func.pg_advisory_xact_lock(_PARENT_LOCK, row.org_id)))
            await _check_parent(conn, row.org_id, changes["parent_id"], row.id)
        if "approver" in changes or "requester" in changes:
            await issue_secrets(
                domain,
                conn,
                row.org_id,
                changes.get("approver", row.approver),
                changes.get("requester", row.requester),
            )
        if status is not None and status != row.status:
            if status == Status.PENDING:
                raise Conflict(
                    f"a {row.status} task cannot go back to pending",
                    task=task_view(row),
                    code="already_decided",
                )
            if status == Status.DUE:
                raise ValidationFailed.field("status", "a task becomes due by its deadline only")
            if row.status in FINAL_STATUSES and not (
                row.status == Status.DUE and row.allow_late_decision
            ):
                raise Conflict(
                    f"the task is already {row.status}",
                    task=task_view(row),
                    code="already_decided",
                )
            # Decide with the task's current approver, then apply the other changes.
            try:
                updated = await _keeping_expiry(
                    conn,
                    _decide(
                        domain,
                        conn,
                        principal,
                        task_id,
                        Status(status),
                        given.get("comment"),
                        changes,
                    ),
                )
            finally:
                domain.decisions.notify(task_id)
            if "assignees" in changes:
                await _set_assignees(conn, row.seq, changes["assignees"])
            return task_view(updated)
        if not changes:
            return task_view(row)
        now = utcnow()
        updated_row = (
            await conn.execute(
                tasks.update()
                .where(tasks.c.seq == row.seq)
                .values(**changes, updated_at=now)
                .returning(tasks)
            )
        ).one()
        if "assignees" in changes:
            await _set_assignees(conn, row.seq, changes["assignees"])
    domain.deadlines.note(changes.get("decision_by"))
    return task_view(updated_row)


async def expire_due_tasks(domain: Domain, *, limit: int = 500) -> int:
    """Turn pending tasks whose deadline has passed into `due` (with history and
    webhook events). Returns how many; safe to run on several replicas at once."""
    now = utcnow()
    overdue = (
        select(tasks.c.seq)
        .where(tasks.c.status == Status.PENDING.value, tasks.c.decision_by <= now)
        .order_by(tasks.c.decision_by)
        .limit(limit)
    )
    async with domain.db.write() as conn:
        if conn.dialect.name == "postgresql":
            overdue = overdue.with_for_update(skip_locked=True)
        rows = (
            await conn.execute(
                tasks.update()
                .where(tasks.c.seq.in_(overdue.scalar_subquery()))
                # Re-checked on each row found by key: written as an expression no
                # index serves, or SQLite walked every pending task to apply it.
                .where(tasks.c.status.concat("") == Status.PENDING.value)
                .values(
                    status=Status.DUE.value,
                    updated_at=now,
                    status_history=_history_plus(conn.dialect.name, _due_entry(now)),
                )
                .returning(tasks)
            )
        ).all()
        for row in rows:
            await record_status_event(conn, row, domain.handoff, domain.outbox_ready)
            await announce(conn, row.id)
    for row in rows:
        domain.decisions.notify(row.id)
    return len(rows)


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


async def next_deadline(domain: Domain) -> datetime | None:
    """The earliest deadline of a pending task."""
    async with domain.db.read() as conn:
        earliest: datetime | None = await conn.scalar(_NEXT_DEADLINE[conn.dialect.name])
    return earliest
