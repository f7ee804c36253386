"""The busiest API calls without FastAPI's per-request machinery.

Reading a task, creating one and deciding one are most of what the service does.
FastAPI spends more CPU on such a request (routing over every route, solving the
dependencies, validating path and query parameters) than the store does: measured
here, 60% of a `GET /tasks/{id}`. `FastLane` sits in front of the FastAPI app and
answers exactly these requests when they are plain:

    GET  /people-task/tasks/{id}
    POST /people-task/tasks
    PUT  /people-task/tasks/{id}/approve   and   /reject

It calls the same domain functions the FastAPI routes call and answers with the
same bodies, statuses and headers. Whatever it would have to refuse (a body that
is not valid, an unexpected query parameter or content type) it passes, untouched
(the body replayed), to the FastAPI routes: they stay the one definition of the
API (and its OpenAPI document) and produce every validation error. Domain errors
(401, 403, 404, 409, ...) are rendered by the same function as FastAPI's handler.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peopletasks.domain import Domain, Status
from peopletasks.domain import decisions as decision_ops
from peopletasks.domain import tasks as task_ops
from peopletasks.domain.inputs import Decide, TaskCreate
from peopletasks.errors import PeopleTaskError
from peopletasks.service.auth import authenticate, bearer_token
from peopletasks.service.errors import internal_error
from peopletasks.service.responses import error_response

log = logging.getLogger("peopletasks.service")

_TASKS = "/people-task/tasks"
_TASK_PREFIX = _TASKS + "/"
_DECISIONS = {"approve": Status.APPROVED, "reject": Status.REJECTED}
#: The longest id the FastAPI routes accept (`TaskId`), and the longest secret.
_MAX_ID = 64
_MAX_SECRET = 200
_JSON = (b"content-type", b"application/json")


class _Decline(Exception):
    """Not a plain request: FastAPI answers it."""


class _Gone(Exception):
    """The client went away while sending its body: nobody to answer."""


def _query_secret(query: bytes) -> str | None:
    """The `secret` query parameter, when it is the only one (else `_Decline`)."""
    if not query:
        return None
    if query.startswith(b"secret=") and not any(c in query for c in b"&%+;"):
        plain = query[7:]  # nothing to unquote (a secret is hex)
        if len(plain) > _MAX_SECRET:
            raise _Decline
        return plain.decode("latin-1") or None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "secret" or len(pairs[0][1]) > _MAX_SECRET:
        raise _Decline
    return pairs[0][1] or None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


def _json_body_allowed(scope: Scope) -> bool:
    """No content type, or JSON (what FastAPI parses as a JSON body)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return True


async def _send_json(send: Send, status: int, body: bytes, extra: list[Any] | None) -> None:
    headers = [(b"content-length", str(len(body)).encode()), _JSON]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastLane:
    """ASGI middleware answering the plain hot requests (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, state_app: Any = None) -> None:
        self.app = app
        #: The application whose `state.domain` serves (the FastAPI app).
        self.state_app = state_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_TASKS):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        body = b""
        try:
            if method == "GET" and path.startswith(_TASK_PREFIX):
                task_id = path[len(_TASK_PREFIX) :]
                if not task_id or "/" in task_id or len(task_id) > _MAX_ID:
                    raise _Decline
                secret = _query_secret(scope["query_string"])
                await self._answer(scope, receive, send, self._get(scope, task_id, secret))
                return
            if method == "POST" and path == _TASKS:
                secret = _query_secret(scope["query_string"])
                body = await self._body(scope, receive)
                data = TaskCreate.model_validate(orjson.loads(body))
                await self._answer(scope, receive, send, self._create(scope, data, secret))
                return
            if method == "PUT" and path.startswith(_TASK_PREFIX):
                task_id, _, action = path[len(_TASK_PREFIX) :].rpartition("/")
                decision = _DECISIONS.get(action)
                if decision is None or not task_id or "/" in task_id or len(task_id) > _MAX_ID:
                    raise _Decline
                secret = _query_secret(scope["query_string"])
                body = await self._body(scope, receive)
                given = Decide.model_validate(orjson.loads(body)) if body else None
                await self._answer(
                    scope, receive, send, self._decide(scope, task_id, secret, given, decision)
                )
                return
            raise _Decline
        except (_Decline, ValidationError, orjson.JSONDecodeError, UnicodeDecodeError):
            pass
        except _Gone:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        if not _json_body_allowed(scope):
            raise _Decline
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Gone
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _domain(self) -> Domain:
        domain: Domain = self.state_app.state.domain
        return domain

    async def _answer(self, scope: Scope, receive: Receive, send: Send, work: Any) -> None:
        """Run the domain call `work` (a coroutine giving status, body, extra headers)
        and send its answer, or the error as FastAPI's handlers would render it."""
        try:
            status, content, extra = await work
        except PeopleTaskError as failure:
            await error_response(failure)(scope, receive, send)
            return
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await error_response(internal_error())(scope, receive, send)
            return
        await _send_json(send, status, orjson.dumps(content), extra)

    async def _get(
        self, scope: Scope, task_id: str, secret: str | None
    ) -> tuple[int, Any, list[Any] | None]:
        domain = self._domain()
        principal = await authenticate(domain, _bearer(scope), secret)
        return 200, await task_ops.get_task(domain, principal, task_id), None

    async def _create(
        self, scope: Scope, data: TaskCreate, secret: str | None
    ) -> tuple[int, Any, list[Any] | None]:
        domain = self._domain()
        principal = await authenticate(domain, _bearer(scope), secret)
        task = await task_ops.create_task(domain, principal, data)
        status = 201 if task.pop("created") else 200
        return status, task, [(b"location", f"{_TASK_PREFIX}{task['id']}".encode())]

    async def _decide(
        self,
        scope: Scope,
        task_id: str,
        secret: str | None,
        given: Decide | None,
        decision: Status,
    ) -> tuple[int, Any, list[Any] | None]:
        domain = self._domain()
        principal = await authenticate(
            domain, _bearer(scope), (given.secret if given else None) or secret
        )
        comment = given.comment if given else None
        return (
            200,
            await decision_ops.decide_task(domain, principal, task_id, decision, comment),
            None,
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for FastAPI: the body already read first, then the client's messages."""
    if not body:
        return receive
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
