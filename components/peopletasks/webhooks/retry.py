"""When to try a failed delivery again: exponential backoff with jitter, within a horizon."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 86400.0


@dataclass(frozen=True)
class RetryStrategy:
    """Attempt n (1-based) failed: wait `base * 2**(n-1)`, capped at `max_delay`, times a
    random factor in [0.5, 1) so that receivers coming back are not hit all at once;
    a receiver's `Retry-After` replaces that delay. Give up once the next attempt would
    fall more than `horizon` after the event."""

    base: float = 2.0
    max_delay: float = 3600.0
    horizon: float = 3 * 86400.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        backoff: float = min(self.max_delay, self.base * 2.0 ** min(max(attempt - 1, 0), 40))
        return backoff * self.rng.uniform(0.5, 1.0)

    def next_attempt(
        self,
        attempt: int,
        *,
        now: datetime,
        event_created_at: datetime,
        retry_after: float | None = None,
    ) -> datetime | None:
        wait = self.delay(attempt) if retry_after is None else retry_after
        when = now + timedelta(seconds=wait)
        if (when - event_created_at).total_seconds() > self.horizon:
            return None
        return when


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), bounded."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value) if value.isdigit() else None
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))
