"""The seam between the webhook sender and the network (as httpx's `AsyncBaseTransport`).

A `Transport` carries one `Request` and gives its `Reply`, or raises:

* `TargetRefused` (targets.py): nothing was sent, the target may not be reached
  (a non-public address, a name that does not resolve);
* `SendTimeout`: connecting, or the exchange, took longer than allowed;
* `UnsendableRequest`: the request cannot be written (a header that is not
  Latin-1 text or holds a line break); no later attempt can succeed;
* `SendError`: anything else below HTTP (refused, reset, a malformed answer).

Two transports: `HTTPTransport` (http.py), the service's own, a lean SSRF-safe
HTTP/1.1 keep-alive client; and `MockTransport` here, which answers in memory
with a function of the request (for tests whose subject is what the dispatcher
does with an answer, not the wire).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from peopletasks.errors import SendError, SendTimeout, UnsendableRequest

__all__ = [
    "MockTransport",
    "Reply",
    "Request",
    "SendError",
    "SendTimeout",
    "Transport",
    "UnsendableRequest",
]


@dataclass(frozen=True, slots=True)
class Request:
    method: str  #: "POST" or "GET"
    url: str  #: absolute http(s), printable ASCII (the sender normalises it)
    headers: Mapping[str, str]
    body: bytes | None
    body_cap: int  #: read at most this many bytes of the answer


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  #: lower-case names; a repeated header keeps its last value
    body: bytes  #: at most the request's `body_cap` bytes


class Transport(ABC):
    """Sends one request; keeps whatever connections it likes until `aclose()`."""

    @abstractmethod
    async def handle(self, request: Request) -> Reply:
        """The answer to `request`; never follows redirects. Raises as the module says."""

    async def aclose(self) -> None:  # noqa: B027 - nothing to close by default
        """Close kept connections; the transport is not used afterwards."""


#: Answers a request in memory: a `Reply` (or an awaitable of one), or raises.
Handler = Callable[[Request], Reply | Awaitable[Reply]]


@dataclass
class MockTransport(Transport):
    """Answers with `handler(request)`, in memory; keeps every request it was given."""

    handler: Handler
    requests: list[Request] = field(default_factory=list)

    async def handle(self, request: Request) -> Reply:
        self.requests.append(request)
        answer = self.handler(request)
        reply = answer if isinstance(answer, Reply) else await answer
        if len(reply.body) > request.body_cap:
            reply = Reply(reply.status, reply.headers, reply.body[: request.body_cap])
        return reply
