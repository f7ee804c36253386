"""A local development inbox: an SMTP server that keeps every message, and a web UI.

```python
async with Inbox() as inbox:                 # SMTP and web on free ports of 127.0.0.1
    ...send to 127.0.0.1:inbox.smtp_port (no TLS; any AUTH login is accepted)...
    message = await inbox.wait_for(lambda m: m.subject.startswith("Approval"), timeout=10)
    message.links                             # every http(s) href of its HTML part
```

`serve_inbox()` runs one until cancelled (the `peopletasks inbox` command).

Web UI (at `inbox.web_url`): `/` lists the messages, newest first; `/messages/{id}`
shows one: its HTML part in a sandboxed iframe (links open, scripts never run),
the text part and the headers; `/messages/{id}.eml` is the raw message.
JSON: `GET /api/messages` (newest first: id, from, to, subject, date, message_id,
received_at), `GET /api/messages/{id}` (adds recipients, headers, text, html, links),
`DELETE /api/messages` (forget them all).

Everything runs in the caller's event loop: aiosmtpd's protocol on
`loop.create_server`, uvicorn's `Server.serve` as a task (its signal handlers
off, so Ctrl-C stays with the caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import itertools
import logging
import socket
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from peopletasks.mail.render import make_environment

log = logging.getLogger("peopletasks.mail.inbox")

#: Scripts never run; styles and images of the mails do. The srcdoc iframe inherits this
#: policy (so no `frame-ancestors`: Chromium then refuses to show the srcdoc document).
_PAGE_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: What the iframe may do: open links (in a new tab, or the top window on a click); no scripts.
IFRAME_SANDBOX = (
    "allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in {"a", "area"}:
            return
        for name, value in attrs:
            if name == "href" and value:
                href = value.strip()
                if href.lower().startswith(("http://", "https://")):
                    self.links.append(href)


def extract_links(html: str) -> list[str]:
    """Every http(s) `href` of `<a>` / `<area>` in `html`, in document order (unescaped)."""
    collector = _LinkCollector()
    collector.feed(html)
    collector.close()
    return collector.links


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return content if isinstance(content, str) else None


@dataclass(eq=False)
class StoredMessage:
    """One received message, as the envelope brought it and as parsed."""

    id: str
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    path: Path | None = None
    _text: str | None = field(default=None, init=False, repr=False)
    _html: str | None = field(default=None, init=False, repr=False)
    _links: list[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._text = _part_text(self.message, "plain")
        self._html = _part_text(self.message, "html")
        self._links = extract_links(self._html) if self._html else []

    def header(self, name: str) -> str:
        value = self.message.get(name)
        return str(value) if value is not None else ""

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def sender(self) -> str:
        return self.header("From")

    @property
    def to(self) -> str:
        return self.header("To")

    @property
    def recipients(self) -> list[str]:
        """The addresses of To / Cc (and of the envelope, for Bcc)."""
        fields = [str(v) for n in ("To", "Cc") for v in self.message.get_all(n, [])]
        found = [addr for _, addr in getaddresses(fields) if addr]
        return found + [r for r in self.rcpt_tos if r not in found]

    @property
    def message_id(self) -> str:
        return self.header("Message-ID")

    @property
    def date(self) -> datetime:
        """The Date header (UTC), or when it arrived if it has none (or a bad one)."""
        value = self.header("Date")
        if value:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                parsed = parsedate_to_datetime(value)
                return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        return self.received_at

    @property
    def text(self) -> str | None:
        return self._text

    @property
    def html(self) -> str | None:
        return self._html

    @property
    def links(self) -> list[str]:
        return list(self._links or [])

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "subject": self.subject,
            "date": _iso(self.date),
            "message_id": self.message_id,
            "received_at": _iso(self.received_at),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "envelope_from": self.mail_from,
            "envelope_to": list(self.rcpt_tos),
            "recipients": self.recipients,
            "headers": [[k, str(v)] for k, v in self.message.items()],
            "text": self.text,
            "html": self.html,
            "links": self.links,
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Handler:
    """aiosmtpd handler: every message is accepted and kept."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else b""
        stored = await self.inbox._store(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        return f"250 2.0.0 Ok: kept as message {stored.id}"


def _accept_any_login(
    server: SMTPProtocol, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=True)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the caller owns Ctrl-C / SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family)


def _url_host(host: str) -> str:
    if host in {"", "0.0.0.0"}:  # noqa: S104 - only to show a reachable address
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Inbox:
    """An SMTP server keeping every message (in memory, and as `.eml` in `folder` if
    given) and a web UI / JSON API over them. Start with `await start()` or `async with`."""

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        max_messages: int = 1000,
        on_message: Callable[[StoredMessage], None] | None = None,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.max_messages = max_messages
        self.on_message = on_message
        #: Received messages, oldest first (at most `max_messages`).
        self.messages: list[StoredMessage] = []
        self.smtp_port = 0
        self.web_url = ""
        self.app = self._make_app()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._smtp_server: asyncio.Server | None = None
        self._smtp_connections: weakref.WeakSet[SMTPProtocol] = weakref.WeakSet()
        self._web: _QuietServer | None = None
        self._web_task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Inbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(
        self,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 0,
        web_host: str = "127.0.0.1",
        web_port: int = 0,
    ) -> None:
        """Listen for SMTP and HTTP (port 0: a free one; see `smtp_port`, `web_url`)."""
        if self._smtp_server is not None:
            raise RuntimeError("inbox already started")
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()

        def make_protocol() -> SMTPProtocol:
            protocol = SMTPProtocol(
                _Handler(self),
                hostname="peopletasks-inbox",
                ident="peopletasks dev inbox",
                enable_SMTPUTF8=True,
                auth_require_tls=False,
                authenticator=_accept_any_login,
                loop=loop,
            )
            self._smtp_connections.add(protocol)
            return protocol

        self._smtp_server = await loop.create_server(make_protocol, host=smtp_host, port=smtp_port)
        self.smtp_port = int(self._smtp_server.sockets[0].getsockname()[1])
        try:
            await self._start_web(web_host, web_port)
        except BaseException:
            await self.stop()
            raise

    async def _start_web(self, host: str, port: int) -> None:
        sock = _listening_socket(host, port)
        bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        self._web = _QuietServer(config)
        self._web_task = asyncio.create_task(self._web.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15.0
        try:
            while not self._web.started:
                if self._web_task.done():
                    self._web_task.result()  # raises what stopped it
                    raise RuntimeError("the inbox web server stopped while starting")
                if loop.time() > deadline:
                    raise TimeoutError("the inbox web server did not start within 15 s")
                await asyncio.sleep(0.01)
        except BaseException:
            sock.close()  # on success uvicorn's server owns (and closes) it
            raise
        self.web_url = f"http://{_url_host(host)}:{bound_port}"

    async def stop(self) -> None:
        """Stop both servers and close their connections (the messages stay readable)."""
        web, task = self._web, self._web_task
        self._web = self._web_task = None
        if web is not None and task is not None:
            web.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10.0)
            except TimeoutError:
                web.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        server, self._smtp_server = self._smtp_server, None
        if server is not None:
            server.close()
            handlers: list[asyncio.Task[None]] = []
            for protocol in list(self._smtp_connections):
                if protocol.transport is not None:
                    protocol.transport.close()
                if protocol._handler_coroutine is not None:
                    protocol._handler_coroutine.cancel()
                    handlers.append(protocol._handler_coroutine)
            if handlers:
                await asyncio.wait(handlers, timeout=5.0)
            await server.wait_closed()

    # --- messages -------------------------------------------------------------------------

    async def _store(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> StoredMessage:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        now = datetime.now(UTC)
        stored = StoredMessage(
            id=str(next(self._ids)),
            received_at=now,
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            raw=raw,
            message=parsed,
        )
        if self.folder is not None:
            path = self.folder / f"{now:%Y%m%dT%H%M%S%f}-{stored.id}.eml"
            await asyncio.to_thread(path.write_bytes, raw)
            stored.path = path
        async with self._changed:
            self.messages.append(stored)
            del self.messages[: max(0, len(self.messages) - self.max_messages)]
            self._changed.notify_all()
        if self.on_message is not None:
            try:
                self.on_message(stored)
            except Exception:  # a broken callback must not refuse the mail
                log.exception("inbox on_message callback failed")
        return stored

    def get(self, message_id: str) -> StoredMessage | None:
        return next((m for m in self.messages if m.id == message_id), None)

    def clear(self) -> None:
        self.messages.clear()

    async def wait_for(
        self, predicate: Callable[[StoredMessage], bool], timeout: float = 10.0
    ) -> StoredMessage:
        """The first message (received already or later) for which `predicate` is true.

        Raises TimeoutError after `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching message within {timeout:g} s "
                        f"({len(self.messages)} received: "
                        + ", ".join(repr(m.subject) for m in self.messages[-5:])
                        + ")"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    # --- web ------------------------------------------------------------------------------

    def _newest_first(self) -> list[StoredMessage]:
        return list(reversed(self.messages))

    def _make_app(self) -> Starlette:
        env = make_environment()

        def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
            body = env.get_template(f"mail/inbox/{template}").render(
                iframe_sandbox=IFRAME_SANDBOX, **context
            )
            return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)

        def not_found(request: Request) -> Response:
            if request.url.path.startswith("/api/"):
                return JSONResponse(
                    {"error": {"code": "not_found", "message": "no such message", "details": []}},
                    status_code=404,
                )
            return page("not_found.html", status=404)

        async def list_page(request: Request) -> Response:
            return page("list.html", messages=self._newest_first())

        async def message_page(request: Request) -> Response:
            message = self.get(request.path_params["id"])
            if message is None:
                return not_found(request)
            return page("message.html", message=message)

        async def raw_message(request: Request) -> Response:
            message = self.get(request.path_params["id"])
            if message is None:
                return not_found(request)
            return Response(
                message.raw,
                media_type="message/rfc822",
                headers={"Content-Disposition": f'attachment; filename="message-{message.id}.eml"'},
            )

        async def api_list(request: Request) -> Response:
            return JSONResponse([m.summary() for m in self._newest_first()])

        async def api_message(request: Request) -> Response:
            message = self.get(request.path_params["id"])
            if message is None:
                return not_found(request)
            return JSONResponse(message.detail())

        async def api_clear(request: Request) -> Response:
            self.clear()
            return Response(status_code=204)

        return Starlette(
            routes=[
                Route("/", list_page),
                Route("/messages/{id}.eml", raw_message),
                Route("/messages/{id}", message_page),
                Route("/api/messages", api_list, methods=["GET"]),
                Route("/api/messages", api_clear, methods=["DELETE"]),
                Route("/api/messages/{id}", api_message),
            ]
        )


async def serve_inbox(
    smtp_port: int = 1025,
    web_port: int = 8025,
    folder: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
) -> None:
    """Run the development inbox until cancelled; print where it listens and each arrival."""

    def announce(message: StoredMessage) -> None:
        print(
            f"  received #{message.id}: {message.subject!r} to {message.to} "
            f"({len(message.links)} links) {inbox.web_url}/messages/{message.id}",
            flush=True,
        )

    inbox = Inbox(folder, on_message=announce)
    await inbox.start(smtp_host=host, smtp_port=smtp_port, web_host=host, web_port=web_port)
    try:
        print(f"peopletasks inbox: SMTP on {_url_host(host)}:{inbox.smtp_port} (no TLS, any login)")
        print(
            f"peopletasks inbox: web UI at {inbox.web_url}/  (JSON: {inbox.web_url}/api/messages)"
        )
        if folder is not None:
            print(f"peopletasks inbox: saving .eml files in {folder}")
        print(
            f"send to it with PEOPLETASKS_SMTP_HOST={_url_host(host).strip('[]')} "
            f"PEOPLETASKS_SMTP_PORT={inbox.smtp_port} PEOPLETASKS_SMTP_TLS=none",
            flush=True,
        )
        sys.stdout.flush()
        await asyncio.Event().wait()
    finally:
        await inbox.stop()
