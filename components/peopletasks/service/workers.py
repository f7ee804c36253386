"""Background work inside each service process: the webhook dispatcher, the mail
dispatcher (where the service has SMTP), the scheduler (pending tasks turn `due` the
moment their deadline passes; reminders and escalations fire when their time comes)
and, on SQLite, the hourly refresh of the query planner's statistics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from peopletasks.domain import Domain, messages
from peopletasks.domain.decisions import expire_due_tasks, next_deadline
from peopletasks.domain.deliveries import release_claims
from peopletasks.domain.follow_ups import (
    fire_due_escalations,
    fire_due_reminders,
    next_follow_up,
)
from peopletasks.mail.dispatcher import MailDispatcher
from peopletasks.mail.send import SmtpConfig
from peopletasks.settings import Branding, Settings
from peopletasks.store.tasks import CHANGES_CHANNEL
from peopletasks.timeutil import utcnow
from peopletasks.webhooks.dispatcher import Dispatcher, make_sender
from peopletasks.webhooks.retry import RetryStrategy

log = logging.getLogger("peopletasks.workers")
EXPIRE_BATCH = 500
REMIND_BATCH = 500
#: How long before a reminder or escalation the mail dispatcher opens its connections.
WARM_AHEAD_SECONDS = 2.0
ESCALATE_BATCH = 100
#: How often SQLite's statistics are checked (SQLite suggests every few hours; a check
#: that finds nothing stale costs well under a millisecond).
OPTIMIZE_SECONDS = 3600.0


class DeadlineScheduler:
    """Sleeps until the next deadline, reminder or escalation (no polling loop), then
    expires what is due, queues the reminders and acts on the escalations.

    Creating or editing a task with an earlier time wakes it at once; every
    `max_sleep` seconds it also looks again, for times set on other replicas.
    """

    def __init__(
        self,
        domain: Domain,
        *,
        max_sleep: float = 30.0,
        warm: Callable[[], None] | None = None,
    ) -> None:
        self.domain = domain
        self.max_sleep = max_sleep
        #: Called WARM_AHEAD seconds before a reminder or escalation is due (the mail
        #: dispatcher opens its SMTP connections).
        self.warm = warm
        self._warmed_for: datetime | None = None

    async def run(self) -> None:
        alarm = self.domain.deadlines
        while True:
            try:
                alarm.changed.clear()
                alarm.waiting_for = None
                while await expire_due_tasks(self.domain, limit=EXPIRE_BATCH) == EXPIRE_BATCH:
                    pass
                while await fire_due_reminders(self.domain, limit=REMIND_BATCH) == REMIND_BATCH:
                    pass
                while (
                    await fire_due_escalations(self.domain, limit=ESCALATE_BATCH) == ESCALATE_BATCH
                ):
                    pass
                follow_up = await next_follow_up(self.domain)
                times = [await next_deadline(self.domain), follow_up]
                upcoming = min((t for t in times if t is not None), default=None)
                alarm.waiting_for = upcoming
                delay = self.max_sleep
                if upcoming is not None:
                    delay = min(delay, max(0.0, (upcoming - utcnow()).total_seconds()))
                if self.warm is not None and follow_up is not None:
                    delay = min(delay, self._warm_ahead_of(follow_up))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deadline scheduler step failed; retrying shortly")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await alarm.changed.wait()

    def _warm_ahead_of(self, follow_up: datetime) -> float:
        """Warm up for `follow_up` if it is near; else the seconds until it will be."""
        assert self.warm is not None
        if follow_up == self._warmed_for:
            return self.max_sleep
        lead = (follow_up - utcnow()).total_seconds() - WARM_AHEAD_SECONDS
        if lead > 0:
            return lead
        self._warmed_for = follow_up
        self.warm()
        return self.max_sleep


class StoreOptimizer:
    """On SQLite: every `every` seconds, re-analyze tables whose statistics went stale
    (the store also does so when it opens and closes; see `Database.optimize`)."""

    def __init__(self, domain: Domain, *, every: float = OPTIMIZE_SECONDS) -> None:
        self.domain = domain
        self.every = every

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.domain.db.optimize()


class DecisionListener:
    """On PostgreSQL: LISTEN for decisions made on other replicas, wake local waiters."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    async def run(self) -> None:
        while True:
            try:
                assert self.domain.db.engine is not None
                async with self.domain.db.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    listener = raw.driver_connection
                    assert listener is not None

                    def wake(_conn: object, _pid: int, _channel: str, task_id: str) -> None:
                        self.domain.decisions.notify(task_id)

                    closed = asyncio.Event()
                    listener.add_termination_listener(lambda _conn, done=closed: done.set())
                    await listener.add_listener(CHANGES_CHANNEL, wake)
                    try:
                        await closed.wait()
                    finally:
                        with contextlib.suppress(Exception):
                            await listener.remove_listener(CHANGES_CHANNEL, wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("decision listener lost its connection; reconnecting")
                await asyncio.sleep(1)


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The service's SMTP (`PEOPLETASKS_SMTP_*`), or None when it sends no mail."""
    return SmtpConfig.from_env() if settings.mails else None


class BackgroundWorkers:
    """Starts and stops the dispatchers and the scheduler with the service.

    `smtp` replaces the SMTP of the settings (`smtp_config`), e.g. a test's server."""

    def __init__(
        self, domain: Domain, settings: Settings, *, smtp: SmtpConfig | None = None
    ) -> None:
        self.domain = domain
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self.sender = make_sender(
            allow_private=settings.allow_private_webhooks,
            trusted=tuple(settings.prefect_api_url),
            timeout=settings.webhook_timeout_seconds,
        )
        self.dispatcher = Dispatcher(
            domain,
            self.sender,
            strategy=RetryStrategy(
                base=settings.webhook_retry_base_seconds,
                max_delay=settings.webhook_retry_max_delay_seconds,
                horizon=settings.webhook_retry_horizon_seconds,
            ),
            concurrency=settings.webhook_concurrency,
            lease_seconds=settings.webhook_timeout_seconds + 5.0,
            poll_seconds=settings.webhook_poll_seconds,
            attempt_timeout=settings.webhook_timeout_seconds,
        )
        smtp = smtp or smtp_config(settings)
        self.mail: MailDispatcher | None = None
        if smtp is not None and domain.mail_enabled:
            self.mail = MailDispatcher(
                domain,
                smtp,
                branding=Branding.from_env(),
                templates_dir=settings.templates_dir,
                strategy=RetryStrategy(
                    base=settings.mail_retry_base_seconds,
                    max_delay=settings.mail_retry_max_delay_seconds,
                    horizon=settings.mail_retry_horizon_seconds,
                ),
                connections=settings.mail_connections,
                poll_seconds=settings.mail_poll_seconds,
            )
        self.scheduler = DeadlineScheduler(
            domain, warm=self.mail.warm_up if self.mail is not None else None
        )

    async def start(self) -> None:
        if self.domain.db.is_sqlite:
            # SQLite serves one replica: leases left by a crashed run are ours to free.
            released = await release_claims(self.domain)
            if released:
                log.info("released %d webhook deliveries claimed before a restart", released)
            released = await messages.release_claims(self.domain)
            if released:
                log.info("released %d mail messages claimed before a restart", released)
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="webhook-dispatcher"),
            asyncio.create_task(self.scheduler.run(), name="deadline-scheduler"),
        ]
        if self.mail is not None:
            self._tasks.append(asyncio.create_task(self.mail.run(), name="mail-dispatcher"))
        if self.domain.db.is_sqlite:
            optimizer = StoreOptimizer(self.domain)
            self._tasks.append(asyncio.create_task(optimizer.run(), name="store-optimizer"))
        else:
            listener = DecisionListener(self.domain)
            self._tasks.append(asyncio.create_task(listener.run(), name="decision-listener"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.sender.aclose()
