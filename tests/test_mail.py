"""The approval mails: rendered from a realistic task, parsed back, and sent through
real aiosmtpd servers (plain, STARTTLS + AUTH, flaky, refusing)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from peopletasks.mail import (
    Branding,
    MailDeliveryError,
    Mailer,
    SmtpConfig,
    render_approval_request,
    render_requester_copy,
    send_message,
)

APPROVE = "https://tasks.example.com/people-task/act/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEf"
REJECT = "https://tasks.example.com/people-task/act/ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210_-ZyXwVu"
PAGE = "https://tasks.example.com/people-task/tasks/65f1c0ffee0123456789abcd/view"
NOW = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
SENDER = "Acme Approvals <approvals@acme.example>"

TASK: dict[str, Any] = {
    "id": "65f1c0ffee0123456789abcd",
    "title": "Vacation 1-5 Dec",
    "description": (
        "Dana asks for **5 days** off.\n\n"
        "- Mon 1 Dec to Fri 5 Dec\n- Handover: [wiki](https://wiki.acme.example/handover)\n\n"
        "<script>alert('pwned')</script> <b>not bold</b>"
    ),
    "requester": "dana@acme.example",
    "approver": "lead@acme.example",
    "status": "pending",
    "decisionBy": "2026-12-01T17:00:00Z",
    "createdAt": "2026-11-27T09:15:00Z",
}


def parse(message: EmailMessage) -> EmailMessage:
    """What a receiver gets: the message as bytes, parsed again."""
    parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert isinstance(text, str) and isinstance(html, str)
    return text, html


class Anchors(HTMLParser):
    """(href, visible text) of every <a>, and the tags seen."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._href: str | None = None
        self._text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append((self._href, "".join(self._text).strip()))
            self._href = None


def approval(**overrides: Any) -> EmailMessage:
    kwargs: dict[str, Any] = {
        "approve_url": APPROVE,
        "reject_url": REJECT,
        "page_url": PAGE,
        "branding": Branding(),
        "sender": SENDER,
        "to": "Lee Lead <lead@acme.example>",
        "now": NOW,
    }
    kwargs.update(overrides)
    task = kwargs.pop("task", TASK)
    return render_approval_request(task, **kwargs)


# --- rendering -----------------------------------------------------------------------------


def test_the_approval_mail_has_a_text_and_an_html_part_with_both_links() -> None:
    message = parse(approval())
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)

    anchors = Anchors(html).anchors
    assert (APPROVE, "Approve") in anchors
    assert (REJECT, "Reject") in anchors
    assert (PAGE, "view the request") in anchors
    assert APPROVE in text and REJECT in text and PAGE in text
    # Full URLs, each on a line of its own, so that every client makes them clickable.
    assert APPROVE in text.splitlines() and REJECT in text.splitlines()


def test_the_buttons_are_bulletproof_tables_in_an_accessible_600px_layout() -> None:
    _, html = parts(parse(approval()))
    parser = Anchors(html)
    tags = parser.tags
    assert ("html", {"lang": "en"}) in [(t, {"lang": a.get("lang")}) for t, a in tags]
    tables = [a for t, a in tags if t == "table"]
    assert tables and all(a.get("role") == "presentation" for a in tables)
    assert "max-width:600px" in html
    assert 'name="color-scheme" content="light dark"' in html
    # Each button: a cell painted with the colour (bgcolor for Outlook) around a styled link.
    for url, colour in ((APPROVE, "#2457d6"), (REJECT, "#b42318")):
        index = next(i for i, (t, a) in enumerate(tags) if t == "a" and a.get("href") == url)
        cell_tag, cell = tags[index - 1]
        assert cell_tag == "td" and cell.get("bgcolor") == colour
        style = tags[index][1].get("style") or ""
        assert "display:inline-block" in style and "padding:" in style
    # No image is needed to read or use the mail.
    assert not [a for t, a in tags if t == "img"]


def test_the_details_are_shown_with_a_readable_deadline() -> None:
    text, html = parts(parse(approval()))
    for body in (text, html):
        assert "Vacation 1-5 Dec" in body
        assert "dana@acme.example" in body
        assert "lead@acme.example" in body
        assert "Tue 1 Dec 2026, 17:00 UTC (in 3 days)" in body

    no_deadline = parse(approval(task={**TASK, "decisionBy": None}))
    text, html = parts(no_deadline)
    assert "no deadline" in text and "no deadline" in html

    overdue = parse(approval(now=datetime(2026, 12, 1, 19, 0, tzinfo=UTC)))
    assert "(2 hours ago)" in parts(overdue)[0]


def test_the_description_is_markdown_and_its_html_is_escaped() -> None:
    text, html = parts(parse(approval()))
    assert "<strong>5 days</strong>" in html
    assert '<a href="https://wiki.acme.example/handover">wiki</a>' in html
    assert "<li>Mon 1 Dec to Fri 5 Dec</li>" in html
    # Raw HTML in the description stays text.
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "<b>not bold</b>" not in html
    assert "script" not in [t for t, _ in Anchors(html).tags]
    # The text part keeps the Markdown source as it is.
    assert "Dana asks for **5 days** off." in text


def test_unsafe_links_in_the_description_are_not_rendered_as_links() -> None:
    task = {**TASK, "description": "[click](javascript:alert(1)) and [data](data:text/html,x)"}
    _, html = parts(parse(approval(task=task)))
    hrefs = [a.get("href") or "" for t, a in Anchors(html).tags if t == "a"]
    assert not [h for h in hrefs if h.lower().startswith(("javascript:", "data:"))]


def test_headers_subject_sender_reply_to_and_ids() -> None:
    message = parse(approval(reply_to="help@acme.example"))
    assert message["Subject"] == "Approval needed: Vacation 1-5 Dec"
    assert message["From"] == SENDER
    assert message["To"] == "Lee Lead <lead@acme.example>"
    assert message["Reply-To"] == "help@acme.example"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-PeopleTasks-Task-Id"] == TASK["id"]
    assert email.utils.parsedate_to_datetime(str(message["Date"])) == NOW
    assert str(message["Message-ID"]).startswith(f"<task-{TASK['id']}.approval.")
    assert str(message["Message-ID"]).endswith("@acme.example>")

    custom = parse(approval(subject="Please decide: vacation"))
    assert custom["Subject"] == "Please decide: vacation"
    assert custom["Reply-To"] is None

    # A title with line breaks cannot add headers.
    sneaky = parse(approval(task={**TASK, "title": "Hi\r\nBcc: everyone@acme.example"}))
    assert sneaky["Bcc"] is None
    assert sneaky["Subject"] == "Approval needed: Hi Bcc: everyone@acme.example"


def test_the_message_id_is_stable_per_task_kind_and_recipient() -> None:
    first = approval()["Message-ID"]
    again = approval(now=NOW + timedelta(minutes=5), to="lead@ACME.example")["Message-ID"]
    other = approval(to="deputy@acme.example")["Message-ID"]
    copy = render_requester_copy(TASK, sender=SENDER, to="lead@acme.example", now=NOW)
    other_task = approval(task={**TASK, "id": "65f1c0ffee0123456789ffff"})["Message-ID"]
    assert first == again
    assert len({first, other, copy["Message-ID"], other_task}) == 4


def test_branding_is_honoured() -> None:
    brand = Branding(
        product_name="Acme Flows",
        accent_color="#f5c400",
        logo_url="https://cdn.acme.example/logo.png",
        footer="Acme Inc., 1 Road, Springfield",
    )
    text, html = parts(parse(approval(branding=brand)))
    assert "Acme Inc., 1 Road, Springfield" in text and "Acme Inc., 1 Road, Springfield" in html
    assert "Acme Flows" in text
    images = [a for t, a in Anchors(html).tags if t == "img"]
    assert images == [images[0]] and images[0]["src"] == "https://cdn.acme.example/logo.png"
    assert images[0]["alt"] == "Acme Flows"  # with images off, the name shows
    assert 'bgcolor="#f5c400"' in html
    # Dark text on a light accent colour.
    approve_style = next(a for t, a in Anchors(html).tags if t == "a" and a["href"] == APPROVE)
    assert "color:#111111" in (approve_style["style"] or "")

    with pytest.raises(ValueError, match="accent_color"):
        Branding(accent_color="red;background:url(https://evil.example)")


def test_branding_from_the_environment() -> None:
    brand = Branding.from_env(
        {
            "PEOPLETASKS_BRAND_NAME": "Acme Flows",
            "PEOPLETASKS_BRAND_COLOR": "#123456",
            "PEOPLETASKS_BRAND_LOGO_URL": "https://cdn.acme.example/logo.png",
            "PEOPLETASKS_BRAND_FOOTER": "Acme Inc.",
        }
    )
    assert brand == Branding(
        product_name="Acme Flows",
        accent_color="#123456",
        logo_url="https://cdn.acme.example/logo.png",
        footer="Acme Inc.",
    )
    assert Branding.from_env({}) == Branding()
    with pytest.raises(ValueError, match="PEOPLETASKS_BRAND_COLOR"):
        Branding.from_env({"PEOPLETASKS_BRAND_COLOR": "blue"})


def test_the_requester_copy_has_the_details_and_no_action_links() -> None:
    message = parse(
        render_requester_copy(
            TASK, sender=SENDER, to="dana@acme.example", branding=Branding(), now=NOW
        )
    )
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Approval requested: Vacation 1-5 Dec"
    assert str(message["Message-ID"]).startswith(f"<task-{TASK['id']}.copy.")
    text, html = parts(message)
    raw = bytes(message).decode()
    for url in (APPROVE, REJECT, "/people-task/act/"):
        assert url not in raw and url not in text and url not in html
    assert "We asked lead@acme.example to decide by Tue 1 Dec 2026, 17:00 UTC (in 3 days)" in text
    assert "lead@acme.example" in html and "<strong>5 days</strong>" in html
    assert not [text for _, text in Anchors(html).anchors if text in {"Approve", "Reject"}]


def test_an_override_folder_replaces_single_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "approval_request.txt").write_text(
        "Custom text for {{ task.title }}: yes {{ approve_url }} / no {{ reject_url }}\n"
    )
    text, html = parts(parse(approval(templates_dir=tmp_path)))
    assert text.strip() == f"Custom text for Vacation 1-5 Dec: yes {APPROVE} / no {REJECT}"
    assert (APPROVE, "Approve") in Anchors(html).anchors  # the HTML is still ours

    monkeypatch.setenv("PEOPLETASKS_TEMPLATES_DIR", str(tmp_path))
    assert parts(parse(approval()))[0].startswith("Custom text for Vacation 1-5 Dec")
    monkeypatch.delenv("PEOPLETASKS_TEMPLATES_DIR")
    assert parts(parse(approval()))[0].startswith("Vacation 1-5 Dec")


def test_bad_input_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="approve_url"):
        approval(approve_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="title"):
        approval(task={**TASK, "title": ""})
    with pytest.raises(ValueError, match="to must be one e-mail address"):
        approval(to="a@x.example, b@x.example")


# --- configuration -------------------------------------------------------------------------


def test_smtp_config_from_the_environment() -> None:
    local = SmtpConfig.from_env({})
    assert (local.host, local.port, local.tls, local.username) == ("localhost", 25, "none", None)
    remote = SmtpConfig.from_env(
        {
            "PEOPLETASKS_SMTP_HOST": "smtp.acme.example",
            "PEOPLETASKS_SMTP_USERNAME": "flows",
            "PEOPLETASKS_SMTP_PASSWORD": "s3cret",
            "PEOPLETASKS_SMTP_FROM": SENDER,
            "PEOPLETASKS_SMTP_REPLY_TO": "help@acme.example",
        }
    )
    assert (remote.tls, remote.port) == ("starttls", 587)
    assert (remote.username, remote.sender) == ("flows", SENDER)
    assert remote.password is not None and remote.password.get_secret_value() == "s3cret"
    assert remote.reply_to == "help@acme.example"
    assert "s3cret" not in repr(remote)
    assert "s3cret" not in str(remote)
    implicit = SmtpConfig.from_env(
        {"PEOPLETASKS_SMTP_HOST": "x.example", "PEOPLETASKS_SMTP_TLS": "tls"}
    )
    assert implicit.port == 465
    with pytest.raises(ValueError, match="PEOPLETASKS_SMTP_TLS"):
        SmtpConfig.from_env({"PEOPLETASKS_SMTP_TLS": "maybe"})
    with pytest.raises(ValueError, match="PEOPLETASKS_SMTP_PORT"):
        SmtpConfig.from_env({"PEOPLETASKS_SMTP_PORT": "smtp"})
    with pytest.raises(ValueError, match="PEOPLETASKS_SMTP_TIMEOUT"):
        SmtpConfig.from_env({"PEOPLETASKS_SMTP_TIMEOUT": "-1"})
    # One declaration, three forms: the constructor picks TLS by host as the environment does.
    assert SmtpConfig(host="smtp.acme.example").tls == "starttls"
    assert SmtpConfig(host="127.0.0.1").tls == "none"
    assert SmtpConfig(host="x.example", tls="ssl").port == 465


# --- real SMTP servers ---------------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps what it is sent and answers from a script."""

    def __init__(
        self, *, data_answers: list[str] | None = None, rcpt_answer: str = "250 2.1.5 OK"
    ) -> None:
        self.data_answers = list(data_answers or [])
        self.rcpt_answer = rcpt_answer
        self.rcpt_calls = 0
        self.data_calls = 0
        self.peers: set[Any] = set()
        self.received: list[EmailMessage] = []
        self.sessions: list[tuple[bool, bool]] = []  # (over TLS, authenticated)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.peers.add(session.peer)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_calls += 1
        if self.rcpt_answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.data_answers:
            answer = self.data_answers.pop(0)
            if not answer.startswith("250"):
                return answer
        assert envelope.original_content is not None
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        self.sessions.append((session.ssl is not None, bool(session.authenticated)))
        return "250 2.0.0 OK: queued"


class SmtpServer:
    """A real aiosmtpd server on 127.0.0.1 (free port), in the running loop."""

    def __init__(self, handler: Recorder, **smtp_options: Any) -> None:
        self.handler = handler
        self.options = smtp_options
        self.connections = 0
        self.protocols: list[SMTP] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> SmtpServer:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            self.connections += 1
            protocol = SMTP(self.handler, hostname="mx.test", loop=loop, **self.options)
            self.protocols.append(protocol)
            return protocol

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def drop_connections(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_connections()
        tasks = [p._handler_coroutine for p in self.protocols if p._handler_coroutine]
        for task in tasks:
            task.cancel()  # a session whose TLS handshake failed never sees connection_lost
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()


@asynccontextmanager
async def smtp_server(handler: Recorder, **options: Any) -> AsyncIterator[SmtpServer]:
    server = await SmtpServer(handler, **options).start()
    try:
        yield server
    finally:
        await server.stop()


def plain_config(port: int, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "sender": SENDER,
        "local_hostname": "worker.test",
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmtpConfig(**values)


FAST_RETRIES = (0.01, 0.02, 0.04)


def approvals(count: int) -> list[EmailMessage]:
    return [
        approval(task={**TASK, "id": f"65f1c0ffee0123456789{i:04x}"}, to=f"lead{i}@acme.example")
        for i in range(count)
    ]


async def test_many_messages_go_over_one_connection() -> None:
    handler = Recorder()
    async with smtp_server(handler) as server:
        messages = approvals(25)
        config = plain_config(server.port)
        async with Mailer(config, retry_delays=FAST_RETRIES, connections=1) as mailer:
            first = await mailer.send(messages[0])
            rest = await mailer.send_many(messages[1:])
            assert mailer.connections_opened == 1
        assert server.connections == 1 and len(handler.peers) == 1
        assert [d.attempts for d in [first, *rest]] == [1] * 25
        assert [str(m["Message-ID"]) for m in handler.received] == [
            str(m["Message-ID"]) for m in messages
        ]
        assert first.recipients == ("lead0@acme.example",) and "queued" in first.response
        text, html = parts(handler.received[0])
        assert APPROVE in text and APPROVE in html


async def test_a_pool_of_connections_each_reused_for_many_messages() -> None:
    handler = Recorder()
    async with smtp_server(handler) as server:
        messages = approvals(40)
        config = plain_config(server.port)
        async with Mailer(config, retry_delays=FAST_RETRIES, connections=4) as mailer:
            deliveries = await mailer.send_many(messages)
            assert mailer.connections_opened == 4 and mailer.connected
            # Concurrent sends from several tasks share the same pool.
            more = approvals(44)[40:]
            extra = await asyncio.gather(*(mailer.send(m) for m in more))
            assert mailer.connections_opened == 4
        assert not mailer.connected
        assert server.connections == 4 and len(handler.peers) == 4
        # Results in input order; every message arrived once (in whatever order).
        sent_ids = [str(m["Message-ID"]) for m in [*messages, *more]]
        assert [d.message_id for d in [*deliveries, *extra]] == sent_ids
        assert [d.recipients for d in deliveries] == [(f"lead{i}@acme.example",) for i in range(40)]
        assert all(d.attempts == 1 for d in [*deliveries, *extra])
        assert sorted(str(m["Message-ID"]) for m in handler.received) == sorted(sent_ids)
    with pytest.raises(ValueError, match="connections"):
        Mailer(plain_config(25), connections=0)
    with pytest.raises(ValueError, match="connections"):
        Mailer(plain_config(25), connections=65)


class RefusingOne(Recorder):
    """Refuses one recipient for good, accepts the others."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == self.refused:
            self.rcpt_calls += 1
            return "550 5.1.1 no such user here"
        return await super().handle_RCPT(server, session, envelope, address, options)


async def test_a_pool_keeps_failures_in_their_place() -> None:
    handler = RefusingOne("lead5@acme.example")
    async with smtp_server(handler) as server:
        messages = approvals(16)
        config = plain_config(server.port)
        async with Mailer(config, retry_delays=FAST_RETRIES, connections=4) as mailer:
            results = await mailer.send_many(messages, return_exceptions=True)
            with pytest.raises(MailDeliveryError) as failed:
                await mailer.send_many(messages)
        assert server.connections == 4
    assert [isinstance(r, MailDeliveryError) for r in results] == [i == 5 for i in range(16)]
    error = results[5]
    assert isinstance(error, MailDeliveryError) and error.permanent and error.code == 550
    assert failed.value.recipients == ("lead5@acme.example",)
    # The second batch stopped at the failure: messages not yet started were not sent.
    assert 15 + 5 <= len(handler.received) < 15 + 15


async def test_a_dropped_connection_is_reopened() -> None:
    handler = Recorder()
    async with smtp_server(handler) as server:
        one, two = approvals(2)
        async with Mailer(plain_config(server.port), retry_delays=FAST_RETRIES) as mailer:
            await mailer.send(one)
            server.drop_connections()  # as a server's idle timeout would
            delivery = await mailer.send(two)
            assert mailer.connections_opened == 2
        assert delivery.attempts == 1
        assert server.connections == 2 and len(handler.received) == 2


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost / 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_server_options(cert: Path, key: Path) -> dict[str, Any]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"flows",
            b"s3cret",
        )
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535

    return {
        "tls_context": context,
        "require_starttls": True,
        "auth_required": True,
        "auth_require_tls": True,
        "authenticator": authenticator,
    }


async def test_starttls_and_auth(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    handler = Recorder()
    async with smtp_server(handler, **tls_server_options(cert, key)) as server:
        config = plain_config(
            server.port, tls="starttls", username="flows", password="s3cret", cafile=str(cert)
        )
        async with Mailer(config, retry_delays=FAST_RETRIES) as mailer:
            deliveries = await mailer.send_many(approvals(5))
        assert len(deliveries) == 5 and server.connections == 1
        assert handler.sessions == [(True, True)] * 5

        # A wrong password is permanent: no retry.
        wrong = plain_config(
            server.port, tls="starttls", username="flows", password="nope", cafile=str(cert)
        )
        with pytest.raises(MailDeliveryError) as failed:
            async with Mailer(wrong, retry_delays=FAST_RETRIES) as mailer:
                await mailer.send(approval())
        assert failed.value.code == 535 and failed.value.permanent and failed.value.attempts == 1

        # A certificate nobody vouches for is refused (no cafile, validation on): permanent.
        untrusted = plain_config(server.port, tls="starttls", username="flows", password="s3cret")
        with pytest.raises(MailDeliveryError, match="TLS") as failed:
            async with Mailer(untrusted, retry_delays=FAST_RETRIES) as mailer:
                await mailer.send(approval())
        assert failed.value.permanent and failed.value.attempts == 1
        assert len(handler.received) == 5


async def test_transient_answers_are_retried_until_delivered() -> None:
    handler = Recorder(
        data_answers=["451 4.3.0 try again later", "451 4.3.0 try again later", "250 OK"]
    )
    async with smtp_server(handler) as server:
        async with Mailer(plain_config(server.port), retry_delays=FAST_RETRIES) as mailer:
            delivery = await mailer.send(approval())
        assert delivery.attempts == 3
        assert handler.data_calls == 3 and len(handler.received) == 1
        assert server.connections == 1  # a 4xx answer leaves the connection usable


async def test_transient_failures_give_up_after_the_retries() -> None:
    handler = Recorder(data_answers=["452 4.3.1 mailbox full"] * 10)
    async with smtp_server(handler) as server:
        with pytest.raises(MailDeliveryError) as failed:
            async with Mailer(plain_config(server.port), retry_delays=FAST_RETRIES) as mailer:
                await mailer.send(approval())
    error = failed.value
    assert (error.code, error.permanent, error.attempts) == (452, False, 4)
    assert handler.data_calls == 4
    assert "lead@acme.example" in str(error) and "452" in str(error)
    assert "gave up after 4 attempts" in str(error)


@pytest.mark.parametrize(
    ("where", "answer"),
    [("rcpt", "550 5.1.1 no such user here"), ("data", "554 5.7.1 message refused as spam")],
)
async def test_permanent_refusals_are_not_retried(where: str, answer: str) -> None:
    handler = (
        Recorder(rcpt_answer=answer) if where == "rcpt" else Recorder(data_answers=[answer] * 5)
    )
    async with smtp_server(handler) as server:
        with pytest.raises(MailDeliveryError) as failed:
            async with Mailer(plain_config(server.port), retry_delays=FAST_RETRIES) as mailer:
                await mailer.send(approval())
    error = failed.value
    code = int(answer[:3])
    assert (error.code, error.permanent, error.attempts) == (code, True, 1)
    assert error.recipients == ("lead@acme.example",)
    assert error.message_id == approval()["Message-ID"]
    assert "lead@acme.example" in str(error) and str(code) in str(error)
    assert answer[4:] in str(error)
    assert (handler.rcpt_calls if where == "rcpt" else handler.data_calls) == 1


async def test_an_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MailDeliveryError) as failed:
        async with Mailer(plain_config(port), retry_delays=FAST_RETRIES) as mailer:
            await mailer.send(approval())
    assert failed.value.code is None and not failed.value.permanent
    assert failed.value.attempts == 4 and f"127.0.0.1:{port}" in str(failed.value)


@contextmanager
def server_in_a_thread(handler: Recorder) -> Iterator[int]:
    """An aiosmtpd server on a loop of its own (for code that runs asyncio.run)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> SmtpServer:
        return await SmtpServer(handler).start()

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_send_message_for_synchronous_callers() -> None:
    handler = Recorder()
    with server_in_a_thread(handler) as port:
        delivery = send_message(plain_config(port), approval())
    assert delivery.attempts == 1
    assert [str(m["Message-ID"]) for m in handler.received] == [str(approval()["Message-ID"])]


async def test_send_message_refuses_to_run_inside_a_loop() -> None:
    with pytest.raises(RuntimeError, match="Mailer"):
        send_message(plain_config(25), approval())


async def test_open_connects_ahead_and_the_sends_reuse_those_connections() -> None:
    """Ahead of a burst (the service's reminders), the pool opens its connections at
    once; the sends that follow pay for no connection, TLS or login."""
    handler = Recorder()
    async with (
        smtp_server(handler) as server,
        Mailer(plain_config(server.port), connections=4) as mailer,
    ):
        assert await mailer.open() == 4
        assert server.connections == 4 and mailer.connections_opened == 4
        await mailer.send_many(approvals(16))
        assert len(handler.received) == 16
        assert mailer.connections_opened == 4 and server.connections == 4
        assert await mailer.open() == 0  # nothing left to open


async def test_open_leaves_an_unreachable_server_to_the_sends() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with Mailer(plain_config(port), connections=2) as mailer:
        assert await mailer.open() == 0
