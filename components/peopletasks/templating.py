"""One Jinja2 environment for pages and mail: autoescaped, overridable, with filters
for Markdown (rendered safely: raw HTML is escaped, unsafe links dropped) and dates."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

DEFAULT_TEMPLATES = Path(__file__).parent / "templates"

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


def render_markdown(text: str | None) -> Markup:
    """Markdown to HTML with raw HTML escaped (markdown-it refuses javascript: links)."""
    return Markup(_markdown.render(text or ""))  # noqa: S704 - html is disabled above


def parse_iso(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def readable_datetime(value: str | datetime | None, empty: str = "no deadline") -> str:
    """`Tue 1 Dec 2026, 17:00 UTC`."""
    when = parse_iso(value)
    if when is None:
        return empty
    when = when.astimezone(UTC)
    return f"{when:%a} {when.day} {when:%b %Y, %H:%M} UTC"


def relative_time(value: str | datetime | None, now: datetime | None = None) -> str:
    """`in 3 days`, `2 hours ago`."""
    when = parse_iso(value)
    if when is None:
        return ""
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    future = seconds >= 0
    seconds = abs(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in less than a minute" if future else "just now"


@functools.lru_cache(maxsize=8)
def environment(override: str | None = None) -> Environment:
    """Templates from `override` first (if given), then ours."""
    loaders = [FileSystemLoader(override)] if override else []
    loaders.append(FileSystemLoader(str(DEFAULT_TEMPLATES)))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["markdown"] = render_markdown
    env.filters["readable_datetime"] = readable_datetime
    env.filters["relative_time"] = relative_time
    return env
