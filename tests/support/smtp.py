"""A real SMTP server for tests (aiosmtpd, on a loop and thread of its own, so that the
service in process and service processes alike can send to it): records every message
it accepts with the time it answered 250, and can refuse or delay as told."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mail:
    """One accepted message."""

    to: tuple[str, ...]
    message: EmailMessage
    at: float = field(default_factory=time.time)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())


#: Decides the answer to DATA from the message and how many were accepted before: None
#: accepts (250), else the answer given (e.g. "451 4.3.0 try later").
Refusal = Callable[[EmailMessage, int], str | None]


class _Handler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.inbox.lock:
            self.inbox.attempts += 1
            answer = self.inbox.refuse(parsed, len(self.inbox.received))
            if answer is None:
                to = tuple(str(a).lower() for a in envelope.rcpt_tos)
                self.inbox.received.append(Mail(to, parsed))
        if self.inbox.delay:
            await asyncio.sleep(self.inbox.delay)
        return answer or "250 2.0.0 OK: queued"


class Inbox:
    def __init__(self, refuse: Refusal | None = None, *, delay: float = 0.0) -> None:
        self.refuse: Refusal = refuse or (lambda message, n: None)
        self.delay = delay
        self.received: list[Mail] = []
        self.attempts = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> Inbox:
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await self.loop.create_server(
                lambda: SMTP(_Handler(self), hostname="mx.test", loop=self.loop),
                "127.0.0.1",
                0,
            )

        self._server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Inbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The service's environment for sending here."""
        return {
            "PEOPLETASKS_SMTP_HOST": "127.0.0.1",
            "PEOPLETASKS_SMTP_PORT": str(self.port),
            "PEOPLETASKS_SMTP_TLS": "none",
            "PEOPLETASKS_SMTP_FROM": "Approvals <approvals@service.test>",
            "PEOPLETASKS_SMTP_TIMEOUT": "2",
        }

    def mails(self, task_id: str | None = None, *, kind: str | None = None) -> list[Mail]:
        """What was accepted, in order; only a task's (by its header) or a kind's (by
        the Message-ID)."""
        with self.lock:
            found = list(self.received)
        if task_id is not None:
            found = [m for m in found if m.message["X-PeopleTasks-Task-Id"] == task_id]
        if kind is not None:
            found = [m for m in found if f".{kind}." in m.message_id]
        return found
