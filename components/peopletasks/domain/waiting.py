"""Waiting for a decision without polling: waiters park on an event per task.

The domain wakes them after the commit of every decision or expiry. Across
replicas on PostgreSQL the change is also announced (`store.tasks.announce_change`,
NOTIFY sent on commit) and each replica's listener wakes its own waiters; as a
safety net a waiter looks at the store again every `recheck` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class DecisionHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, task_id: str) -> None:
        for event in self._waiters.pop(task_id, ()):
            event.set()

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    def subscribe(self, task_id: str) -> asyncio.Event:
        """An event set by the next `notify(task_id)`; subscribe before reading the
        task, so a decision between the read and the wait is not missed."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        return event

    def unsubscribe(self, task_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(task_id, None)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Until `event` is set or `timeout` passes. (`asyncio.timeout`, not `wait_for`: in
    Python 3.11 `wait_for` can swallow a cancellation that races its completion.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
