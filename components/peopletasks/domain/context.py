"""What every domain operation needs: the store, the signer and small caches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from peopletasks.signing import Signer
from peopletasks.store import Database

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


@dataclass
class Domain:
    """The domain's handle on the world; built once per service process."""

    db: Database
    signer: Signer
    auth_cache_seconds: float = 10.0
    token_cache: TTLCache[str, object] = field(init=False)
    person_cache: TTLCache[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.token_cache = TTLCache(self.auth_cache_seconds)
        self.person_cache = TTLCache(self.auth_cache_seconds)
