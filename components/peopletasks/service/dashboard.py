"""The people's dashboard at `/people-task/dashboard`: a person's tasks, one task in
full, and the decision form (server-rendered, no JavaScript needed).

- Opened with a credential in the link (`?secret=…`: a dashboard token, or the task
  secret of Appmixer's mailed links `?taskId=…&action=…&secret=…`), it keeps the
  credential in a cookie (HttpOnly, SameSite=Strict, scoped to the dashboard's path)
  and answers a page that moves on, by `<meta http-equiv="refresh">` and a link, to
  the same address without the secret. That second request is the page's own, so a
  SameSite=Strict cookie goes with it even when the link was clicked on another site
  (a webmail); a redirect would not carry it there. The address bar, history and
  screen then show no secret.
- GET and HEAD never change anything (mail scanners open these links too): an
  `action` in the address only preselects the decision.
- The decision is a POST of the page's form, guarded as the confirmation pages'
  (`pages.cross_site`; a form token, here bound to the credential and the task), and
  made through the one decision path (`domain.decisions`).
- Every answer carries the pages' security headers (`Referrer-Policy: no-referrer`:
  a secret in the address never leaves in a Referer). Links, the form and redirects
  are relative, so the dashboard works behind a gateway that serves it under another
  path (`PEOPLETASKS_DASHBOARD_URL` says which: the cookie is scoped to its path).
- Unknown query parameters are ignored (mail click-trackers add their own); a known
  one with a wrong value is a 400 page naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from peopletasks.domain import Domain, Status
from peopletasks.domain import dashboard as board
from peopletasks.domain.decisions import respond_to_task
from peopletasks.domain.forms import data_from_fields
from peopletasks.domain.principals import Principal, authenticate_secret
from peopletasks.domain.rules import Standing, standing
from peopletasks.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PeopleTaskError,
    Unauthorized,
    ValidationFailed,
)
from peopletasks.service.pages import MAX_FORM_BYTES, SECURITY_HEADERS, cross_site
from peopletasks.settings import DASHBOARD_PATH, Branding
from peopletasks.templating import environment, parse_iso, readable_datetime, relative_time
from peopletasks.timeutil import utcnow

router = APIRouter(prefix=DASHBOARD_PATH, include_in_schema=False)

COOKIE = "pt_dashboard"
PAGE_SIZES = range(1, 101)
DEFAULT_PAGE_SIZE = 50
_MAX_VALUE = 200
_ACTIONS = {"approve": Status.APPROVED, "reject": Status.REJECTED}
_OUTCOMES = ("recorded", "late", "deadline")
#: The query parameters the dashboard reads (others are ignored).
_KNOWN = ("secret", "taskId", "action", "role", "status", "pattern", "sort", "page", "limit")

_PROBLEMS = {
    "link": (
        403,
        "This link is not valid or has expired",
        "Open the latest link from your e-mail as it is. Links to your tasks are "
        "personal and stop working after a while, or when the task is given to "
        "someone else.",
    ),
    "signed_out": (
        403,
        "Open your tasks from your e-mail",
        "This page shows your tasks once opened with the link from your e-mail. "
        "Your browser must accept cookies from this site to keep it open.",
    ),
    "expired": (
        403,
        "Your link has expired",
        "Open the latest link from your e-mail to see your tasks again.",
    ),
    "not_found": (
        404,
        "No such task",
        "It does not exist, or the link you opened does not show it.",
    ),
    "forbidden": (403, "Not yours to decide", "Only the task's approver may decide it."),
    "cross_site": (403, "Request refused", "The decision must be sent from this page."),
    "form": (
        400,
        "Request refused",
        "The form was incomplete or altered. Open the task again and send it from there.",
    ),
    "too_large": (413, "Request refused", "The comment is too long."),
    "signed_out_now": (
        200,
        "You are signed out",
        "This browser no longer shows your tasks. Open a link from your e-mail to see them again.",
    ),
}


#: What the pages call things.
LABELS: dict[str, dict[str, str]] = {
    "roles": {"approver": "You approve", "requester": "You requested"},
    "statuses": {
        "pending": "Pending",
        "approved": "Approved",
        "rejected": "Rejected",
        "due": "Due",
        "all": "All",
    },
    "sorts": {
        "deadline": "Deadline, soonest first",
        "-deadline": "Deadline, latest first",
        "newest": "Newest first",
    },
}
_STATE_LABELS = {**LABELS["statuses"], "overdue": "Overdue"}


@dataclass(frozen=True)
class Shown:
    """Where a task stands, as the pages say it."""

    #: pending, overdue (pending past its deadline, no longer decidable), approved,
    #: rejected or due
    state: str
    label: str
    #: approved or rejected after its deadline (a task that allows late decisions)
    decided_late: bool
    #: the sentence that follows the label: who decided and when, or the deadline
    sentence: Markup


def _time(value: str, when: datetime) -> str:
    return f'<time datetime="{escape(value)}">{readable_datetime(when)}</time>'


def shown(task: Mapping[str, Any]) -> Shown:
    """Where a task (as the API shows it) stands now, by the rules of `rules.standing`,
    and how the pages say it. A list of 100 tasks says it 100 times: here, in plain
    string building (a template macro per task cost a third of the page, and
    `Markup.format` another fifth)."""
    now = utcnow()
    deadline = parse_iso(task["decisionBy"])
    state = task["status"]
    if state == Status.PENDING.value:
        row = SimpleNamespace(
            status=state, decision_by=deadline, allow_late_decision=task["allowLateDecision"]
        )
        if standing(row, now) is Standing.OVERDUE:
            state = "overdue"
    decided = parse_iso(task["decidedAt"])
    late = decided is not None and deadline is not None and decided > deadline
    if decided is not None:
        sentence = f"by {escape(task['decidedBy'])} on {_time(task['decidedAt'], decided)}"
        if late and deadline is not None:
            sentence += f", after the deadline ({readable_datetime(deadline)})"
        sentence += "."
    elif deadline is None:
        sentence = "No deadline."
    elif state == "due":
        sentence = (
            f"The deadline passed on {_time(task['decisionBy'], deadline)} without a decision."
        )
        if task["allowLateDecision"]:
            sentence += " A late decision is still possible."
    elif state == "overdue":
        when = _time(task["decisionBy"], deadline)
        sentence = f"The deadline passed on {when}; it can no longer be decided."
    else:
        when = _time(task["decisionBy"], deadline)
        sentence = f"Decide by {when} ({relative_time(deadline, now)})."
    return Shown(state, _STATE_LABELS[state], late, Markup(sentence))  # noqa: S704 - escaped above


class _BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


# -- rendering ---------------------------------------------------------------------


def _domain(request: Request) -> Domain:
    domain: Domain = request.app.state.domain
    return domain


def _branding(request: Request) -> Branding:
    branding: Branding = request.app.state.branding
    return branding


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    env = environment(request.app.state.settings.templates_dir or None)
    html = (
        env.get_template(template)
        .render(branding=_branding(request), labels=LABELS, shown=shown, **context)
        .encode()
    )
    response = HTMLResponse(
        b"" if request.method == "HEAD" else html, status_code=status, headers=SECURITY_HEADERS
    )
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(html))
    return response


def _problem(request: Request, kind: str, **context: Any) -> HTMLResponse:
    status, title, message = _PROBLEMS[kind]
    return _page(request, "dashboard/problem.html", status, title=title, message=message, **context)


def _cookie_path(request: Request) -> str:
    return urlsplit(_domain(request).dashboard_url).path or DASHBOARD_PATH


def _keep(request: Request, response: Response, credential: str) -> None:
    response.set_cookie(
        COOKIE,
        credential,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=_domain(request).dashboard_url.lower().startswith("https://"),
    )


def _forget(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=_cookie_path(request), httponly=True, samesite="strict")


def query(**params: Any) -> str:
    """A relative reference to the dashboard with these parameters (None left out)."""
    return "?" + urlencode({k: v for k, v in params.items() if v is not None and v != ""})


# -- reading the address -------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What the address asks the dashboard to show."""

    task_id: str | None
    action: str | None
    role: str | None
    status: str
    pattern: str | None
    sort: str
    page: int
    limit: int

    def list_query(self, **changes: Any) -> str:
        values: dict[str, Any] = {
            "role": self.role,
            "status": self.status,
            "pattern": self.pattern,
            "sort": None if self.sort == "deadline" else self.sort,
            "page": None if self.page == 1 else self.page,
            "limit": None if self.limit == DEFAULT_PAGE_SIZE else self.limit,
        }
        values.update(changes)
        if values.get("page") == 1:
            values["page"] = None
        return query(**values)


def _value(params: Any, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if len(value) > _MAX_VALUE:
        raise _BadParameter(name, f"at most {_MAX_VALUE} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _BadParameter(name, "must not hold control characters")
    return str(value)


def _whole(params: Any, name: str, allowed: range, default: int) -> int:
    raw = _value(params, name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) not in allowed:
        raise _BadParameter(name, f"a whole number from {allowed.start} to {allowed.stop - 1}")
    return int(raw)


def _choice(params: Any, name: str, choices: tuple[str, ...] | list[str]) -> str | None:
    raw = _value(params, name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise _BadParameter(name, f"one of {', '.join(choices)}")
    return raw


def read_view(params: Any) -> View:
    """The dashboard's parameters, checked (_BadParameter names a wrong one)."""
    return View(
        task_id=_value(params, "taskId") or None,
        action=_choice(params, "action", tuple(_ACTIONS)),
        role=_choice(params, "role", ("approver", "requester")),
        status=_choice(params, "status", board.STATUS_TABS) or Status.PENDING.value,
        pattern=(_value(params, "pattern") or "").strip() or None,
        sort=_choice(params, "sort", tuple(board.SORTS)) or "deadline",
        page=_whole(params, "page", range(1, 1_000_001), 1),
        limit=_whole(params, "limit", PAGE_SIZES, DEFAULT_PAGE_SIZE),
    )


async def _holder(request: Request) -> tuple[str, Principal] | HTMLResponse:
    """The credential kept in the cookie and whom it proves, or the page saying why
    there is none."""
    credential = request.cookies.get(COOKIE)
    if not credential:
        return _problem(request, "signed_out")
    try:
        return credential, await authenticate_secret(_domain(request), credential)
    except Unauthorized:
        response = _problem(request, "expired")
        _forget(request, response)
        return response


# -- the pages -----------------------------------------------------------------------


@router.api_route("", methods=["GET", "HEAD"])
async def dashboard(request: Request) -> Response:
    params = request.query_params
    try:
        view = read_view(params)
        secret = _value(params, "secret")
    except _BadParameter as bad:
        return _problem_with(request, bad)
    if secret:
        return await _land(request, secret.strip(), params)
    held = await _holder(request)
    if isinstance(held, Response):
        return held
    credential, principal = held
    if view.task_id is not None:
        outcome = request.query_params.get("outcome")
        return await _task_page(
            request,
            credential,
            principal,
            view,
            outcome=outcome if outcome in _OUTCOMES else None,
        )
    return await _list_page(request, credential, principal, view)


def _problem_with(request: Request, bad: _BadParameter) -> HTMLResponse:
    return _page(
        request,
        "dashboard/problem.html",
        400,
        title="This address is not right",
        message=f"{bad} Open the link from your e-mail as it is.",
    )


async def _land(request: Request, secret: str, params: Any) -> Response:
    """A link with a credential: keep it in the cookie, move on without it."""
    try:
        await authenticate_secret(_domain(request), secret)
    except Unauthorized:
        response = _problem(request, "link")
        _forget(request, response)
        return response
    onward = query(**{name: params.get(name) for name in _KNOWN if name != "secret"})
    if onward == "?":  # the dashboard itself, by a relative reference to its own path
        path = _cookie_path(request)
        onward = "./" if path.endswith("/") else path.rsplit("/", 1)[-1]
    response = _page(request, "dashboard/landing.html", onward=onward)
    _keep(request, response, secret)
    return response


async def _list_page(
    request: Request, credential: str, principal: Principal, view: View
) -> Response:
    roles = board.roles_of(principal)
    role = view.role if view.role in roles else roles[0]
    view = replace(view, role=role)
    offset = (view.page - 1) * view.limit
    listing = await board.list_tasks(
        _domain(request),
        principal,
        role=role,
        status=view.status,
        pattern=view.pattern,
        sort=view.sort,
        limit=view.limit,
        offset=offset,
    )
    pages = max(1, -(-listing.total // view.limit))
    return _page(
        request,
        "dashboard/list.html",
        view=view,
        who=principal.email,
        roles=roles,
        listing=listing,
        offset=offset,
        pages=pages,
        statuses=board.STATUS_TABS,
        sorts=board.SORTS,
        sign_out_token=board.form_token(_domain(request), credential, ""),
    )


def _chosen(options: list[dict[str, str]], action: str | None) -> str | None:
    """The response a mailed link's `action` (approve / reject) picks: the first option of
    that outcome."""
    outcome = _ACTIONS.get(action or "")
    if outcome is None:
        return None
    return next((o["key"] for o in options if o["outcome"] == outcome.value), None)


async def _task_page(
    request: Request,
    credential: str,
    principal: Principal,
    view: View,
    *,
    outcome: str | None = None,
    error: str | None = None,
    comment: str = "",
    status: int = 200,
) -> Response:
    assert view.task_id is not None
    try:
        full = await board.task_in_full(_domain(request), principal, view.task_id)
    except NotFound:
        return _problem(request, "not_found", back=replace(view, task_id=None))
    return _page(
        request,
        "dashboard/task.html",
        status,
        view=view,
        who=principal.email,
        full=full,
        task=full.task,
        state=shown(full.task),
        action=view.action,
        chosen=_chosen(full.options, view.action),
        outcome=outcome,
        error=error,
        comment=comment,
        form_token=board.form_token(_domain(request), credential, full.task["id"]),
        sign_out_token=board.form_token(_domain(request), credential, ""),
    )


@router.post("")
async def decide(request: Request) -> Response:
    """The decision form (or sign-out): from this site only, with the form's token."""
    if cross_site(request):
        return _problem(request, "cross_site")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _problem(request, "too_large")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    held = await _holder(request)
    if isinstance(held, Response):
        return held
    credential, principal = held
    domain = _domain(request)
    task_id = form.get("taskId", "")
    if not board.form_token_matches(domain, credential, task_id, form.get("form_token", "")):
        return _problem(request, "form")
    if form.get("intent") == "sign-out":
        response = _problem(request, "signed_out_now")
        _forget(request, response)
        return response
    comment = form.get("comment", "")
    if not task_id or len(task_id) > 64 or "\x00" in task_id + comment:
        return _problem(request, "form")
    view = read_view({"taskId": task_id})
    try:
        full = await board.task_in_full(domain, principal, task_id)
    except NotFound:
        return _problem(request, "not_found", back=replace(view, task_id=None))
    option = form.get("decision", "")
    if option not in {o["key"] for o in full.options}:
        labels = " or ".join(o["label"] for o in full.options)
        error = f"Choose {labels}, then confirm."
        return await _task_page(
            request, credential, principal, view, error=error, comment=comment, status=422
        )
    try:
        data = data_from_fields(full.task["form"], form)
        await respond_to_task(
            domain, principal, task_id, option, comment.strip()[:10_000] or None, data
        )
        outcome = "recorded"
    except ValidationFailed as invalid:
        return await _task_page(
            request, credential, principal, view, error=invalid.message, comment=comment, status=422
        )
    except Conflict as conflict:
        outcome = "deadline" if conflict.code == "deadline_passed" else "late"
    except NotFound:
        return _problem(request, "not_found", back=replace(view, task_id=None))
    except Forbidden:
        return _problem(request, "forbidden")
    except PeopleTaskError:
        return _problem(request, "form")
    return RedirectResponse(
        query(taskId=task_id, outcome=outcome), status_code=303, headers=SECURITY_HEADERS
    )
