"""Fast JSON responses and the error body shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from peopletasks.errors import PeopleTaskError, Unauthorized


class FastJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Any:
    return FastJSONResponse(content, status_code=status_code, headers=headers)


def error_response(error: PeopleTaskError) -> FastJSONResponse:
    headers = None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif error.status == 413:
        headers = {"Connection": "close"}  # the rest of the body is not read
    return FastJSONResponse(error.to_body(), status_code=error.status, headers=headers)
