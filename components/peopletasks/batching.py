"""Results written back in batches: what the dispatchers (webhook deliveries, mail) learn
from each attempt is queued, and a burst of results becomes one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("peopletasks")

#: Most results in one write.
MAX_BATCH = 500
#: How long the first result of a batch waits for others to join it.
GATHER_SECONDS = 0.002


class BatchWriter(Generic[T]):
    """`put` results; `run` (a task) writes them in batches with `write`, trying a failed
    write again a few times; `drain` writes what is left (at shutdown)."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, what: str) -> None:
        self._write = write
        self._what = what
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, result: T) -> None:
        self._queue.put_nowait(result)

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(GATHER_SECONDS)  # let a burst of results gather into one write
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            await self._write_patiently(batch)

    async def drain(self) -> None:
        batch: list[T] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._write_patiently(batch)

    async def _write_patiently(self, batch: list[T]) -> None:
        for tries in range(5):
            try:
                await self._write(batch)
                return
            except Exception:
                log.exception("recording %d %s failed (try %d)", len(batch), self._what, tries)
                await asyncio.sleep(0.5 * (tries + 1))
