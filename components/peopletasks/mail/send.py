"""Send mail over SMTP (aiosmtplib): a few connections for many messages, with retries.

```python
async with Mailer(SmtpConfig.from_env()) as mailer:
    await mailer.send(message)             # or: await mailer.send_many(messages)
```

A `Mailer` keeps a small pool of connections (`connections`, default 8). Each is
opened when a send first needs it (TLS and login included), kept for every later
message, reopened when the server has dropped it, and told `QUIT` on exit. A send is
retried with backoff on transient failures (connection refused / reset / timed out,
any SMTP 4xx answer) and never on a permanent one (SMTP 5xx, a certificate that does
not verify, a server without STARTTLS when it is required): those raise
`MailDeliveryError` at once.

Why several connections: aiosmtplib does not pipeline (RFC 2920), so each message
costs four round trips (MAIL, RCPT, DATA, the content) on its connection; across the
Internet a pool of a few connections, each reused, is what makes bulk sending fast.
Sequential sends reuse one connection; concurrent sends (`send_many`, or `send` from
several tasks) spread over up to `connections`, opened as they are needed.

If a connection breaks after the server took the content but before it
answered, the retry sends the message again; the receiver sees the same
`Message-ID` (see `render.message_id_for`) and can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from types import TracebackType
from typing import Literal, cast, overload

import aiosmtplib

from peopletasks.errors import MailDeliveryError
from peopletasks.settings import (
    DEFAULT_PORTS,
    DEFAULT_SENDER,
    TLS_MODES,
    SmtpConfig,
    TlsMode,
)

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_SENDER",
    "TLS_MODES",
    "Delivery",
    "MailDeliveryError",
    "Mailer",
    "SmtpConfig",
    "TlsMode",
    "send_message",
]

log = logging.getLogger("peopletasks.mail")

#: The waits before the 2nd, 3rd and 4th attempt of a send.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message the server accepted."""

    message_id: str | None
    recipients: tuple[str, ...]
    #: The server's answer to the content (often names its queue id).
    response: str
    attempts: int
    #: Recipients refused while others were accepted: address -> (code, text).
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Failure:
    code: int | None
    text: str
    transient: bool
    recipients: tuple[str, ...] | None = None
    #: The connection may be broken: drop it before the next attempt.
    drop: bool = False


def _ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _classify(exc: Exception) -> _Failure | None:
    """What an exception from aiosmtplib means for retrying; None: not a delivery failure."""
    ssl_error = _ssl_error_in(exc)
    if ssl_error is not None:
        return _Failure(None, f"TLS failed: {ssl_error}", transient=False, drop=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        first = exc.recipients[0] if exc.recipients else None
        return _Failure(
            first.code if first else None,
            first.message if first else str(exc),
            transient=any(400 <= c < 500 for c in codes),
            recipients=tuple(r.recipient for r in exc.recipients),
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        # -1: an answer aiosmtplib could not parse; 421: the server is closing the connection.
        transient = code < 0 or 400 <= code < 500
        return _Failure(code, exc.message, transient=transient, drop=code < 0 or code == 421)
    if isinstance(
        exc,
        aiosmtplib.SMTPTimeoutError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPConnectError
        | ConnectionError
        | TimeoutError
        | OSError,
    ):
        return _Failure(None, str(exc) or type(exc).__name__, transient=True, drop=True)
    if isinstance(exc, aiosmtplib.SMTPException | ValueError):
        # STARTTLS / AUTH not offered, SMTPUTF8 needed, a malformed address ...
        return _Failure(None, str(exc) or type(exc).__name__, transient=False)
    return None


def _recipients_of(message: EmailMessage) -> list[str]:
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return [addr for _, addr in getaddresses(fields) if addr]


#: Most connections a `Mailer` may keep.
MAX_CONNECTIONS = 64
#: `send_many` opens at most one connection per this many messages: setting one up
#: (connect, EHLO, STARTTLS, TLS, EHLO, AUTH) costs about as much as sending one or two.
_MESSAGES_PER_CONNECTION = 4


class _Connection:
    """One place in the pool: an SMTP connection, or None until it is (re)opened."""

    __slots__ = ("smtp",)

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None

    @property
    def connected(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    def drop(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.close()


class Mailer:
    """A small pool of SMTP connections, each opened lazily, reused for many messages,
    and closed on exit.

    Several connections, because each message costs 4 round trips on one connection
    (no pipelining): across the Internet a pool of a few is what makes bulk sending fast.
    A connection carries one transaction at a time; it is safe to call `send` from
    several tasks, and concurrent sends use up to `connections` connections (1: every
    send goes over the one connection, one after the other). `retry_delays` are the
    waits before each retry of a transient failure (default 0.5 s, 1 s, 2 s: four
    attempts in all).
    """

    def __init__(
        self,
        config: SmtpConfig | None = None,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        tls_context: ssl.SSLContext | None = None,
        connections: int = 8,
    ) -> None:
        if isinstance(connections, bool) or not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be 1-{MAX_CONNECTIONS}, not {connections!r}")
        self.config = config or SmtpConfig.from_env()
        self.retry_delays = tuple(retry_delays)
        self.connections = connections
        self._tls_context = tls_context
        self._pool = [_Connection() for _ in range(connections)]
        #: The pool's free places, the most recently used last.
        self._free = list(self._pool)
        self._available = asyncio.Semaphore(connections)
        #: How many connections this mailer has opened, over the whole pool (at most
        #: `connections` unless the server dropped some).
        self.connections_opened = 0

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether any connection of the pool is open."""
        return any(c.connected for c in self._pool)

    async def _acquire(self) -> _Connection:
        """A free place in the pool, an open connection if one is free (waits if none is)."""
        await self._available.acquire()
        for index in range(len(self._free) - 1, -1, -1):
            if self._free[index].connected:
                return self._free.pop(index)
        return self._free.pop()

    def _release(self, connection: _Connection) -> None:
        self._free.append(connection)
        self._available.release()

    async def open(self, count: int | None = None) -> int:
        """Open up to `count` (default: all) of the pool's free places' connections now,
        side by side, ahead of a burst of sends (connecting, TLS and login then cost
        the burst nothing). Places in use are left alone; a connection that fails to
        open is left to the sends that follow. Returns how many were opened."""
        wanted = min(count or self.connections, self.connections)
        held: list[_Connection] = []
        try:
            while len(held) < wanted and not self._available.locked():
                held.append(await self._acquire())
            closed = [c for c in held if not c.connected]
            opened = await asyncio.gather(
                *(self._connect(c) for c in closed), return_exceptions=True
            )
        finally:
            for connection in held:
                self._release(connection)
        for failure in (o for o in opened if isinstance(o, BaseException)):
            log.info(
                "opening an SMTP connection to %s ahead failed: %s", self.config.address, failure
            )
        return sum(1 for o in opened if not isinstance(o, BaseException))

    async def close(self) -> None:
        """Say QUIT (politely, briefly) and close every open connection.

        Waits for the sends in progress to finish first."""
        held: list[_Connection] = []
        try:
            for _ in range(self.connections):
                held.append(await self._acquire())
            await asyncio.gather(*(self._quit(c) for c in held))
        finally:
            for connection in held:
                self._release(connection)

    async def _quit(self, connection: _Connection) -> None:
        smtp, connection.smtp = connection.smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await asyncio.wait_for(smtp.quit(), timeout=min(self.config.timeout, 5.0))
        finally:
            smtp.close()

    async def _connect(self, connection: _Connection) -> aiosmtplib.SMTP:
        if connection.smtp is not None and connection.smtp.is_connected:
            return connection.smtp
        connection.drop()
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=(
                cfg.password.get_secret_value()
                if cfg.username is not None and cfg.password is not None
                else None
            ),
            local_hostname=cfg.local_hostname,
            timeout=cfg.timeout,
            use_tls=cfg.tls == "tls",
            start_tls=cfg.tls == "starttls",
            validate_certs=cfg.validate_certs,
            cert_bundle=cfg.cafile if self._tls_context is None else None,
            tls_context=self._tls_context,
        )
        await smtp.connect()
        self.connections_opened += 1
        connection.smtp = smtp
        return smtp

    def _prepare(self, message: EmailMessage) -> None:
        if message["From"] is None:
            message["From"] = self.config.sender
        if message["Reply-To"] is None and self.config.reply_to:
            message["Reply-To"] = self.config.reply_to

    async def send(self, message: EmailMessage) -> Delivery:
        """Send one message (From / Reply-To filled in from the config when it has none).

        Returns the server's acceptance; raises `MailDeliveryError` when the server
        refuses it for good or transient failures outlast the retries.
        """
        self._prepare(message)
        recipients = _recipients_of(message)
        message_id = message["Message-ID"]
        message_id = str(message_id) if message_id is not None else None
        connection = await self._acquire()
        try:
            return await self._send_over(connection, message, recipients, message_id)
        finally:
            self._release(connection)

    async def _send_over(
        self,
        connection: _Connection,
        message: EmailMessage,
        recipients: list[str],
        message_id: str | None,
    ) -> Delivery:
        attempts = 0
        reconnected_stale = False
        while True:
            attempts += 1
            reused = connection.connected
            try:
                smtp = await self._connect(connection)
                refused, response = await smtp.send_message(message)
            except asyncio.CancelledError:
                connection.drop()  # the transaction's state on the server is unknown
                raise
            except Exception as exc:
                failure = _classify(exc)
                if failure is None:
                    connection.drop()
                    raise
                if failure.drop:
                    connection.drop()
                if failure.transient and reused and failure.drop and not reconnected_stale:
                    # The kept connection had gone stale (server idle timeout): reconnect
                    # at once, without spending a retry.
                    reconnected_stale = True
                    attempts -= 1
                    log.info("SMTP connection to %s was closed; reconnecting", self.config.address)
                    continue
                if not failure.transient or attempts > len(self.retry_delays):
                    raise MailDeliveryError(
                        recipients=failure.recipients or recipients,
                        code=failure.code,
                        smtp_message=failure.text,
                        message_id=message_id,
                        permanent=not failure.transient,
                        attempts=attempts,
                        server=self.config.address,
                    ) from exc
                delay = self.retry_delays[attempts - 1]
                log.warning(
                    "sending %s to %s failed (%s); retrying in %.2f s",
                    message_id or "mail",
                    ", ".join(recipients),
                    f"{failure.code} {failure.text}" if failure.code else failure.text,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            return Delivery(
                message_id=message_id,
                recipients=tuple(recipients),
                response=response,
                attempts=attempts,
                refused={k: (v.code, v.message) for k, v in refused.items()},
            )

    @overload
    async def send_many(
        self, messages: Iterable[EmailMessage], *, return_exceptions: Literal[False] = False
    ) -> list[Delivery]: ...

    @overload
    async def send_many(
        self, messages: Iterable[EmailMessage], *, return_exceptions: Literal[True]
    ) -> list[Delivery | MailDeliveryError]: ...

    async def send_many(
        self, messages: Iterable[EmailMessage], *, return_exceptions: bool = False
    ) -> list[Delivery] | list[Delivery | MailDeliveryError]:
        """Send messages over up to `connections` connections at once; results in order.

        A batch uses one connection per 4 messages at most (setting one up costs about
        as much as sending one or two), so a few messages go one after the other, in
        order, over one connection; more are spread over the pool, and then may arrive
        in any order. With `connections=1` they are always sent one by one, in order.

        By default the first `MailDeliveryError` stops the batch (no further message is
        started; those already under way on other connections finish) and is raised;
        with `return_exceptions=True` every message is tried and each failure takes its
        place in the result (like `asyncio.gather`).
        """
        if self.connections == 1:
            results: list[Delivery | MailDeliveryError] = []
            for message in messages:
                try:
                    results.append(await self.send(message))
                except MailDeliveryError as exc:
                    if not return_exceptions:
                        raise
                    results.append(exc)
            return results

        batch = list(messages)
        workers = min(self.connections, max(1, len(batch) // _MESSAGES_PER_CONNECTION))
        slots: list[Delivery | MailDeliveryError | None] = [None] * len(batch)
        errors: dict[int, Exception] = {}
        queue = iter(range(len(batch)))

        async def worker() -> None:
            for index in queue:
                if errors:
                    return
                try:
                    slots[index] = await self.send(batch[index])
                except MailDeliveryError as exc:
                    if return_exceptions:
                        slots[index] = exc
                    else:
                        errors[index] = exc
                except Exception as exc:  # not a delivery failure: raised as it is
                    errors[index] = exc

        if workers == 1:
            await worker()
        else:
            tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        if errors:
            raise errors[min(errors)]
        return cast("list[Delivery | MailDeliveryError]", slots)


def send_message(
    config: SmtpConfig,
    message: EmailMessage,
    *,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
) -> Delivery:
    """Send one message from synchronous code (connects, sends, quits).

    Not for use inside a running event loop: there, `await Mailer(config).send(message)`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "send_message() cannot run inside an event loop; use "
            "`async with Mailer(config) as mailer: await mailer.send(message)`"
        )

    async def run() -> Delivery:
        async with Mailer(config, retry_delays=retry_delays) as mailer:
            return await mailer.send(message)

    return asyncio.run(run())
