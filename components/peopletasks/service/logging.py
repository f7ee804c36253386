"""Logs that never carry secrets or link tokens, however the client encoded them.

A request target is read as the router and the query parser read it: the path
percent-decoded once (so `/people-task/%61ct/<token>` is the link page it routes
to), the query split on `&` and each name and value decoded (`%73ecret=`,
`SECRET=`). What is redacted:

- in the path, every segment after an `act` segment (however many slashes or
  dots come between: `/people-task//act/<token>` is no page, but its token is
  still a token), but for a last `done`;
- in the query, the value of every parameter whose decoded name or value
  mentions `secret` or `token` (`?secret%3D<value>` is one name holding both).

A redacted target is written decoded and then quoted again, so control
characters (`%00`) stay escaped; one with nothing to redact is written as sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

_SENSITIVE = re.compile(r"secret|token", re.IGNORECASE)
_MASK = "***"
_SAFE_PATH = "/:@!$&'()*+,;=-._~"


def _redacted_path(path: str) -> str | None:
    """The path with link tokens masked, or None when it holds none."""
    decoded = unquote(path)
    segments = decoded.split("/")
    after_act = False
    changed = False
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if after_act and segment not in ("", ".") and not (index == last and segment == "done"):
            segments[index] = _MASK
            changed = True
        elif segment.lower() == "act":
            after_act = True
    return quote("/".join(segments), safe=_SAFE_PATH) if changed else None


def _redacted_query(query: str) -> str | None:
    """The query with secret values masked, or None when it holds none."""
    pairs = query.split("&")
    changed = False
    for index, pair in enumerate(pairs):
        parsed = parse_qsl(pair, keep_blank_values=True)
        name, value = parsed[0] if parsed else ("", "")
        if _SENSITIVE.search(name) or _SENSITIVE.search(value):
            shown = name.split("=", 1)[0]
            pairs[index] = f"{quote(shown, safe='')}={_MASK}"
            changed = True
    return "&".join(pairs) if changed else None


def redact(target: str) -> str:
    """A request target (path and query, as sent) with secret values replaced by `***`."""
    path, mark, query = target.partition("?")
    new_path = _redacted_path(path) if "act" in path.lower() or "%" in path else None
    new_query = _redacted_query(query) if query else None
    if new_path is None and new_query is None:
        return target
    return (new_path or path) + mark + (new_query if new_query is not None else query)


def logged_target(scope: Mapping[str, Any]) -> str:
    """The request's target as a log line may show it: as sent (percent-encoded, so
    no raw control character), secrets redacted."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope.get("path", ""), safe=_SAFE_PATH)
    query = scope.get("query_string", b"").decode("latin-1")
    return redact(f"{path}?{query}" if query else path)


class RedactingFilter(logging.Filter):
    """For uvicorn's access logger: its args are (client, method, target, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact(str(args[2]))
            record.args = tuple(args)
        return True


def install_access_log_redaction() -> None:
    logging.getLogger("uvicorn.access").addFilter(RedactingFilter())
