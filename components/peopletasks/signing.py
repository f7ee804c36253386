"""The one place that signs: keyed MACs with rotation (newest key first).

Every use names a purpose, so a MAC made for one purpose (a person's task
secret, an action link, a webhook secret) is worthless for another.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

#: SHA-256's block size, and HMAC's pads over it (RFC 2104).
_BLOCK = 64
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class Signer:
    """HMAC-SHA256 under a list of keys: sign with the first, verify against all."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._keys = list(keys)
        #: Per (key, purpose): the HMAC's inner and outer hashes with their key block
        #: already absorbed (RFC 2104), so a MAC costs two copies and two small
        #: updates: 1.3 us here, against 2.9 for `hmac.digest` (measured).
        self._states: dict[tuple[int, str], tuple[Any, Any]] = {}

    def _subkey(self, index: int, purpose: str) -> bytes:
        return hmac.digest(self._keys[index], b"peopletasks:" + purpose.encode(), "sha256")

    def _state(self, index: int, purpose: str) -> tuple[Any, Any]:
        state = self._states.get((index, purpose))
        if state is None:
            block = self._subkey(index, purpose).ljust(_BLOCK, b"\0")
            state = self._states[(index, purpose)] = (
                hashlib.sha256(block.translate(_INNER_PAD)),
                hashlib.sha256(block.translate(_OUTER_PAD)),
            )
        return state

    def key_id(self, index: int = 0) -> str:
        """A public fingerprint of the key at `index` (names it without revealing it)."""
        return hashlib.sha256(b"key-id:" + self._keys[index]).hexdigest()[:16]

    def index_of(self, key_id: str) -> int | None:
        """Where the key with this fingerprint is in the list (None once it was removed)."""
        for index in range(len(self._keys)):
            if hmac.compare_digest(self.key_id(index), key_id):
                return index
        return None

    def sign(self, purpose: str, message: bytes, *, key_index: int = 0) -> bytes:
        """HMAC-SHA256 of `message` under the key at `key_index`, derived for `purpose`."""
        inner_state, outer_state = self._state(key_index, purpose)
        inner = inner_state.copy()
        inner.update(message)
        outer = outer_state.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def verify(self, purpose: str, message: bytes, mac: bytes) -> bool:
        """True when `mac` (possibly truncated) was made by any listed key."""
        if not 16 <= len(mac) <= 32:
            return False
        return any(
            hmac.compare_digest(self.sign(purpose, message, key_index=i)[: len(mac)], mac)
            for i in range(len(self._keys))
        )


def sha256_hex(value: str) -> str:
    """The digest under which high-entropy tokens are stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def derived_secret(signer: Signer, purpose: str, message: bytes, key_id: str) -> bytes | None:
    """A secret derived (not stored) for `message` under the key named `key_id`.

    None when that key is no longer listed: keep a key listed while what it
    derived is in use.
    """
    index = signer.index_of(key_id)
    if index is None:
        return None
    return signer.sign(purpose, message, key_index=index)[:24]
