"""Deciding from an e-mail: issue a task's action links, open one, decide through it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from peopletasks import links
from peopletasks.domain.approvers import emails_of
from peopletasks.domain.context import Domain
from peopletasks.domain.decisions import respond_to_task
from peopletasks.domain.delegation import reassign_task
from peopletasks.domain.options import options_of
from peopletasks.domain.principals import Principal, PrincipalKind
from peopletasks.domain.rules import Standing, standing
from peopletasks.domain.status import DECISIONS
from peopletasks.domain.views import task_view
from peopletasks.errors import Forbidden, NotFound
from peopletasks.errors import LinkProblem as LinkProblem
from peopletasks.store import tasks as stored
from peopletasks.timeutil import format_datetime, utcnow


@dataclass(frozen=True)
class OpenedLink:
    token: str
    #: The key of the option the link chooses (`approve` / `reject` unless the task has
    #: its own options), and that option.
    action: str
    option: dict[str, str]
    #: Whose link it is (one of the task's approvers).
    approver: str
    expires_at: datetime
    task: dict[str, Any]
    org_id: int
    #: Every option of the task with its link (this approver's), so the page can offer
    #: each as a button.
    choices: list[tuple[dict[str, str], str]]
    #: whether the task can take a decision now
    standing: Standing


def link_expiry(domain: Domain, decision_by: datetime | None, now: datetime) -> datetime:
    latest = now + timedelta(seconds=domain.link_max_age_seconds)
    return min(decision_by, latest) if decision_by is not None else latest


def _tokens(domain: Domain, row: Row[Any], approver: str, expires: datetime) -> list[str]:
    return [
        links.issue_token(
            domain.signer, task_id=row.id, approver=approver, choice=i, expires_at=expires
        )
        for i in range(len(options_of(row)))
    ]


def links_for(domain: Domain, row: Row[Any], approver: str | None = None) -> dict[str, Any]:
    """Fresh links for one of a task's approvers (the first unless named): one per
    option, by its key (`approve`, `reject` unless the task has its own)."""
    expires = link_expiry(domain, row.decision_by, utcnow())
    tokens = _tokens(domain, row, approver or row.approver, expires)
    out: dict[str, Any] = {
        option["key"]: f"{domain.public_url}/people-task/act/{token}"
        for option, token in zip(options_of(row), tokens, strict=True)
    }
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
    options = options_of(row)
    try:
        approver = links.signed_for(domain.signer, claims, emails_of(row))
    except links.LinkInvalid as exc:
        passed_to = _passed_to(domain, claims, row)
        if passed_to is not None:
            raise LinkProblem(
                "reassigned", f"this task was passed to {passed_to}", task_view(row)
            ) from None
        raise LinkProblem("invalid", str(exc)) from None
    if claims.choice >= len(options):
        raise LinkProblem("invalid", "this link does not belong to any response of the task")
    view = task_view(row)
    now = utcnow()
    # An expired link never decides again (a task that allows late decisions turns due
    # and stays decidable: not through this link). It may still show a decided outcome.
    if claims.expired(now) and row.status not in DECISIONS:
        raise LinkProblem("expired", "this link has expired", view)
    tokens = _tokens(domain, row, approver, claims.expires_at)
    return OpenedLink(
        token=token,
        action=options[claims.choice]["key"],
        option=options[claims.choice],
        approver=approver,
        expires_at=claims.expires_at,
        task=view,
        org_id=row.org_id,
        choices=[
            (option, f"/people-task/act/{token}")
            for option, token in zip(options, tokens, strict=True)
        ],
        standing=standing(row, now),
    )


def _passed_to(domain: Domain, claims: links.LinkClaims, row: Row[Any]) -> str | None:
    """Whom the task was passed to, if the link was an earlier approver's (None: it was
    not)."""
    for entry in row.reassignments or ():
        try:
            links.signed_for(domain.signer, claims, [entry["from"]])
        except links.LinkInvalid:
            continue
        return str(entry["to"])
    return None


def _approver_of(opened: OpenedLink) -> Principal:
    """Who holds a link: the approver it was signed for, as their secret speaks for them."""
    return Principal(
        org_id=opened.org_id,
        email=opened.approver,
        kind=PrincipalKind.APPROVER_SECRET,
        task_id=opened.task["id"],
    )


async def decide_by_link(
    domain: Domain, opened: OpenedLink, comment: str | None, data: Any = None
) -> dict[str, Any]:
    """The approver's response through their link (the same rules as the API)."""
    principal = _approver_of(opened)
    return await respond_to_task(domain, principal, opened.task["id"], opened.action, comment, data)


async def reassign_by_link(
    domain: Domain, opened: OpenedLink, to: str, comment: str | None
) -> dict[str, Any]:
    """The approver passes their part on ("Ask someone else"), as the API's reassign."""
    return await reassign_task(domain, _approver_of(opened), opened.task["id"], to, comment)
