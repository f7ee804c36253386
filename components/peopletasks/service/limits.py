"""What one request may make the service read: a bounded body.

`BodyLimit` (ASGI middleware, every request, pages included) refuses a body
longer than `max_body_bytes` (`PEOPLETASKS_MAX_BODY_BYTES`, 1 MiB):

- a `Content-Length` that declares more is answered 413 at once, before any
  route runs (so before the caller is resolved), and nothing of it is read;
- a body without a declared length (chunked) is counted while it is read, and
  the read that passes the limit raises `PayloadTooLarge` (413, rendered by the
  app's exception handler) without keeping more than the limit.

A 413 closes the connection: the rest of the body is not waited for.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peopletasks.errors import PayloadTooLarge
from peopletasks.service.responses import error_response


class BodyLimit:
    """ASGI middleware: bodies of at most `max_bytes` (see the module)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and not chunked:
            # The server passes on no more than the declared length (a malformed
            # length never reaches the app: the server answers 400 itself).
            if length.isdigit() and int(length) > self.max_bytes:
                await error_response(PayloadTooLarge.over(self.max_bytes))(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)  # no body
            return
        limit = self.max_bytes
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise PayloadTooLarge.over(limit)
            return message

        await self.app(scope, counted, send)
