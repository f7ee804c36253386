"""The webhook sender: a lean HTTP/1.1 client for one job, POSTing deliveries
(and the odd GET a delivery needs, e.g. reading a Prefect flow run).

Why not httpx: measured here, httpx's connection pool spent so much CPU per request
that the dispatcher topped out at ~200 deliveries/s (138/s from a bare httpx loop
against a receiver that a plain asyncio client drove at 25,000/s). Deliveries need
little of HTTP: POST one body, read the status, a few headers and a capped prefix of
the answer, keep the connection for the next delivery to the same origin.

What it guarantees (the SSRF rules of `transport.py`):

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from peopletasks.webhooks.transport import resolve_public

__all__ = ["Reply", "SendError", "SendTimeout", "Sender"]

READ_SIZE = 65536
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


class SendError(Exception):
    """The exchange failed below HTTP: connect, reset, a malformed answer."""


class SendTimeout(SendError):
    """Connecting, or the exchange, took longer than allowed."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  #: lower-case names; a repeated header keeps its last value
    body: bytes  #: at most the sender's `body_cap` bytes


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
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise SendError(f"not an http(s) URL: {url[:200]}")
    default = 443 if scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        raise SendError(f"bad port in {url[:200]}") from None
    host = parts.hostname.lower()
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(scheme, host, port, host_header.encode("idna")), target.encode("ascii")


class Sender:
    """`async with Sender(allow_private=False) as sender: reply = await sender.post(url, body)`."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        body_cap: int = 4096,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 64,
        idle_seconds: float = 30.0,
        user_agent: str = "peopletasks-webhooks",
        trusted: Iterable[str] = (),
    ) -> None:
        self.allow_private = allow_private
        #: Origins connected to whatever their address (the operator's own Prefect API).
        self.trusted_origins = frozenset(_origin(url)[0].key for url in trusted)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.body_cap = body_cap
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_seconds = idle_seconds
        self.user_agent = user_agent
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._closed = False

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

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

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] = {}) -> Reply:
        """POST `body`; the answer (status, headers, capped body). Never follows redirects.

        Raises `TargetRefused` (nothing was sent), `SendTimeout` or `SendError`.
        """
        return await self._request(b"POST", url, body, headers, self.body_cap)

    async def get(
        self, url: str, headers: Mapping[str, str] = {}, *, body_cap: int | None = None
    ) -> Reply:
        """GET `url` under the same rules as `post`; `body_cap` overrides the sender's cap."""
        cap = self.body_cap if body_cap is None else body_cap
        return await self._request(b"GET", url, None, headers, cap)

    async def _request(
        self,
        method: bytes,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        body_cap: int,
    ) -> Reply:
        origin, target = _origin(url)
        head = self._head(method, origin, target, body, headers)
        payload = body or b""
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

    def _head(
        self,
        method: bytes,
        origin: _Origin,
        target: bytes,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> bytes:
        lines = [
            method + b" " + target + b" HTTP/1.1",
            b"host: " + origin.host_header,
            b"accept-encoding: identity",
            b"user-agent: " + self.user_agent.encode(),
        ]
        if body is not None:
            lines.insert(2, b"content-length: " + str(len(body)).encode())
        for name, value in headers.items():
            lower = name.lower()
            if lower in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if lower in ("accept-encoding", "user-agent"):
                lines = [line for line in lines if not line.startswith(lower.encode() + b":")]
            encoded = f"{name}: {value}".encode("latin-1")
            if b"\r" in encoded or b"\n" in encoded:
                raise SendError(f"header {name} contains a line break")
            lines.append(encoded)
        return b"\r\n".join(lines) + b"\r\n\r\n"

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


class _StaleConnection(Exception):
    """A pooled connection failed before any answer: send again on a fresh one."""
