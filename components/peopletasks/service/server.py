"""uvicorn's HTTP protocols with the timeout they lack: the request header's.

uvicorn closes a kept-alive connection that stays idle (`timeout_keep_alive`)
but waits forever for a header: a client that opens a connection and sends
nothing, or half a header, holds the connection (and its memory) as long as it
likes. Here a connection must deliver each request's complete header within
`header_timeout` seconds, counted from the connection's opening (its first
request) or from the first byte of a later one; otherwise it is answered
`408 Request Timeout` and closed. The body, once the header is in, and the
time the app takes are not bounded here.

`protocol(...)` gives what `uvicorn.run(http=...)` takes: a picklable factory,
so `serve --workers N` carries the timeout to every worker.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TOO_SLOW = b"the request header took too long"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_SLOW), _TOO_SLOW)
)


def _answer_timed_out(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.write(_TIMED_OUT)
        transport.close()


class _HeaderDeadline:
    """The header timer of one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        self.timer: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport) -> None:
        """Counting from now, unless already counting."""
        if self.timer is None:
            self.timer = self.loop.call_later(self.seconds, _answer_timed_out, transport)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class HttpToolsHeaderTimeout(HttpToolsProtocol):
    """httptools' protocol with a header timeout (see the module)."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline = _HeaderDeadline(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_deadline.start(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_deadline.start(self.transport)

    def on_headers_complete(self) -> None:
        self.header_deadline.stop()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline.stop()
        super().connection_lost(exc)


class H11HeaderTimeout(H11Protocol):
    """h11's protocol with a header timeout (see the module)."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline = _HeaderDeadline(self.loop, header_timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_deadline.start(transport)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self.header_deadline.stop()  # the header is in (the body or the next cycle follows)
        elif self.conn.trailing_data[0]:
            self.header_deadline.start(self.transport)  # part of a header is waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_deadline.stop()
        super().connection_lost(exc)


def protocol(http: Literal["httptools", "h11"], header_timeout: float) -> Any:
    """The `http=` argument of `uvicorn.run`: `http`'s protocol with a header timeout."""
    kind = HttpToolsHeaderTimeout if http == "httptools" else H11HeaderTimeout
    return functools.partial(kind, header_timeout=header_timeout)
