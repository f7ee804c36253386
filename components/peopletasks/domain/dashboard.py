"""A person's dashboard: their tasks in a role, one task in full, and the links that
open it. The pages (service/dashboard.py) render what these return; who may see and
decide what is `rules`, as for the API.

Who the dashboard shows is the credential it was opened with (a `secret` in the
link, kept afterwards in a cookie):

- a dashboard token (`pd_…`, sent only to the person's address): their tasks as
  approver and as requester;
- a task's approver or requester secret (Appmixer's mailed links): that task;
- with `PEOPLETASKS_PERSON_SECRETS`, a person-wide secret: that person's tasks in
  that role.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from peopletasks.domain import tasks as task_ops
from peopletasks.domain.context import Domain
from peopletasks.domain.forms import form_fields
from peopletasks.domain.lookup import load_task
from peopletasks.domain.options import options_of
from peopletasks.domain.principals import Principal, PrincipalKind, dashboard_token
from peopletasks.domain.rules import Standing, check_responder, check_turn, standing
from peopletasks.domain.status import Status
from peopletasks.domain.values import email_key, normalize_email
from peopletasks.domain.views import history_view, note_view, task_view
from peopletasks.errors import Conflict, Forbidden, NotFound, ValidationFailed
from peopletasks.signing import sha256_hex
from peopletasks.store import tasks as stored
from peopletasks.store.tables import organizations
from peopletasks.timeutil import utcnow

#: How the dashboard sorts a list: its name -> the list's `sort`.
SORTS: dict[str, str] = {
    "deadline": "decisionBy:1",
    "-deadline": "decisionBy:-1",
    "newest": "createdAt:-1",
}
#: The status tabs, in order ("all": no status filter).
STATUS_TABS: tuple[str, ...] = (*(status.value for status in Status), "all")
#: What a list shows of each task (a list's `projection`).
LISTED_FIELDS: tuple[str, ...] = (
    "title",
    "status",
    "requester",
    "approver",
    "decisionBy",
    "allowLateDecision",
    "decidedBy",
    "decidedAt",
    "priority",
    "notesCount",
)
#: Notes shown with a task (the newest, oldest first).
NOTES_SHOWN = 100
_FORM_PURPOSE = "dashboard-form"


def roles_of(principal: Principal) -> tuple[str, ...]:
    """The roles whose tasks the credential lists: a dashboard token both, a secret its
    own."""
    match principal.kind:
        case PrincipalKind.APPROVER_SECRET:
            return ("approver",)
        case PrincipalKind.REQUESTER_SECRET:
            return ("requester",)
    return ("approver", "requester")


def dashboard_link(domain: Domain, org_id: int, email: str, expires_at: datetime) -> str:
    """A link that opens `email`'s dashboard until `expires_at`: send it to that address
    only (it shows and decides all of their tasks)."""
    token = dashboard_token(domain, org_id, email_key(email), expires_at)
    return f"{domain.dashboard_url}?{urlencode({'secret': token})}"


async def person_dashboard_link(
    domain: Domain, email: str, organization: str, valid_for: timedelta
) -> str:
    """`dashboard_link` for a person of the organization named `organization` (for an
    operator to hand out; the mail the service sends carries its own)."""
    try:
        normalize_email(email)
    except ValueError as exc:
        raise ValidationFailed.field("email", str(exc)) from None
    async with domain.db.read() as conn:
        org_id = await conn.scalar(
            select(organizations.c.id).where(organizations.c.name == organization)
        )
    if org_id is None:
        raise NotFound(f"no organization {organization!r}")
    return dashboard_link(domain, int(org_id), email, utcnow() + valid_for)


@dataclass(frozen=True)
class Listing:
    tasks: list[dict[str, Any]]
    #: status -> how many of the person's tasks in this role (and search) have it
    counts: dict[str, int]
    #: how many the selected tab holds
    total: int


async def list_tasks(
    domain: Domain,
    principal: Principal,
    *,
    role: str,
    status: str,
    pattern: str | None,
    sort: str,
    limit: int,
    offset: int,
) -> Listing:
    """One page of the person's tasks in `role` with `status` ("all": any), and the
    counts of every status tab."""
    counts = await task_ops.count_by_status(domain, principal, role=role, pattern=pattern)
    counts["all"] = sum(counts.values())
    listed = await task_ops.list_tasks(
        domain,
        principal,
        role=role,
        filters=[] if status == "all" else [f"status:{status}"],
        sort=SORTS[sort],
        projection=",".join(LISTED_FIELDS),
        pattern=pattern,
        limit=limit,
        offset=offset,
    )
    return Listing(listed, counts, counts[status])


@dataclass(frozen=True)
class TaskInFull:
    task: dict[str, Any]
    history: list[dict[str, Any]]
    #: the newest `NOTES_SHOWN`, oldest first
    notes: list[dict[str, Any]]
    standing: Standing
    #: the caller is one of the task's approvers
    is_approver: bool
    #: ... and may respond now (not yet responded; in a sequential task, their turn)
    their_turn: bool
    #: the task's responses (its own options, or Approve / Reject) and its form's inputs
    options: list[dict[str, str]]
    fields: list[dict[str, Any]]

    @property
    def may_decide(self) -> bool:
        return self.their_turn and self.standing is Standing.OPEN


async def task_in_full(domain: Domain, principal: Principal, task_id: str) -> TaskInFull:
    """A task the caller may read (else NotFound), with its history and notes, and
    whether the caller may decide it now."""
    async with domain.db.read() as conn:
        row = await load_task(conn, principal, task_id)
        count = int(row.notes_count or 0)
        notes = await stored.notes_of(
            conn, row.seq, limit=NOTES_SHOWN, offset=max(0, count - NOTES_SHOWN)
        )
    is_approver = their_turn = False
    try:
        state = check_responder(principal, row)
        is_approver = True
        check_turn(row, state)
        their_turn = True
    except (Forbidden, Conflict):
        pass
    return TaskInFull(
        task=task_view(row),
        history=history_view(row),
        notes=[note_view(note) for note in notes],
        standing=standing(row, utcnow()),
        is_approver=is_approver,
        their_turn=their_turn,
        options=options_of(row),
        fields=form_fields(row.form),
    )


def form_token(domain: Domain, credential: str, task_id: str) -> str:
    """What a decision form posts back: bound to the credential the page was shown to
    and to the task, so a form of one person's page decides nothing for another."""
    message = f"{sha256_hex(credential)}:{task_id}".encode()
    mac = domain.signer.sign(_FORM_PURPOSE, message)[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def form_token_matches(domain: Domain, credential: str, task_id: str, given: str) -> bool:
    return hmac.compare_digest(form_token(domain, credential, task_id), given)
