"""Deciding from an e-mail: issue a task's action links, open one, decide through it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from peopletasks import links
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import decide_task
from peopletasks.domain.principals import Principal, PrincipalKind
from peopletasks.domain.rules import Standing, standing
from peopletasks.domain.status import DECISIONS, Status
from peopletasks.domain.views import task_view
from peopletasks.errors import Forbidden, NotFound
from peopletasks.errors import LinkProblem as LinkProblem
from peopletasks.store import tasks as stored
from peopletasks.timeutil import format_datetime, utcnow


@dataclass(frozen=True)
class OpenedLink:
    token: str
    action: str
    expires_at: datetime
    task: dict[str, Any]
    org_id: int
    #: the task's approver, as addresses compare (the view shows it as given)
    approver: str
    #: the other action's token, so the page can offer both buttons
    other_token: str
    #: whether the task can take a decision now
    standing: Standing


def link_expiry(domain: Domain, decision_by: datetime | None, now: datetime) -> datetime:
    latest = now + timedelta(seconds=domain.link_max_age_seconds)
    return min(decision_by, latest) if decision_by is not None else latest


def links_for(domain: Domain, row: Row[Any]) -> dict[str, Any]:
    """Fresh approve / reject links for a task's approver."""
    expires = link_expiry(domain, row.decision_by, utcnow())
    out: dict[str, Any] = {}
    for action in links.ACTIONS:
        token = links.issue_token(
            domain.signer,
            task_id=row.id,
            approver=row.approver,
            action=action,
            expires_at=expires,
        )
        out[action] = f"{domain.public_url}/people-task/act/{token}"
    out["expiresAt"] = format_datetime(expires.replace(microsecond=0))
    return out


async def task_links(domain: Domain, principal: Principal, task_id: str) -> dict[str, Any]:
    """The links of a task, for its creator (e.g. to send them by other means)."""
    async with domain.db.read() as conn:
        row = await stored.task_by_id(conn, task_id, principal.org_id)
    if row is None or not principal.is_user:
        raise NotFound(f"no task {task_id!r}")
    if row.created_by != principal.email and not principal.admin:
        raise Forbidden("only the task's creator (or an admin token) may fetch its action links")
    return links_for(domain, row)


async def open_link(domain: Domain, token: str) -> OpenedLink:
    """Verify a link and load its task. Changes nothing (safe for scanners)."""
    try:
        claims = links.read_token(token)
    except links.LinkInvalid as exc:
        raise LinkProblem("invalid", str(exc)) from None
    async with domain.db.read() as conn:
        row = await stored.task_by_id(conn, claims.task_id, None)
    if row is None:
        raise LinkProblem("invalid", "this link does not belong to any task")
    try:
        links.verify(domain.signer, claims, row.approver)
    except links.LinkInvalid as exc:
        raise LinkProblem("invalid", str(exc)) from None
    view = task_view(row)
    now = utcnow()
    # An expired link never decides again (a task that allows late decisions turns due
    # and stays decidable: not through this link). It may still show a decided outcome.
    if claims.expired(now) and row.status not in DECISIONS:
        raise LinkProblem("expired", "this link has expired", view)
    other = links.issue_token(
        domain.signer,
        task_id=row.id,
        approver=row.approver,
        action="reject" if claims.action == "approve" else "approve",
        expires_at=claims.expires_at,
    )
    return OpenedLink(
        token,
        claims.action,
        claims.expires_at,
        view,
        row.org_id,
        row.approver,
        other,
        standing(row, now),
    )


async def decide_by_link(domain: Domain, opened: OpenedLink, comment: str | None) -> dict[str, Any]:
    """The approver's decision through the link (the same rules as the API)."""
    approver = Principal(
        org_id=opened.org_id,
        email=opened.approver,
        kind=PrincipalKind.APPROVER_SECRET,
        task_id=opened.task["id"],
    )
    decision = Status.APPROVED if opened.action == "approve" else Status.REJECTED
    return await decide_task(domain, approver, opened.task["id"], decision, comment)
