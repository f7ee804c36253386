"""Deciding from an e-mail: issue a task's action links, open one, decide through it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from peopletasks import links
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import decide_task
from peopletasks.domain.delegation import reassign_task
from peopletasks.domain.principals import Principal, PrincipalKind
from peopletasks.domain.rules import Standing, standing
from peopletasks.domain.status import Status
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
    if row.created_by != principal.email:
        raise Forbidden("only the task's creator may fetch its action links")
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
        if _passed_on(domain, claims, row):
            raise LinkProblem(
                "reassigned", f"this task was passed to {row.approver}", task_view(row)
            ) from None
        raise LinkProblem("invalid", str(exc)) from None
    view = task_view(row)
    now = utcnow()
    if claims.expired(now) and row.status == Status.PENDING.value:
        raise LinkProblem("expired", "this link has expired", view)
    other = links.issue_token(
        domain.signer,
        task_id=row.id,
        approver=row.approver,
        action="reject" if claims.action == "approve" else "approve",
        expires_at=claims.expires_at,
    )
    return OpenedLink(
        token, claims.action, claims.expires_at, view, row.org_id, other, standing(row, now)
    )


def _passed_on(domain: Domain, claims: links.LinkClaims, row: Row[Any]) -> bool:
    """Whether the link was an earlier approver's (the task was reassigned since)."""
    for entry in row.reassignments or ():
        try:
            links.verify(domain.signer, claims, entry["from"])
        except links.LinkInvalid:
            continue
        return True
    return False


def _approver_of(opened: OpenedLink) -> Principal:
    """Who holds a link: its task's approver, as their secret speaks for them."""
    return Principal(
        org_id=opened.org_id, email=opened.task["approver"], kind=PrincipalKind.APPROVER_SECRET
    )


async def decide_by_link(domain: Domain, opened: OpenedLink, comment: str | None) -> dict[str, Any]:
    """The approver's decision through the link (the same rules as the API)."""
    decision = Status.APPROVED if opened.action == "approve" else Status.REJECTED
    return await decide_task(domain, _approver_of(opened), opened.task["id"], decision, comment)


async def reassign_by_link(
    domain: Domain, opened: OpenedLink, to: str, comment: str | None
) -> dict[str, Any]:
    """The approver passes the task on ("Ask someone else"), as the API's reassign."""
    return await reassign_task(domain, _approver_of(opened), opened.task["id"], to, comment)
