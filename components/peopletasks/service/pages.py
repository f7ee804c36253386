"""The pages people reach from e-mail: confirm, decide, see the outcome, or ask
someone else to decide instead (a reassignment by the link's approver).

GET and HEAD only render (mail scanners that open every link change nothing);
only the POST of the page's own form decides, and it is refused when it comes
from another site. Tokens are never logged (see service/logging.py) and never
leave in a Referer header (`Referrer-Policy: no-referrer`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from peopletasks import links
from peopletasks.domain import Domain
from peopletasks.domain.forms import data_from_fields, form_fields
from peopletasks.domain.links import (
    LinkProblem,
    OpenedLink,
    decide_by_link,
    open_link,
    reassign_by_link,
)
from peopletasks.domain.rules import Standing
from peopletasks.domain.status import DECISIONS
from peopletasks.domain.values import normalize_email
from peopletasks.errors import Conflict, PeopleTaskError, ValidationFailed
from peopletasks.templating import environment

router = APIRouter(prefix="/people-task/act", include_in_schema=False)

MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
_PROBLEMS = {
    "invalid": (
        404,
        "This link is not valid",
        "It may have been mistyped or changed, or "
        "the task it was for no longer exists. Use the link from the e-mail as it is.",
    ),
    "expired": (
        410,
        "This link has expired",
        "Links stay valid until the task's deadline "
        "or for a limited time. Ask the requester to send the request again.",
    ),
    "deadline": (410, "The deadline has passed", "This task can no longer be decided."),
    "cross_site": (403, "Request refused", "The decision must be sent from this page."),
    "form": (
        400,
        "Request refused",
        "The form was incomplete or altered. Open the link from the e-mail again.",
    ),
    "too_large": (413, "Request refused", "The comment is too long."),
    "reassigned": (
        410,
        "This task was passed to someone else",
        "It now waits for another approver; this link no longer decides it.",
    ),
}


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    env = environment(request.app.state.settings.templates_dir or None)
    html = env.get_template(template).render(**context)
    body = b"" if request.method == "HEAD" else html.encode()
    response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(html.encode()))
    return response


def _problem(request: Request, kind: str, task: dict[str, Any] | None = None) -> HTMLResponse:
    status, title, message = _PROBLEMS[kind]
    return _page(request, "pages/problem.html", status, title=title, message=message, task=task)


def _domain(request: Request) -> Domain:
    domain: Domain = request.app.state.domain
    return domain


async def _open(request: Request, token: str) -> OpenedLink | HTMLResponse:
    try:
        return await open_link(_domain(request), token)
    except LinkProblem as problem:
        return _problem(request, problem.kind, problem.task)


@router.api_route("/{token}", methods=["GET", "HEAD"])
async def confirm(request: Request, token: str) -> Response:
    opened = await _open(request, token)
    if isinstance(opened, HTMLResponse):
        return opened
    return _closed(request, opened) or _confirm_page(request, opened)


def _confirm_page(
    request: Request, opened: OpenedLink, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    """The task, its form, a comment box and a button per option (the link's first)."""
    chosen = [c for c in opened.choices if c[0]["key"] == opened.action]
    others = [c for c in opened.choices if c[0]["key"] != opened.action]
    return _page(
        request,
        "pages/confirm.html",
        status,
        task=opened.task,
        action=opened.action,
        choices=chosen + others,
        fields=form_fields(opened.task["form"]),
        error=error,
        reassign_url=f"/people-task/act/{opened.token}/reassign",
        form_token=links.form_token(_domain(request).signer, opened.task["id"]),
    )


def cross_site(request: Request) -> bool:
    """A form post from another site (the pages' and the dashboard's guard): by
    `Sec-Fetch-Site` where the browser sends it, else by a foreign `Origin`."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if not origin or origin == "null":  # `no-referrer` pages post `Origin: null`
        return False
    settings = request.app.state.settings
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    for url in (settings.public_url, settings.dashboard_url):
        parts = urlsplit(url)
        own.add(f"{parts.scheme}://{parts.netloc}")
    return origin not in own


async def _posted(request: Request, token: str) -> tuple[OpenedLink, dict[str, str]] | Response:
    """The page's own form, posted from this site for an open link (else a problem page)."""
    if cross_site(request):
        return _problem(request, "cross_site")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _problem(request, "too_large")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    opened = await _open(request, token)
    if isinstance(opened, HTMLResponse):
        return opened
    signer = _domain(request).signer
    if form.get("form_token") != links.form_token(signer, opened.task["id"]):
        return _problem(request, "form")
    if any("\x00" in value for value in form.values()):
        return _problem(request, "form")
    return opened, form


@router.post("/{token}")
async def decide(request: Request, token: str) -> Response:
    posted = await _posted(request, token)
    if isinstance(posted, Response):
        return posted
    opened, form = posted
    if form.get("decision", opened.action) != opened.action:
        return _problem(request, "form")
    comment = form.get("comment", "").strip()[:10_000] or None
    late = False
    try:
        data = data_from_fields(opened.task["form"], form)
        await decide_by_link(_domain(request), opened, comment, data)
    except ValidationFailed as invalid:
        return _confirm_page(request, opened, error=invalid.message, status=422)
    except Conflict as conflict:
        if conflict.code == "deadline_passed":
            return _problem(request, "deadline", conflict.task)
        late = True
    except PeopleTaskError:
        return _problem(request, "form")
    suffix = "?late=1" if late else ""
    return RedirectResponse(
        f"/people-task/act/{token}/done{suffix}", status_code=303, headers=SECURITY_HEADERS
    )


@router.api_route("/{token}/done", methods=["GET", "HEAD"])
async def done(request: Request, token: str) -> Response:
    opened = await _open(request, token)
    if isinstance(opened, HTMLResponse):
        return opened
    if _response_of(opened) is None:  # nothing is recorded yet: back to the form
        return RedirectResponse(
            f"/people-task/act/{token}", status_code=303, headers=SECURITY_HEADERS
        )
    late = request.query_params.get("late") == "1"
    mine = _response_of(opened)
    return _page(request, "pages/done.html", task=opened.task, fresh=not late, late=late, mine=mine)


def _response_of(opened: OpenedLink) -> dict[str, Any] | None:
    """The link's approver's recorded response (on a task with one approver, the task's
    decision), or None."""
    if opened.task["status"] in DECISIONS:
        return dict(opened.task)
    mine = next(a for a in opened.task["approvers"] if a["email"] == opened.approver)
    return mine if mine["status"] in DECISIONS else None


def _closed(request: Request, opened: OpenedLink) -> Response | None:
    """The page for a link whose task can no longer take a decision, or whose approver
    has responded (None: it can take theirs)."""
    if opened.standing is Standing.OPEN:
        response = _response_of(opened)
        if response is None:
            return None
        return _page(
            request, "pages/done.html", task=opened.task, fresh=False, late=False, mine=response
        )
    if opened.task["status"] in DECISIONS:
        return _page(request, "pages/done.html", task=opened.task, fresh=False, late=False)
    return _problem(request, "deadline", opened.task)


def _reassign_form(
    request: Request, opened: OpenedLink, status: int = 200, **values: str
) -> HTMLResponse:
    return _page(
        request,
        "pages/reassign.html",
        status,
        task=opened.task,
        action_url=f"/people-task/act/{opened.token}/reassign",
        back_url=f"/people-task/act/{opened.token}",
        form_token=links.form_token(_domain(request).signer, opened.task["id"]),
        to=values.get("to", ""),
        comment=values.get("comment", ""),
        error=values.get("error"),
    )


@router.api_route("/{token}/reassign", methods=["GET", "HEAD"])
async def ask_someone_else(request: Request, token: str) -> Response:
    """The form that passes the task on: who, and why. Changes nothing."""
    opened = await _open(request, token)
    if isinstance(opened, HTMLResponse):
        return opened
    return _closed(request, opened) or _reassign_form(request, opened)


@router.post("/{token}/reassign")
async def reassign(request: Request, token: str) -> Response:
    posted = await _posted(request, token)
    if isinstance(posted, Response):
        return posted
    opened, form = posted
    given = form.get("to", "").strip()[:320]
    comment = form.get("comment", "").strip()[:10_000]
    try:
        to = normalize_email(given)
    except ValueError as exc:
        error = f"The address {exc}."
        return _reassign_form(request, opened, 422, to=given, comment=comment, error=error)
    try:
        await reassign_by_link(_domain(request), opened, to, comment or None)
    except ValidationFailed as invalid:
        said = invalid.details[0]["message"] if invalid.details else invalid.message
        error = said[0].upper() + said[1:] + "."
        return _reassign_form(request, opened, 422, to=given, comment=comment, error=error)
    except Conflict as conflict:
        if conflict.code == "deadline_passed":
            return _problem(request, "deadline", conflict.task)
        return _page(request, "pages/done.html", task=conflict.task, fresh=False, late=True)
    except PeopleTaskError:
        return _problem(request, "form")
    return RedirectResponse(
        f"/people-task/act/{token}/passed", status_code=303, headers=SECURITY_HEADERS
    )


@router.api_route("/{token}/passed", methods=["GET", "HEAD"])
async def passed(request: Request, token: str) -> Response:
    """After "Ask someone else": whom the task went to (the link no longer decides)."""
    try:
        opened = await open_link(_domain(request), token)
    except LinkProblem as problem:
        if problem.kind != "reassigned":
            return _problem(request, problem.kind, problem.task)
        return _page(
            request, "pages/passed.html", task=problem.task, mailed=_domain(request).mail_enabled
        )
    return RedirectResponse(f"/people-task/act/{opened.token}", headers=SECURITY_HEADERS)
