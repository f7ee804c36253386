"""The mail dispatcher: sends the service's mail outbox, logs each attempt, schedules
retries. One runs inside every service process that has SMTP (`PEOPLETASKS_SMTP_HOST`).

It claims due messages (a lease, as the webhook dispatcher does: replicas never send
the same message at once), renders each with the task as it now is and fresh links
(`domain.messages.claim_messages`), sends them over one `Mailer`'s pool of
connections, and writes the outcomes back in batches. A transient failure (the server
unreachable, an SMTP 4xx) is tried again with backoff until the retry horizon; a
permanent one (5xx) fails the message at once. A crash loses nothing: unfinished
claims expire and are sent again with the same `Message-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from email.message import EmailMessage
from typing import Any

from peopletasks.batching import BatchWriter
from peopletasks.domain import Domain
from peopletasks.domain.messages import (
    Outgoing,
    SendResult,
    claim_messages,
    has_due_messages,
    next_message_due,
    record_results,
)
from peopletasks.mail.render import (
    load_templates,
    render_approval_request,
    render_escalated,
    render_escalation,
    render_outcome,
    render_reassigned,
    render_reminder,
    render_requester_copy,
)
from peopletasks.mail.send import MailDeliveryError, Mailer, SmtpConfig
from peopletasks.settings import Branding
from peopletasks.timeutil import utcnow
from peopletasks.webhooks.retry import RetryStrategy

log = logging.getLogger("peopletasks.mail")

CLAIM_BATCH = 200
SHUTDOWN_SECONDS = 5.0


def lease_for(config: SmtpConfig) -> float:
    """How long a claimed message stays ours: it waits for a connection at most one
    send, and a send's exchanges (MAIL, RCPT, DATA, the content) each answer within the
    timeout; connecting, TLS and login come once per connection."""
    return 4 * config.timeout + 5.0


def render(
    message: Outgoing,
    *,
    sender: str,
    branding: Branding,
    templates_dir: str | None,
) -> EmailMessage:
    """The mail of an outbox message (see `domain.notices` for the kinds)."""
    common: dict[str, Any] = {
        "branding": branding,
        "sender": sender,
        "to": message.to,
        "templates_dir": templates_dir,
    }
    context, links = message.context, message.links or {}
    match message.kind:
        case "approval":
            return render_approval_request(
                message.task, approve_url=links["approve"], reject_url=links["reject"], **common
            )
        case "copy":
            return render_requester_copy(message.task, **common)
        case "reminder":
            return render_reminder(
                message.task,
                number=message.sequence,
                approve_url=links["approve"],
                reject_url=links["reject"],
                **common,
            )
        case "reassigned":
            return render_reassigned(
                message.task,
                sequence=message.sequence,
                previous=context["from"],
                by=context.get("reassignedBy"),
                comment=context.get("comment"),
                approve_url=links["approve"],
                reject_url=links["reject"],
                **common,
            )
        case "escalation":
            return render_escalation(
                message.task,
                action=context["action"],
                after=context["after"],
                approver=context["approver"],
                **common,
            )
        case "escalated":
            return render_escalated(
                message.task,
                action=context["action"],
                after=context["after"],
                approver=context["approver"],
                contact=context.get("to"),
                **common,
            )
        case "outcome":
            # The outcome it was queued for (a late decision may have followed a `due`).
            task = {**message.task, "status": context.get("status", message.task["status"])}
            return render_outcome(task, sequence=message.sequence, **common)
    raise ValueError(f"unknown kind of message {message.kind!r}")


class MailDispatcher:
    def __init__(
        self,
        domain: Domain,
        config: SmtpConfig,
        *,
        branding: Branding | None = None,
        templates_dir: str | None = None,
        strategy: RetryStrategy | None = None,
        connections: int = 16,
        poll_seconds: float = 1.0,
        lease_seconds: float | None = None,
    ) -> None:
        self.domain = domain
        self.config = config
        self.branding = branding or Branding.from_env()
        self.templates_dir = templates_dir or None
        self.strategy = strategy or RetryStrategy(base=30.0, max_delay=1800.0, horizon=86400.0)
        self.connections = connections
        #: Sends under way: twice the connections, so that rendering overlaps sending.
        self.concurrency = 2 * connections
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds or lease_for(config)
        self._inflight: set[asyncio.Task[None]] = set()
        self._results = BatchWriter(self._write, what="mail attempts")
        self.mailer: Mailer | None = None
        self._warming: asyncio.Task[int] | None = None

    async def run(self) -> None:
        load_templates(self.templates_dir)
        mailer = self.mailer = Mailer(self.config, retry_delays=(), connections=self.connections)
        flusher = asyncio.create_task(self._results.run(), name="mail-results")
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("mail dispatcher step failed; retrying shortly")
                    await asyncio.sleep(self.poll_seconds)
        finally:
            # Unfinished sends keep their lease and are made again by the next dispatcher.
            for task in list(self._inflight):
                task.cancel()
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=SHUTDOWN_SECONDS)
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            if self._warming is not None:
                self._warming.cancel()
                with contextlib.suppress(BaseException):
                    await self._warming
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._results.drain(), SHUTDOWN_SECONDS)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(mailer.close(), SHUTDOWN_SECONDS)

    def warm_up(self) -> None:
        """Open the pool's connections now (in the background): mail is about to be
        due (see `DeadlineScheduler`), and a burst should not wait for TLS and login."""
        if self.mailer is None or (self._warming is not None and not self._warming.done()):
            return
        self._warming = asyncio.create_task(self.mailer.open(), name="mail-warm-up")

    async def _step(self) -> None:
        self.domain.mail_ready.clear()
        free = self.concurrency - len(self._inflight)
        wanted = min(free, CLAIM_BATCH)
        claimed: list[Outgoing] = []
        if wanted > 0 and await has_due_messages(self.domain):
            claimed = await claim_messages(self.domain, wanted, self.lease_seconds)
        for message in claimed:
            task = asyncio.create_task(self._attempt(message), name=f"mail-{message.id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if claimed and len(claimed) == wanted:
            return  # there may be more right away
        if free <= 0:
            await asyncio.wait(
                self._inflight, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            return
        timeout = self.poll_seconds
        due = await next_message_due(self.domain)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - utcnow()).total_seconds()))
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.domain.mail_ready.wait()

    async def _attempt(self, message: Outgoing) -> None:
        assert self.mailer is not None
        attempted_at = utcnow()
        started = time.perf_counter()
        message_id: str | None = None
        sent, code, error, permanent = False, None, None, False
        try:
            mail = render(
                message,
                sender=self.config.sender,
                branding=self.branding,
                templates_dir=self.templates_dir,
            )
            message_id = str(mail["Message-ID"])
            await self.mailer.send(mail)
            sent, code = True, 250
        except asyncio.CancelledError:
            raise  # shutting down: the lease expires and another attempt follows
        except MailDeliveryError as exc:
            code, error, permanent = exc.code, str(exc), exc.permanent
        except Exception as exc:  # never let one message kill the dispatcher
            log.exception("mail message %s failed unexpectedly", message.id)
            error = f"internal error: {type(exc).__name__}: {exc}"
        retry_at = None
        if not sent and not permanent:
            retry_at = self.strategy.next_attempt(
                message.attempt, now=utcnow(), event_created_at=message.created_at
            )
        self._results.put(
            SendResult(
                id=message.id,
                attempted_at=attempted_at,
                latency_ms=int((time.perf_counter() - started) * 1000),
                sent=sent,
                message_id=message_id,
                smtp_code=code,
                error=error,
                retry_at=retry_at,
            )
        )

    async def _write(self, batch: list[SendResult]) -> None:
        await record_results(self.domain, batch)
        if any(not r.sent and r.retry_at is not None for r in batch):
            self.domain.mail_ready.set()


def describe(config: SmtpConfig | None) -> str:
    """What the service does with mail, for the start-up line."""
    if config is None:
        return (
            "no SMTP (PEOPLETASKS_SMTP_HOST unset): the service sends no mail; tasks show "
            "notify: [] and flows send their own"
        )
    login = f" as {config.username}" if config.username else ""
    return f"sent through {config.address} ({config.tls}){login}, from {config.sender}"
