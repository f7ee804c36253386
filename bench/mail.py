"""Sending approval mails: our `Mailer` against prefect-email, across a 10 ms link.

    .venv/bin/python bench/mail.py [--messages 500] [--delay-ms 10] [--connections N]
                                   [--parallel 0]

One run:

1. makes a throw-away self-signed certificate and starts, in a thread with its own
   event loop, an aiosmtpd server that requires STARTTLS and AUTH (PLAIN / LOGIN), and
   in front of it a TCP proxy that holds every chunk, in each direction, for
   `--delay-ms` before passing it on (order kept, chunks overlap: like a mail provider
   across the Internet, 20 ms round trip with the default);
2. renders `--messages` approval mails (each for its own task and approver; rendering
   is not timed);
3. sends them all through the proxy with one `peopletasks.mail.Mailer` and its
   default pool of connections (`--connections N` to choose; 1 is a single connection):
   `send_many` spreads the messages over the pool, each connection connects, does
   STARTTLS and logs in once and is reused for its share (aiosmtplib does not pipeline,
   so each message takes MAIL, RCPT, DATA and the content: four round trips on its
   connection), timed from the first send to the QUITs;
4. sends the same messages with prefect-email's `email_send_message` as documented:
   an `EmailServerCredentials` block (smtp_type STARTTLS, verify=False, username /
   password) and the task's function (`email_send_message.fn`, i.e. without Prefect's
   task-run bookkeeping), which opens, secures, logs in and quits a connection per
   message; only the loop over the messages is timed;
5. with `--parallel K`, also K single-connection Mailers side by side (K connections),
   for reference;
6. prints messages/s of each, the ratio and whether the target (>= 10x prefect-email)
   is met (MISSED otherwise; the exit code stays 0), checks the server got every
   message, and stops everything and removes its temp dir (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

TARGET_RATIO = 10.0
USERNAME, PASSWORD = "bench", "bench-password"
SENDER = "Approvals <approvals@bench.example>"
T = TypeVar("T")


# --- certificate ---------------------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cryptography, else openssl)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key_path), "-out", str(cert_path)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
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
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- the far side: SMTP server + delaying proxy, on a loop of their own --------------------


@dataclass
class Counts:
    messages: int = 0
    connections: int = 0
    message_ids: set[str] = field(default_factory=set)


class CountingHandler:
    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.counts.messages += 1
        content: bytes = envelope.original_content or b""
        for line in content.split(b"\r\n", 40)[:40]:
            if line.lower().startswith(b"message-id:"):
                self.counts.message_ids.add(line.split(b":", 1)[1].strip().decode())
        return "250 2.0.0 OK: queued"


class FarSide:
    """An aiosmtpd server (STARTTLS + AUTH required) behind a proxy adding latency."""

    def __init__(self, cert: Path, key: Path, delay: float) -> None:
        self.cert, self.key, self.delay = cert, key, delay
        self.counts = Counts()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="far-side", daemon=True)
        self.smtp_port = 0
        self.proxy_port = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._protocols: list[Any] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                USERNAME.encode(),
                PASSWORD.encode(),
            )
            return AuthResult(success=ok, handled=False)

        handler = CountingHandler(self.counts)

        def factory() -> Any:
            self.counts.connections += 1
            protocol = SMTP(
                handler,
                hostname="mx.bench.example",
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=authenticator,
                loop=self.loop,
            )
            self._protocols.append(protocol)
            return protocol

        smtp = await self.loop.create_server(factory, "127.0.0.1", 0)
        self.smtp_port = smtp.sockets[0].getsockname()[1]
        proxy = await asyncio.start_server(self._proxy_connection, "127.0.0.1", 0)
        self.proxy_port = proxy.sockets[0].getsockname()[1]
        self._servers = [proxy, smtp]

    async def _proxy_connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.smtp_port
            )
            try:
                await asyncio.gather(
                    self._pump(client_reader, server_writer),
                    self._pump(server_reader, client_writer),
                )
            finally:
                server_writer.close()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the peer went away, or the bench is stopping
        finally:
            client_writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward every chunk `delay` seconds after it arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                queue.put_nowait((self.loop.time() + self.delay, data))
                if not data:
                    return

        receiver = asyncio.create_task(receive())
        try:
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
            if protocol._handler_coroutine is not None:
                protocol._handler_coroutine.cancel()
        pending = [t for t in self._tasks] + [
            p._handler_coroutine for p in self._protocols if p._handler_coroutine is not None
        ]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for server in self._servers:
            await server.wait_closed()


# --- the messages --------------------------------------------------------------------------


def render_messages(count: int) -> list[EmailMessage]:
    from peopletasks.mail import Branding, render_approval_request

    deadline = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    messages = []
    for i in range(count):
        task = {
            "id": f"{0xBE0C << 80 | i:024x}",
            "title": f"Purchase order #{10_000 + i}: 12 laptops",
            "description": (
                f"**Requester:** buyer{i}@bench.example\n\n"
                "- 12 x laptop, 14 inch, 32 GB\n- Supplier: Example Hardware Ltd.\n\n"
                "Total: **EUR 18,400**. Budget line *IT-2026-Q4*."
            ),
            "requester": f"buyer{i}@bench.example",
            "approver": f"approver{i}@bench.example",
            "status": "pending",
            "decisionBy": deadline,
            "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        base = "https://tasks.bench.example/people-task/act/"
        messages.append(
            render_approval_request(
                task,
                approve_url=base + f"A{i:043d}",
                reject_url=base + f"R{i:043d}",
                page_url=f"https://tasks.bench.example/people-task/tasks/{task['id']}",
                branding=Branding(),
                sender=SENDER,
                to=task["approver"],
            )
        )
    return messages


# --- the two senders -----------------------------------------------------------------------


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    connections: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")


def mailer_config(port: int) -> Any:
    from peopletasks.mail import SmtpConfig

    return SmtpConfig(
        host="127.0.0.1",
        port=port,
        tls="starttls",
        username=USERNAME,
        password=PASSWORD,
        sender=SENDER,
        validate_certs=False,
        timeout=30.0,
    )


def mailer_connections(connections: int | None) -> int:
    """How many connections our Mailer uses: `connections`, else its default."""
    import inspect

    from peopletasks.mail import Mailer

    if connections is not None:
        return connections
    default = inspect.signature(Mailer).parameters["connections"].default
    assert isinstance(default, int)
    return default


async def send_with_mailer(port: int, messages: list[EmailMessage], connections: int) -> float:
    from peopletasks.mail import Mailer

    started = time.perf_counter()
    async with Mailer(mailer_config(port), connections=connections) as mailer:
        await mailer.send_many(messages)
    return time.perf_counter() - started


async def send_with_parallel_mailers(port: int, messages: list[EmailMessage], k: int) -> float:
    from peopletasks.mail import Mailer

    async def one(share: list[EmailMessage]) -> None:
        async with Mailer(mailer_config(port), connections=1) as mailer:
            await mailer.send_many(share)

    started = time.perf_counter()
    await asyncio.gather(*(one(messages[i::k]) for i in range(k)))
    return time.perf_counter() - started


async def send_with_prefect_email(port: int, messages: list[EmailMessage]) -> float:
    from prefect_email import EmailServerCredentials, email_send_message

    credentials = EmailServerCredentials(
        username=USERNAME,
        password=PASSWORD,
        smtp_server="127.0.0.1",
        smtp_port=port,
        smtp_type="STARTTLS",
        verify=False,
    )
    calls = []
    for message in messages:
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        assert text is not None and html is not None
        calls.append(
            {
                "subject": str(message["Subject"]),
                "msg": html.get_content(),
                "msg_plain": text.get_content(),
                "email_from": str(message["From"]),
                "email_to": str(message["To"]),
            }
        )
    started = time.perf_counter()
    for call in calls:
        await email_send_message.fn(email_server_credentials=credentials, **call)
    return time.perf_counter() - started


# --- main ----------------------------------------------------------------------------------


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="peopletasks-bench-mail-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="added each way (10)")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="our Mailer's pool size (default: the Mailer's default)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=0,
        help="also K single-connection Mailers side by side (reference)",
    )
    args = parser.parse_args()

    with temp_dir() as tmp:
        # Prefect keeps to the temp dir and quiet (prefect-email warns on every login
        # with verify=False).
        os.environ["PREFECT_HOME"] = str(tmp / "prefect-home")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        logging.getLogger("peopletasks.mail").setLevel(logging.ERROR)
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter

        cert, key = make_certificate(tmp)
        far = FarSide(cert, key, args.delay_ms / 1000)
        far.start()
        try:
            return asyncio.run(run(args, far))
        finally:
            far.stop()


async def run(args: argparse.Namespace, far: FarSide) -> int:
    from importlib import metadata

    n = args.messages
    pool = mailer_connections(args.connections)
    print(
        f"bench/mail.py: {n} approval mails, aiosmtpd (STARTTLS + AUTH) behind a proxy adding "
        f"{args.delay_ms:g} ms each way ({2 * args.delay_ms:g} ms round trip)"
    )
    print(
        f"  peopletasks Mailer: {pool} connection(s), each reused "
        f"(Mailer(connections={pool}){'' if args.connections is not None else ', its default'}"
        f"); prefect-email: a new connection per message, as documented"
    )
    print(
        f"  python {sys.version.split()[0]}, aiosmtplib {metadata.version('aiosmtplib')}, "
        f"aiosmtpd {metadata.version('aiosmtpd')}, prefect {metadata.version('prefect')}, "
        f"prefect-email {metadata.version('prefect-email')}"
    )
    started = time.perf_counter()
    messages = render_messages(n)
    rendered = time.perf_counter() - started
    size = sum(len(bytes(m)) for m in messages) / n
    print(f"  rendered {n} mails in {rendered:.2f} s ({size / 1024:.1f} KiB each; not timed below)")
    # Import prefect-email (and Prefect) before any clock starts.
    import prefect_email  # noqa: F401

    results: list[Result] = []

    def measure(name: str, seconds: float, before: Counts) -> Result:
        result = Result(
            name,
            far.counts.messages - before.messages,
            seconds,
            far.counts.connections - before.connections,
        )
        results.append(result)
        print(
            f"  {name:<26} {result.messages:>5} sent in {seconds:7.2f} s = "
            f"{result.rate:8.1f} msg/s over {result.connections} connection(s)",
            flush=True,
        )
        return result

    def snapshot() -> Counts:
        return Counts(far.counts.messages, far.counts.connections)

    before = snapshot()
    ours = measure(
        "peopletasks Mailer", await send_with_mailer(far.proxy_port, messages, pool), before
    )
    before = snapshot()
    theirs = measure(
        "prefect-email", await send_with_prefect_email(far.proxy_port, messages), before
    )
    if args.parallel > 0:
        before = snapshot()
        seconds = await send_with_parallel_mailers(far.proxy_port, messages, args.parallel)
        measure(f"{args.parallel} Mailers x 1 connection", seconds, before)

    expected = n * (3 if args.parallel > 0 else 2)
    complete = far.counts.messages == expected and all(r.messages == n for r in results)
    ratio = ours.rate / theirs.rate if theirs.rate else float("inf")
    met = ratio >= TARGET_RATIO
    print()
    print(f"{'':2}{'sender':<26} {'msg/s':>9} {'per message':>12} {'connections':>12}")
    for r in results:
        print(
            f"{'':2}{r.name:<26} {r.rate:9.1f} {1000 * r.seconds / max(r.messages, 1):9.1f} ms "
            f"{r.connections:>12}"
        )
    print()
    rtt = 2 * args.delay_ms
    print(
        f"  ratio Mailer / prefect-email: {ratio:.1f}x   target >= {TARGET_RATIO:g}x: "
        f"{'met' if met else 'MISSED'}"
    )
    print(
        f"  round trips per message: Mailer 4 (MAIL, RCPT, DATA, content; floor "
        f"{4 * rtt:g} ms = {1000 / (4 * rtt):.1f} msg/s per connection without pipelining, "
        f"x {pool} connection(s) = {pool * 1000 / (4 * rtt):.1f} msg/s); "
        f"prefect-email ~11 (connect, EHLO, STARTTLS, TLS, EHLO, AUTH, MAIL, RCPT, DATA, "
        f"content, QUIT)"
    )
    print(
        f"  server received {far.counts.messages} of {expected} messages"
        + ("" if complete else "  <-- INCOMPLETE")
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(0)
