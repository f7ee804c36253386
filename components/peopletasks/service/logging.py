"""Access logs that never carry secrets or link tokens."""

from __future__ import annotations

import logging
import re

_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:secret|token)=)[^&\s\"]*", re.IGNORECASE)
_ACT_PATH = re.compile(r"(/people-task/act/)[^/?\s\"]+")


def redact(text: str) -> str:
    """Replace secret values in a request line or path with `***`."""
    return _ACT_PATH.sub(r"\1***", _SECRET_QUERY.sub(r"\1***", text))


class RedactingFilter(logging.Filter):
    """For uvicorn's access logger: its args are (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact(str(args[2]))
            record.args = tuple(args)
        return True


def install_access_log_redaction() -> None:
    logging.getLogger("uvicorn.access").addFilter(RedactingFilter())
