"""Render every failure as `{"error": {"code", "message", "details"}}`; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from peopletasks.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    PeopleTaskError,
    Unauthorized,
    ValidationFailed,
)
from peopletasks.service.logging import logged_target
from peopletasks.service.responses import FastJSONResponse, error_response

log = logging.getLogger("peopletasks.service")

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in {"body", "query", "path"} else []
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def _detail(error: dict[str, Any]) -> dict[str, Any]:
    if isinstance(error.get("input"), bytes):
        # A body whose content type is not JSON is not read as JSON (FastAPI's rule).
        return {"field": "body", "message": "send JSON with `Content-Type: application/json`"}
    message = _MESSAGES.get(error["type"]) or str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    return {"field": _field(tuple(error.get("loc", ()))), "message": message}


def internal_error() -> PeopleTaskError:
    """What a caller is told of a failure we did not foresee (the log has the rest)."""
    error = PeopleTaskError("internal error; the service log has the details", code="internal")
    error.status = 500
    return error


def validation_error(exc: RequestValidationError) -> PeopleTaskError:
    errors = list(exc.errors())
    details = [_detail(e) for e in errors]
    first = details[0] if details else {"field": "body", "message": "is invalid"}
    return ValidationFailed(f"{first['field']}: {first['message']}", details=details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PeopleTaskError)
    async def _domain_error(_request: Request, exc: PeopleTaskError) -> FastJSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> FastJSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        kinds: dict[int, type[PeopleTaskError]] = {
            400: InvalidRequest,
            401: Unauthorized,
            403: Forbidden,
            404: NotFound,
        }
        kind = kinds.get(exc.status_code)
        if kind is not None:
            message = "no such path" if exc.status_code == 404 else str(exc.detail)
            return error_response(kind(message))
        error = PeopleTaskError(str(exc.detail), code="http_error")
        error.status = exc.status_code
        response = error_response(error)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        # The client left before sending its whole body: nobody reads an answer.
        log.debug("client left mid-body on %s %s", request.method, logged_target(request.scope))
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> FastJSONResponse:
        log.exception("unexpected error on %s %s", request.method, logged_target(request.scope))
        return error_response(internal_error())
