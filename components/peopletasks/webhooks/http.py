"""The service's webhook transport: a lean HTTP/1.1 client for one job, POSTing
deliveries (and the odd GET a delivery needs, e.g. reading a Prefect flow run).

Why not httpx: measured here, httpx's connection pool spent so much CPU per request
that the dispatcher topped out at ~200 deliveries/s (138/s from a bare httpx loop
against a receiver that a plain asyncio client drove at 25,000/s). Deliveries need
little of HTTP: POST one body, read the status, a few headers and a capped prefix of
the answer, keep the connection for the next delivery to the same origin.

What it guarantees (the SSRF rules of `targets.py`):

* every new connection resolves the host itself, refuses it when ANY resolved address
  is not public (unless `allow_private`), and connects to the checked address literal,
  so the address connected to is the address checked (no DNS-rebinding gap);
* TLS verifies the certificate for, and sends SNI of, the URL's host name;
* redirects are answers, never followed; no proxy is taken from the environment;
* at most `body_cap` bytes of an answer are read; a longer answer closes its
  connection instead of being read on;
* `timeout` bounds each exchange (write + read), `connect_timeout` resolving plus all
  connection attempts.

A connection that sat idle in the pool may have been closed by the receiver: when
one fails before a single byte of the answer arrives, the request is sent once more
on a fresh connection (as browsers and httpx do).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from peopletasks.webhooks.targets import resolve_public
from peopletasks.webhooks.transport import (
    Reply,
    Request,
    SendError,
    SendTimeout,
    Transport,
    UnsendableRequest,
)

__all__ = ["HTTPTransport"]

READ_SIZE = 65536
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


@dataclass
class _Origin:
    scheme: str
    host: str  #: as in the URL, lower-case, IPv6 without brackets
    port: int
    host_header: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float, idle_seconds: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < idle_seconds
        )

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Answer:
    """httptools' callbacks collect the answer here."""

    cap: int
    parser: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0
    body: bytearray = field(default_factory=bytearray)
    headers_done: bool = False
    keep_alive: bool = False
    complete: bool = False
    truncated: bool = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if len(self.headers) >= MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES:
            raise SendError("the answer's headers are too large")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked now: httptools forgets it once the message is complete.
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, chunk: bytes) -> None:
        room = self.cap - len(self.body)
        if len(chunk) > room:
            self.truncated = True
        self.body += chunk[: max(room, 0)]

    def on_message_complete(self) -> None:
        self.complete = True


def _origin(url: str) -> tuple[_Origin, bytes]:
    """Where to connect, and the request target; `UnsendableRequest` for a URL that
    is not absolute http(s) in printable ASCII (the sender normalises URLs)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise UnsendableRequest(f"not an http(s) URL: {url[:200]}")
        default = 443 if scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname.lower()
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Origin(scheme, host, port, host_header.encode("ascii")), target.encode("ascii")
    except UnicodeEncodeError:
        raise UnsendableRequest(f"not an ASCII URL: {url[:200]}") from None
    except ValueError as exc:  # a bad port, an unclosed IPv6 bracket
        raise UnsendableRequest(f"cannot send to {url[:200]}: {exc}") from None


_NOT_SENT = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HTTPTransport(Transport):
    """The service's transport: `HTTPTransport(allow_private=False)`; see the module."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 64,
        idle_seconds: float = 30.0,
        trusted: Iterable[str] = (),
    ) -> None:
        self.allow_private = allow_private
        #: Origins connected to whatever their address (the operator's own Prefect API,
        #: named in PEOPLETASKS_PREFECT_API_URL).
        self.trusted_origins = frozenset(_origin(url)[0].key for url in trusted)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_seconds = idle_seconds
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # httpx's: certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set.
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    # -- the exchange -------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        origin, target = _origin(request.url)
        head = _head(request.method.encode("ascii"), origin, target, request)
        payload = request.body or b""
        body_cap = request.body_cap
        connection, reused = await self._checkout(origin)
        try:
            reply, reusable = await self._exchange(
                connection, head, payload, body_cap, fresh=not reused
            )
        except _StaleConnection:
            connection.close()
            connection = await self._connect(origin)
            try:
                reply, reusable = await self._exchange(
                    connection, head, payload, body_cap, fresh=True
                )
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._checkin(origin, connection)
        else:
            connection.close()
        return reply

    async def _exchange(
        self, connection: _Connection, head: bytes, body: bytes, body_cap: int, *, fresh: bool
    ) -> tuple[Reply, bool]:
        answer = _Answer(body_cap)
        parser = httptools.HttpResponseParser(answer)
        answer.parser = parser
        received = 0
        try:
            async with asyncio.timeout(self.timeout):
                connection.writer.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    connection.writer.write(body)
                await connection.writer.drain()
                while not answer.complete:
                    chunk = await connection.reader.read(READ_SIZE)
                    if not chunk:
                        if received == 0 and not fresh:
                            raise _StaleConnection
                        if answer.headers_done and not answer.complete:
                            # Answer delimited by the end of the connection.
                            parser.feed_data(b"")
                            answer.complete = True
                            break
                        raise SendError("the receiver closed the connection before answering")
                    received += len(chunk)
                    parser.feed_data(chunk)
                    if answer.truncated:
                        break  # read no further: this connection is not reused
        except TimeoutError:
            raise SendTimeout(f"no answer within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            if received == 0 and not fresh:
                raise _StaleConnection from exc
            raise SendError(f"{type(exc).__name__}: {exc}") from exc
        except httptools.HttpParserError as exc:
            raise SendError(f"invalid HTTP answer: {exc}") from exc
        status = parser.get_status_code()
        reusable = answer.complete and not answer.truncated and answer.keep_alive
        return Reply(status, answer.headers, bytes(answer.body)), reusable

    # -- connections --------------------------------------------------------------

    async def _checkout(self, origin: _Origin) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin.key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest alive
            if connection.usable(now, self.idle_seconds):
                return connection, True
            connection.close()
        return await self._connect(origin), False

    def _checkin(self, origin: _Origin, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            return
        idle = self._idle.setdefault(origin.key, deque())
        if len(idle) >= self.max_idle_per_origin:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        try:
            async with asyncio.timeout(self.connect_timeout):
                addresses = await resolve_public(
                    origin.host,
                    origin.port,
                    allow_private=self.allow_private or origin.key in self.trusted_origins,
                )
        except TimeoutError:
            raise SendTimeout(f"cannot resolve {origin.host}: timed out") from None
        tls = self._ssl_context() if origin.scheme == "https" else None
        failures: list[str] = []
        only_timeouts = True
        for index, address in enumerate(addresses):
            remaining = deadline - loop.time()
            if remaining <= 0:
                failures.append(f"{address}: not tried, connect timeout used up")
                break
            # In order, one at a time; each gets its share of what is left, so one
            # black-holed address cannot use up the whole budget.
            budget = remaining / (len(addresses) - index)
            try:
                async with asyncio.timeout(budget):
                    reader, writer = await asyncio.open_connection(
                        address,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls is not None else None,
                        limit=READ_SIZE,
                    )
                return _Connection(reader, writer)
            except TimeoutError:
                failures.append(f"{address}: timed out")
            except ssl.SSLError as exc:
                only_timeouts = False
                failures.append(f"{address}: TLS: certificate or handshake failed: {exc}")
            except OSError as exc:
                only_timeouts = False
                failures.append(f"{address}: {exc.strerror or exc}")
        message = f"cannot connect to {origin.host} port {origin.port}: {'; '.join(failures)}"
        if only_timeouts:
            raise SendTimeout(message)
        raise SendError(message)


def _head(method: bytes, origin: _Origin, target: bytes, request: Request) -> bytes:
    """The request line and headers: `host` and `content-length` are the transport's
    own; `accept-encoding: identity` unless the request names an encoding."""
    lines = [method + b" " + target + b" HTTP/1.1", b"host: " + origin.host_header]
    if request.body is not None:
        lines.append(b"content-length: " + str(len(request.body)).encode())
    encoding_named = False
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _NOT_SENT:
            continue
        encoding_named = encoding_named or lower == "accept-encoding"
        try:
            encoded = f"{name}: {value}".encode("latin-1")
        except UnicodeEncodeError:
            raise UnsendableRequest(f"header {name} is not Latin-1 text") from None
        if b"\r" in encoded or b"\n" in encoded:
            raise UnsendableRequest(f"header {name} contains a line break")
        lines.append(encoded)
    if not encoding_named:
        lines.append(b"accept-encoding: identity")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _StaleConnection(SendError):
    """A pooled connection failed before any answer: send again on a fresh one."""
