"""The SSRF-safe webhook sender, against real HTTP(S) receivers on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peopletasks.errors import ValidationFailed
from peopletasks.webhooks.http import HTTPTransport
from peopletasks.webhooks.sender import Sender
from peopletasks.webhooks.targets import (
    TargetRefused,
    check_target_resolves,
    check_target_url,
    is_public_address,
    normalise_url,
    resolve_public,
)
from peopletasks.webhooks.transport import Request, SendError, SendTimeout, UnsendableRequest


def wire(*, body_cap: int = 4096, **options: Any) -> Sender:
    """A sender over the service's own transport (real sockets, the SSRF checks)."""
    return Sender(HTTPTransport(**options), body_cap=body_cap)


# --- a real receiver --------------------------------------------------------------------------

#: Answers one request: gets the handler (path, headers, body already read) and the receiver.
Behaviour = Callable[["_Handler", "Receiver"], None]


def answer_ok(handler: _Handler, receiver: Receiver) -> None:
    handler.reply(200, b"ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Runs in the accept loop, once per TCP connection, before any byte is read.
        with self.receiver.changed:
            self.receiver.connections += 1
            self.receiver.changed.notify_all()
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hung up early (capped reads, timeouts): expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        receiver = self.server.receiver
        with receiver.changed:
            receiver.paths.append(self.path)
            receiver.changed.notify_all()
        receiver.behaviour(self, receiver)

    do_GET = do_POST = _handle


class Receiver:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.changed = threading.Condition()
        self.connections = 0
        self.paths: list[str] = []
        self.release = threading.Event()  # lets slow behaviours finish at teardown
        self.port = 0
        self.sni: list[str | None] = []

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout=timeout)


@contextmanager
def running_receiver(
    behaviour: Behaviour = answer_ok, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    receiver = Receiver(behaviour)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = receiver
    if tls is not None:

        def remember_sni(sock: Any, name: str | None, ctx: Any) -> None:
            receiver.sni.append(name)

        tls.sni_callback = remember_sni
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def prove_nothing_arrived(receiver: Receiver) -> None:
    """A barrier: one allowed request; the accept loop is serial, so any earlier
    connection would have been counted before it."""
    async with wire(allow_private=True) as sender:
        reply = await sender.post(f"http://127.0.0.1:{receiver.port}/marker", b"m")
    assert reply.status == 200
    assert receiver.paths == ["/marker"]
    assert receiver.connections == 1


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("2002:7f00:1::1", False),
        ("::127.0.0.1", False),
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://example.com/x", "http"),
        ("file:///etc/passwd", "http"),
        ("http:///path-only", "host"),
        ("http://", "host"),
        ("https://user:secret@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("https://@example.com/", "user name or password"),
        ("http://example.com:99999/", "port"),
        ("http://example.com:0/", "port"),
        ("http://example.com:http/", "port"),
        ("http://example.com:+80/", "port"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/a b", "whitespace"),
        ("http://example.com/\n", "whitespace"),
        ("http://example.com/\x00", "control"),
        ("http://evil.example\\@good.example/", "backslash"),
        ("http://example.com/" + "a" * 2000, "2000"),
    ],
)
def test_check_target_url_refuses(url: str, complaint: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_target_url(url)
    assert caught.value.details[0]["field"] == "url"
    assert complaint in caught.value.details[0]["message"]


def test_check_target_url_cleans() -> None:
    assert check_target_url("HTTPS://Hooks.Example.COM:8443/in?x=1") == (
        "https://hooks.example.com:8443/in?x=1"
    )
    assert check_target_url("http://[::1]:8080/x") == "http://[::1]:8080/x"


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("http://host/café?q=ü", "http://host/caf%C3%A9?q=%C3%BC"),
        ("https://Bücher.Example/x", "https://xn--bcher-kva.example/x"),
        (
            "http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",
            "http://example.com/",
        ),  # full-width
        ("http://Straße.de/", "http://xn--strae-oqa.de/"),  # non-transitional, as WHATWG
        ('http://h/a"<>`{}|^?x="<>`{}|^\'', "http://h/a%22%3C%3E%60%7B%7D|%5E?x=%22%3C%3E`{}|^%27"),
        ("http://h/%C3%A9/é/%zz", "http://h/%C3%A9/%C3%A9/%zz"),  # %XX kept, not doubled
        ("http://h/a/b/../%2e%2E/c/./d/.", "http://h/c/d/"),
        ("http://h:80?x", "http://h/?x"),
        ("https://h:8443/p#frag ment", "https://h:8443/p#frag%20ment"),
    ],
)
def test_urls_are_stored_as_whatwg_serialises_them(url: str, stored: str) -> None:
    assert normalise_url(url) == stored
    assert ada_url.URL(url).href == stored  # the WHATWG parser agrees
    assert normalise_url(stored) == stored
    if " " not in url:
        assert check_target_url(url) == stored


_URL_PIECES = ["/.", "/..", "/./", "//", "%2e", "%2E", ".", "..", "%41", "%zz", "%", "é", "ü"]
_URL_PIECES += ["日本", "\u00a0", "😀", *"abcXYZ09-._~!$&'()*+,;=:@/?#[]^`{}|\"<>"]


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.sampled_from(
        ["h", "Example.COM", "bücher.example", "BÜCHER.example:8443", "日本.jp", "h:80", "[::1]"]
    ),
    pieces=st.lists(st.sampled_from(_URL_PIECES), max_size=12),
)
def test_normalised_urls_match_the_whatwg_parser(scheme: str, host: str, pieces: list[str]) -> None:
    url = f"{scheme}://{host}/" + "".join(pieces)
    assert normalise_url(url) == ada_url.URL(url).href


def test_check_target_url_refuses_hosts_without_an_idna_form() -> None:
    with pytest.raises(ValidationFailed, match="invalid host name"):
        check_target_url("http://exa¡mple.test/")


def test_the_length_limit_holds_once_percent_encoded() -> None:
    with pytest.raises(ValidationFailed, match="once percent-encoded"):
        check_target_url("http://example.com/" + "é" * 700)


async def test_check_target_resolves_refuses_private_literal() -> None:
    with pytest.raises(ValidationFailed) as caught:
        await check_target_resolves("http://10.1.2.3/x", allow_private=False)
    assert caught.value.details[0]["field"] == "url"
    assert "10.1.2.3" in caught.value.message
    assert "private" in caught.value.message


async def test_check_target_resolves_allow_private_does_not_resolve() -> None:
    # The name cannot resolve (there is no DNS here, and .invalid never resolves):
    # resolving would refuse it, so returning proves nothing was resolved.
    with pytest.raises(ValidationFailed, match="cannot resolve"):
        await check_target_resolves("http://does-not-exist.invalid/", allow_private=False)
    await check_target_resolves("http://does-not-exist.invalid/", allow_private=True)


async def test_resolve_public() -> None:
    assert await resolve_public("127.0.0.1", 80, allow_private=True) == ["127.0.0.1"]
    with pytest.raises(TargetRefused, match=r"localhost resolves to 127\.0\.0\.1, a loopback"):
        await resolve_public("localhost", 80, allow_private=False)
    with pytest.raises(TargetRefused, match="PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS=true"):
        await resolve_public("::ffff:192.168.0.1", 80, allow_private=False)


# --- the sender -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_target_refused_before_any_byte(host: str) -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=False) as sender:
            with pytest.raises(TargetRefused) as caught:
                await sender.post(f"http://{host}:{receiver.port}/hook", b"{}")
        assert "loopback" in str(caught.value)
        assert "PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS=true" in str(caught.value)
        await prove_nothing_arrived(receiver)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_target_allowed(host: str) -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            reply = await sender.post(f"http://{host}:{receiver.port}/hook?x=1", b"{}")
        assert reply.status == 200
        assert reply.body == b"ok"
        assert receiver.paths == ["/hook?x=1"]


async def test_refused_is_told_from_down() -> None:
    with running_receiver() as receiver:
        port = receiver.port
    # The receiver is gone: its port now refuses connections.
    async with wire(allow_private=True) as sender:
        with pytest.raises(SendError) as caught:
            await sender.post(f"http://127.0.0.1:{port}/gone", b"")
    assert not isinstance(caught.value, TargetRefused)
    assert f"cannot connect to 127.0.0.1 port {port}" in str(caught.value)


async def test_connections_are_kept_and_reused() -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            for i in range(20):
                reply = await sender.post(f"http://127.0.0.1:{receiver.port}/n{i}", b"{}")
                assert reply.status == 200
        assert len(receiver.paths) == 20
        assert receiver.connections == 1


def close_after_answer(handler: _Handler, receiver: Receiver) -> None:
    handler.close_connection = True
    handler.reply(200, b"bye", {"Connection": "close"})


async def test_a_connection_the_receiver_closed_is_replaced() -> None:
    with running_receiver(close_after_answer) as receiver:
        async with wire(allow_private=True) as sender:
            for i in range(3):
                reply = await sender.post(f"http://127.0.0.1:{receiver.port}/c{i}", b"{}")
                assert (reply.status, reply.body) == (200, b"bye")
        assert receiver.paths == ["/c0", "/c1", "/c2"]  # each sent once
        assert receiver.connections == 3


def close_silently(handler: _Handler, receiver: Receiver) -> None:
    handler.close_connection = True  # no "Connection: close": the sender finds out later
    handler.reply(200, b"bye")


async def test_a_pooled_connection_closed_while_idle_is_replaced() -> None:
    with running_receiver(close_silently) as receiver:
        async with wire(allow_private=True) as sender:
            for i in range(3):
                url = f"http://127.0.0.1:{receiver.port}/s{i}"
                assert (await sender.post(url, b"{}")).status == 200
                assert receiver.wait_for(lambda n=i + 1: receiver.connections == n)
        assert receiver.paths == ["/s0", "/s1", "/s2"]  # each sent once, none lost
        assert receiver.connections == 3


async def test_proxies_from_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # the discard port: nothing answers
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            reply = await sender.post(f"http://127.0.0.1:{receiver.port}/direct", b"")
        assert reply.status == 200
        assert receiver.paths == ["/direct"]


def redirect_to_target(handler: _Handler, receiver: Receiver) -> None:
    if handler.path == "/start":
        handler.reply(302, b"", {"Location": "/target"})
    else:
        handler.reply(200, b"followed")


async def test_redirect_is_returned_not_followed() -> None:
    with running_receiver(redirect_to_target) as receiver:
        async with wire(allow_private=True) as sender:
            reply = await sender.post(f"http://127.0.0.1:{receiver.port}/start", b"x")
        assert reply.status == 302
        assert reply.headers["location"] == "/target"
        # Had it been followed, /target would have been requested before post() returned.
        assert receiver.paths == ["/start"]


def retry_later(handler: _Handler, receiver: Receiver) -> None:
    handler.reply(503, b"busy", {"Retry-After": "7"})


async def test_status_headers_and_body_of_an_error_answer() -> None:
    with running_receiver(retry_later) as receiver:
        async with wire(allow_private=True) as sender:
            reply = await sender.post(f"http://127.0.0.1:{receiver.port}/busy", b"x")
    assert (reply.status, reply.headers["retry-after"], reply.body) == (503, "7", b"busy")


ONE_MB = 1024 * 1024


def big_body(handler: _Handler, receiver: Receiver) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(ONE_MB))
    handler.end_headers()
    chunk = b"x" * 65536
    for _ in range(ONE_MB // len(chunk)):
        handler.wfile.write(chunk)


async def test_answers_are_read_up_to_the_cap_only() -> None:
    with running_receiver(big_body) as receiver:
        async with wire(allow_private=True, body_cap=4096) as sender:
            reply = await sender.post(f"http://127.0.0.1:{receiver.port}/big", b"{}")
            assert reply.status == 200
            assert len(reply.body) == 4096
            assert set(reply.body) == {ord("x")}
            # The rest was not read: that connection is dropped, the next one is new.
            again = await sender.post(f"http://127.0.0.1:{receiver.port}/big", b"{}")
            assert len(again.body) == 4096
        assert receiver.connections == 2


def slow(handler: _Handler, receiver: Receiver) -> None:
    receiver.release.wait(timeout=30)
    handler.reply(200, b"late")


async def test_slow_receiver_times_out() -> None:
    with running_receiver(slow) as receiver:
        async with wire(allow_private=True, timeout=0.5, connect_timeout=0.5) as sender:
            started = time.monotonic()
            with pytest.raises(SendTimeout):
                await sender.post(f"http://127.0.0.1:{receiver.port}/slow", b"{}")
            elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 1.0
        assert receiver.wait_for(lambda: receiver.paths == ["/slow"])


async def test_header_injection_is_refused() -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            with pytest.raises(UnsendableRequest, match="line break"):
                await sender.post(
                    f"http://127.0.0.1:{receiver.port}/x", b"", {"x-a": "1\r\nx-b: 2"}
                )
            with pytest.raises(UnsendableRequest, match="not Latin-1"):
                await sender.post(f"http://127.0.0.1:{receiver.port}/x", b"", {"x-a": "ключ"})
        await prove_nothing_arrived(receiver)


async def test_a_url_that_is_not_ascii_goes_out_percent_encoded() -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            reply = await sender.post(f"http://127.0.0.1:{receiver.port}/café?q=ü", b"{}")
    assert reply.status == 200
    assert receiver.paths == ["/caf%C3%A9?q=%C3%BC"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/hook",  # unclosed bracket
        "http://{host}:99999/hook",  # no such port
        "ftp://{host}/hook",
        "http:///hook",  # no host
        "http://exa¡mple.test/hook",  # no IDNA form
    ],
)
async def test_a_url_that_cannot_be_sent_is_refused_before_connecting(url: str) -> None:
    with running_receiver() as receiver:
        async with wire(allow_private=True) as sender:
            with pytest.raises(UnsendableRequest):
                await sender.post(url.format(host=f"127.0.0.1:{receiver.port}"), b"{}")
        await prove_nothing_arrived(receiver)


async def test_the_transport_itself_refuses_a_url_that_is_not_ascii() -> None:
    """Sent straight to the transport (no sender to normalise it): refused, not a crash."""
    transport = HTTPTransport(allow_private=True)
    request = Request("POST", "http://127.0.0.1:9/café", {}, b"", 4096)
    with pytest.raises(UnsendableRequest, match="not an ASCII URL"):
        await transport.handle(request)
    await transport.aclose()


# --- TLS: connected by address, verified by name -----------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a leaf for DNS:localhost only (no IP SAN) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("peopletasks test CA"))
        .issuer_name(name("peopletasks test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "leaf.pem", "leaf.key"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


async def test_tls_verifies_and_sends_sni_of_the_host_name(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    ca_path, cert_path, key_path = _certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    client_tls = ssl.create_default_context(cafile=str(ca_path))
    with running_receiver(tls=server_tls) as receiver:
        async with wire(allow_private=True, ssl_context=client_tls) as sender:
            # The sender connects to 127.0.0.1; the certificate names only "localhost".
            reply = await sender.post(f"https://localhost:{receiver.port}/tls", b"x")
            assert reply.status == 200
            assert receiver.sni == ["localhost"]
            # By address, the same certificate does not verify: the name is what is checked.
            with pytest.raises(SendError, match="certificate"):
                await sender.post(f"https://127.0.0.1:{receiver.port}/tls", b"x")
        assert receiver.paths == ["/tls"]
