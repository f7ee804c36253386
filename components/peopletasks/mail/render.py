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
from collections.abc import Mapping
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

MessageKind = Literal["approval", "copy"]

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
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["markdown"] = render_markdown
    return env


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
    }


def _domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2].strip().strip("[]").lower()
    domain = re.sub(r"[^a-z0-9.-]", "", domain)
    return domain or "peopletasks.local"


def message_id_for(task_id: str, kind: MessageKind, recipient: str, sender: str) -> str:
    """`<task-{id}.{kind}.{sha256(recipient)[:12]}@{sender's domain}>`: the same for a
    retried send of the same mail, different per recipient."""
    _, addr = parseaddr(recipient)
    digest = hashlib.sha256((addr or recipient).strip().lower().encode()).hexdigest()[:12]
    safe_id = _NOT_ID_CHARS.sub("-", task_id).strip("-") or "unknown"
    return f"<task-{safe_id}.{kind}.{digest}@{_domain_of(sender)}>"


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
    message["Message-ID"] = message_id_for(str(task["id"]), kind, to, sender)
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
    for name, url in (("approve_url", approve_url), ("reject_url", reject_url)):
        if not url.lower().startswith(("https://", "http://")):
            raise ValueError(f"{name} must be an http(s) URL, not {url!r}")
    if page_url is not None and not page_url.lower().startswith(("https://", "http://")):
        raise ValueError(f"page_url must be an http(s) URL, not {page_url!r}")
    now = now or datetime.now(UTC)
    brand = branding or Branding.from_env()
    details = _task_context(task, now)
    title = details["title"]
    context = {
        "task": details,
        "branding": brand,
        "approve_url": approve_url,
        "reject_url": reject_url,
        "page_url": page_url,
        "preheader": (
            f"{details['requester'] or 'Someone'} asks for your decision"
            + (f" by {details['deadline']}" if details["deadline"] else "")
            + "."
        ),
    }
    return _build_message(
        kind="approval",
        template="approval_request",
        task=task,
        context=context,
        subject=_one_line(subject) if subject else f"Approval needed: {title}",
        sender=_check_address("sender", sender),
        to=_check_address("to", to),
        reply_to=_check_address("reply_to", reply_to) if reply_to else None,
        templates_dir=templates_dir,
        now=now,
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
    now = now or datetime.now(UTC)
    brand = branding or Branding.from_env()
    details = _task_context(task, now)
    title = details["title"]
    context = {
        "task": details,
        "branding": brand,
        "preheader": (
            f"We asked {details['approver'] or 'the approver'} to decide"
            + (f" by {details['deadline']}" if details["deadline"] else "")
            + "."
        ),
    }
    return _build_message(
        kind="copy",
        template="requester_copy",
        task=task,
        context=context,
        subject=_one_line(subject) if subject else f"Approval requested: {title}",
        sender=_check_address("sender", sender),
        to=_check_address("to", to),
        reply_to=_check_address("reply_to", reply_to) if reply_to else None,
        templates_dir=templates_dir,
        now=now,
    )
