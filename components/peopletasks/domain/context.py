"""What every domain operation needs: the store, the signer and small caches."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from peopletasks.domain.waiting import DecisionHub
from peopletasks.signing import Signer
from peopletasks.store import Database

if TYPE_CHECKING:
    from peopletasks.domain.handoff import Handoff

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small in-process cache whose entries live `ttl` seconds (0 disables it)."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._entries.clear()


class DeadlineAlarm:
    """Tells the deadline scheduler of a time (a deadline, a reminder, an escalation)
    earlier than the one it waits for."""

    def __init__(self) -> None:
        self.waiting_for: datetime | None = None
        self.changed = asyncio.Event()

    def note(self, deadline: datetime | None) -> None:
        if deadline is not None and (self.waiting_for is None or deadline < self.waiting_for):
            self.waiting_for = deadline
            self.changed.set()


@dataclass
class Domain:
    """The domain's handle on the world; built once per service process."""

    db: Database
    signer: Signer
    auth_cache_seconds: float = 10.0
    #: Where people's browsers reach the service (for action links).
    public_url: str = "http://127.0.0.1:8000"
    #: Where people see their tasks (`PEOPLETASKS_DASHBOARD_URL`): dashboard links.
    dashboard_url: str = "http://127.0.0.1:8000/people-task/dashboard"
    link_max_age_seconds: float = 7 * 86400.0
    #: A long poll also re-reads the store this often (a net under NOTIFY).
    wait_recheck_seconds: float = 5.0
    #: Appmixer's person-wide secrets (see `principals`); off by default.
    person_secrets: bool = False
    #: Whether the service sends mail (it has SMTP): without, no mail is queued.
    mail_enabled: bool = False
    #: `notify` of a task created without one (where mail is enabled).
    notify_default: tuple[str, ...] = ()
    token_cache: TTLCache[str, object] = field(init=False)
    #: A verified task secret -> its holder (a Principal).
    secret_holders: TTLCache[str, object] = field(init=False)
    #: (organization, e-mail, role) -> that person's current person-wide secret.
    secrets_cache: TTLCache[tuple[int, str, str], str] = field(init=False)
    #: Set after a commit that wrote webhook deliveries: wakes the dispatcher.
    outbox_ready: asyncio.Event = field(init=False)
    #: Set after a commit that queued mail: wakes the mail dispatcher.
    mail_ready: asyncio.Event = field(init=False)
    deadlines: DeadlineAlarm = field(init=False)
    #: Wakes those waiting for a task's decision (long polls).
    decisions: DecisionHub = field(init=False)
    #: This process's running dispatcher, which takes fresh deliveries at commit.
    handoff: Handoff | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.token_cache = TTLCache(self.auth_cache_seconds)
        self.secret_holders = TTLCache(self.auth_cache_seconds)
        self.secrets_cache = TTLCache(self.auth_cache_seconds)
        self.outbox_ready = asyncio.Event()
        self.mail_ready = asyncio.Event()
        self.deadlines = DeadlineAlarm()
        self.decisions = DecisionHub()
