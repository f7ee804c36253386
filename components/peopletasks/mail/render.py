"""Render the approval e-mails (HTML + plain text) from Jinja2 templates.

Templates live in the project's `templates/mail/` folder; a folder given as
`templates_dir=` or in `PEOPLETASKS_TEMPLATES_DIR` is searched first, so a
deployment can replace any one template (same relative name) and keep the rest.

Every message is `multipart/alternative` (text first, then HTML), carries a
`Message-ID` derived from the task, the kind of message and the recipient (a
retried send is recognisable as the same message), `X-PeopleTasks-Task-Id` and
`Auto-Submitted: auto-generated`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime as format_rfc2822
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any, Literal

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

import peopletasks
from peopletasks.settings import Branding
from peopletasks.settings import templates_dir as settings_templates_dir
from peopletasks.timeutil import parse_datetime

#: The project's own templates (a symlink to the repository's `templates/`).
DEFAULT_TEMPLATES_DIR = Path(peopletasks.__file__).parent / "templates"

#: approval / copy: the approval request and the requester's copy (also sent by the flow
#: process); the rest are the service's notifications (see `mail.notices`).
MessageKind = Literal[
    "approval", "copy", "reminder", "reassigned", "escalation", "escalated", "outcome"
]

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


# --- the template environment -------------------------------------------------------------


def make_environment(templates_dir: str | os.PathLike[str] | None = None) -> jinja2.Environment:
    """The Jinja2 environment: the override folder first (argument, else
    `PEOPLETASKS_TEMPLATES_DIR`, else none), then the project's templates.

    Autoescapes `.html` / `.xml`, fails on undefined names. Cached per folder.
    """
    if templates_dir is None:
        templates_dir = settings_templates_dir()
    override = str(Path(templates_dir).expanduser().resolve()) if templates_dir else ""
    return _environment(override)


@functools.lru_cache(maxsize=8)
def _environment(override: str) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if override:
        if not Path(override).is_dir():
            raise FileNotFoundError(f"templates folder {override!r} does not exist")
        loaders.append(jinja2.FileSystemLoader(override))
    loaders.append(jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES_DIR)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        # Templates are read once per process: checking their files on every message
        # cost ~0.5 ms a mail (8 stat calls), a tenth of rendering it.
        auto_reload=False,
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["markdown"] = render_markdown
    return env


def load_templates(templates_dir: str | os.PathLike[str] | None = None) -> int:
    """Compile every mail template now (a sender's first messages then pay nothing for
    it, and a broken override fails at once); how many."""
    env = make_environment(templates_dir)
    names = [
        name
        for name in env.list_templates(extensions=("html", "txt"))
        if name.startswith("mail/") and not name.startswith(("mail/inbox/", "mail/_"))
    ]
    for name in names:
        env.get_template(name)
    return len(names)


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark with raw HTML off: `<script>` in a description stays text.
    return MarkdownIt("commonmark", {"html": False})


def render_markdown(source: str | None) -> Markup:
    """Markdown to safe HTML (raw HTML is escaped, unsafe link schemes are dropped)."""
    if not source:
        return Markup("")
    return Markup(_markdown().render(source))  # noqa: S704 - markdown-it escapes (html off)


# --- dates ---------------------------------------------------------------------------------


def format_deadline(value: datetime) -> str:
    """`Tue 1 Dec 2026, 17:00 UTC` (English, whatever the process locale)."""
    v = value.astimezone(UTC)
    return f"{_WEEKDAYS[v.weekday()]} {v.day} {_MONTHS[v.month - 1]} {v.year}, {v:%H:%M} UTC"


def relative_time(value: datetime, now: datetime) -> str:
    """`in 3 days`, `in 5 hours`, `in 20 minutes`, `2 days ago`, `in less than a minute`."""
    seconds = (value - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "in less than a minute" if seconds >= 0 else "less than a minute ago"
    if span < 3600:
        amount, unit = round(span / 60), "minute"
    elif span < 36 * 3600:
        amount, unit = round(span / 3600), "hour"
    else:
        amount, unit = round(span / 86400), "day"
    phrase = f"{amount} {unit}{'' if amount == 1 else 's'}"
    return f"in {phrase}" if seconds >= 0 else f"{phrase} ago"


def _parse_when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_datetime(str(value))


# --- the messages --------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _task_context(task: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    missing = [k for k in ("id", "title") if not task.get(k)]
    if missing:
        raise ValueError(f"task lacks {', '.join(missing)}")
    deadline = _parse_when(task.get("decisionBy"))
    created = _parse_when(task.get("createdAt"))
    decided = _parse_when(task.get("decidedAt"))
    description = task.get("description") or ""
    return {
        "id": str(task["id"]),
        "title": _one_line(task["title"]),
        "description": str(description).strip(),
        "description_html": render_markdown(str(description)),
        "requester": str(task.get("requester") or ""),
        "approver": str(task.get("approver") or ""),
        "status": str(task.get("status") or "pending"),
        "deadline": format_deadline(deadline) if deadline else None,
        "deadline_relative": relative_time(deadline, now) if deadline else None,
        "created": format_deadline(created) if created else None,
        "decided_by": task.get("decidedBy"),
        "decided": format_deadline(decided) if decided else None,
        "comment": task.get("comment"),
        "decided_by_system": bool(task.get("decidedBySystem")),
    }


def _domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2].strip().strip("[]").lower()
    domain = re.sub(r"[^a-z0-9.-]", "", domain)
    return domain or "peopletasks.local"


def message_id_for(
    task_id: str, kind: MessageKind, recipient: str, sender: str, sequence: int = 0
) -> str:
    """`<task-{id}.{kind}[.{sequence}].{sha256(recipient)[:12]}@{sender's domain}>`: the
    same for a retried send of the same mail, different per recipient and per message
    of a kind that comes more than once (reminder 1, 2, ...; sequence 0 leaves it out)."""
    _, addr = parseaddr(recipient)
    digest = hashlib.sha256((addr or recipient).strip().lower().encode()).hexdigest()[:12]
    safe_id = _NOT_ID_CHARS.sub("-", task_id).strip("-") or "unknown"
    which = f".{sequence}" if sequence else ""
    return f"<task-{safe_id}.{kind}{which}.{digest}@{_domain_of(sender)}>"


def _build_message(
    *,
    kind: MessageKind,
    template: str,
    task: Mapping[str, Any],
    context: dict[str, Any],
    subject: str,
    sender: str,
    to: str,
    reply_to: str | None,
    templates_dir: str | os.PathLike[str] | None,
    now: datetime,
    sequence: int = 0,
) -> EmailMessage:
    env = make_environment(templates_dir)
    context = {**context, "subject": subject}
    text = env.get_template(f"mail/{template}.txt").render(context)
    html = env.get_template(f"mail/{template}.html").render(context)

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_rfc2822(now.astimezone(UTC).replace(microsecond=0))
    message["Message-ID"] = message_id_for(str(task["id"]), kind, to, sender, sequence)
    message["Auto-Submitted"] = "auto-generated"
    # Ask Exchange / Outlook not to answer with out-of-office and similar replies.
    message["X-Auto-Response-Suppress"] = "All"
    message["X-PeopleTasks-Task-Id"] = _one_line(str(task["id"]))
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def _check_address(field: str, value: str) -> str:
    value = value.strip()
    found = getaddresses([value])
    if "\n" in value or "\r" in value or len(found) != 1 or "@" not in found[0][1]:
        raise ValueError(f"{field} must be one e-mail address, not {value!r}")
    return value


def _check_links(approve_url: str, reject_url: str, page_url: str | None) -> None:
    for name, url in (("approve_url", approve_url), ("reject_url", reject_url)):
        if not url.lower().startswith(("https://", "http://")):
            raise ValueError(f"{name} must be an http(s) URL, not {url!r}")
    if page_url is not None and not page_url.lower().startswith(("https://", "http://")):
        raise ValueError(f"page_url must be an http(s) URL, not {page_url!r}")


def _render(
    task: Mapping[str, Any],
    *,
    kind: MessageKind,
    template: str,
    subject: str,
    preheader: Callable[[dict[str, Any]], str],
    extra: dict[str, Any],
    branding: Branding | None,
    sender: str,
    to: str,
    reply_to: str | None,
    templates_dir: str | os.PathLike[str] | None,
    now: datetime | None,
    sequence: int = 0,
) -> EmailMessage:
    """One mail of `kind` from `mail/{template}.txt` and `.html`; `subject` may hold
    `{title}`; `extra` adds to the templates' variables."""
    now = now or datetime.now(UTC)
    details = _task_context(task, now)
    context = {"task": details, "branding": branding or Branding.from_env(), **extra}
    context["preheader"] = preheader(details)
    return _build_message(
        kind=kind,
        template=template,
        task=task,
        context=context,
        subject=_one_line(subject.replace("{title}", details["title"])),
        sender=_check_address("sender", sender),
        to=_check_address("to", to),
        reply_to=_check_address("reply_to", reply_to) if reply_to else None,
        templates_dir=templates_dir,
        now=now,
        sequence=sequence,
    )


def _by_deadline(details: dict[str, Any]) -> str:
    return f" by {details['deadline']}" if details["deadline"] else ""


def render_approval_request(
    task: Mapping[str, Any],
    *,
    approve_url: str,
    reject_url: str,
    page_url: str | None = None,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    subject: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The approver's mail: task details and Approve / Reject buttons (the signed links).

    `task` has the People Task API's fields (`id, title, description, requester,
    approver, status, decisionBy, createdAt`); `description` is Markdown.
    `branding` None reads `Branding.from_env()`; `now` (for "in 3 days") defaults to now.
    """
    _check_links(approve_url, reject_url, page_url)
    return _render(
        task,
        kind="approval",
        template="approval_request",
        subject=subject or "Approval needed: {title}",
        preheader=lambda d: (
            f"{d['requester'] or 'Someone'} asks for your decision" + _by_deadline(d) + "."
        ),
        extra={"approve_url": approve_url, "reject_url": reject_url, "page_url": page_url},
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
    )


def render_reminder(
    task: Mapping[str, Any],
    *,
    number: int,
    approve_url: str,
    reject_url: str,
    page_url: str | None = None,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """Reminder `number` to the pending approver: "Reminder 2: ...", with fresh links."""
    _check_links(approve_url, reject_url, page_url)
    return _render(
        task,
        kind="reminder",
        template="reminder",
        subject=f"Reminder {number}: Approval needed: {{title}}",
        preheader=lambda d: (
            f"{d['requester'] or 'Someone'} is still waiting for your decision"
            + _by_deadline(d)
            + "."
        ),
        extra={
            "number": number,
            "approve_url": approve_url,
            "reject_url": reject_url,
            "page_url": page_url,
        },
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
        sequence=number,
    )


def render_reassigned(
    task: Mapping[str, Any],
    *,
    sequence: int,
    previous: str,
    by: str | None,
    comment: str | None,
    approve_url: str,
    reject_url: str,
    page_url: str | None = None,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The new approver's mail after a reassignment (`by` None: the escalation did it):
    who passed it on and why, and their own links."""
    _check_links(approve_url, reject_url, page_url)
    who = by or "The escalation"
    return _render(
        task,
        kind="reassigned",
        template="reassigned",
        subject="Approval needed (passed to you): {title}",
        preheader=lambda d: (
            f"{who} asked you to decide instead of {previous}" + _by_deadline(d) + "."
        ),
        extra={
            "previous": previous,
            "by": by,
            "comment": comment,
            "approve_url": approve_url,
            "reject_url": reject_url,
            "page_url": page_url,
        },
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
        sequence=sequence,
    )


#: What an escalation did, as its mails say it.
ESCALATION_ACTIONS = {
    "notify": "you are told so that you can follow it up",
    "reassign": "it was passed to {to}",
    "approve": "it was approved automatically",
    "reject": "it was rejected automatically",
}


def render_escalation(
    task: Mapping[str, Any],
    *,
    action: str,
    after: str | int | float,
    approver: str,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """To the escalation contact: `approver` did not decide within `after`, and what
    the escalation did (no decision links: the contact is not the approver)."""
    outcome = ESCALATION_ACTIONS[action].format(to=to)
    return _render(
        task,
        kind="escalation",
        template="escalation",
        subject="Escalated: {title}",
        preheader=lambda d: f"{approver} has not decided within {after}; {outcome}.",
        extra={"action": action, "after": after, "approver": approver, "outcome": outcome},
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
    )


def render_escalated(
    task: Mapping[str, Any],
    *,
    action: str,
    after: str | int | float,
    approver: str,
    contact: str | None,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """To the requester: their request was escalated (someone told, or passed on)."""
    outcome = f"we passed it to {contact}" if action == "reassign" else f"we told {contact}"
    return _render(
        task,
        kind="escalated",
        template="escalated",
        subject="Your request was escalated: {title}",
        preheader=lambda d: f"{approver} has not decided within {after}; {outcome}.",
        extra={"action": action, "after": after, "approver": approver, "outcome": outcome},
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
    )


_OUTCOME_SUBJECTS = {
    "approved": "Approved: {title}",
    "rejected": "Rejected: {title}",
    "due": "No decision by the deadline: {title}",
}


def render_outcome(
    task: Mapping[str, Any],
    *,
    sequence: int = 0,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """To the requester: the decision (who, when, the comment), or that the deadline
    passed without one."""
    status = str(task.get("status"))
    if status not in _OUTCOME_SUBJECTS:
        raise ValueError(f"a task {status!r} has no outcome yet")

    def preheader(d: dict[str, Any]) -> str:
        if status == "due":
            return "The deadline passed without a decision."
        who = "automatically (escalation)" if d["decided_by_system"] else f"by {d['decided_by']}"
        return f"{status.capitalize()} {who}."

    return _render(
        task,
        kind="outcome",
        template="outcome",
        subject=_OUTCOME_SUBJECTS[status],
        preheader=preheader,
        extra={},
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
        sequence=sequence,
    )


def render_requester_copy(
    task: Mapping[str, Any],
    *,
    branding: Branding | None = None,
    sender: str,
    to: str,
    reply_to: str | None = None,
    subject: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The requester's copy: the same details, no action links ("We asked X to decide ...")."""
    return _render(
        task,
        kind="copy",
        template="requester_copy",
        subject=subject or "Approval requested: {title}",
        preheader=lambda d: (
            f"We asked {d['approver'] or 'the approver'} to decide" + _by_deadline(d) + "."
        ),
        extra={},
        branding=branding,
        sender=sender,
        to=to,
        reply_to=reply_to,
        templates_dir=templates_dir,
        now=now,
    )
