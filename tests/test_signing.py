"""Secrets, links and webhook keys issued by earlier builds keep verifying: the
signer's MAC is HMAC-SHA256 (RFC 2104) under a key derived per purpose, exactly."""

from __future__ import annotations

import hashlib
import hmac

from peopletasks.signing import Signer


def _reference(key: bytes, purpose: str, message: bytes) -> bytes:
    subkey = hmac.new(key, b"peopletasks:" + purpose.encode(), hashlib.sha256).digest()
    return hmac.new(subkey, message, hashlib.sha256).digest()


def test_macs_are_hmac_sha256_under_each_listed_key() -> None:
    keys = [b"the-newest-signing-key-0123456789", b"an-older-key-kept-for-rotation-xyz" * 3]
    signer = Signer(keys)
    for purpose in ("person-secret", "action-link", "webhook-secret"):
        for message in (b"", b"6932df0bfd43222871b6911f:0", bytes(range(256)) * 3):
            for index, key in enumerate(keys):
                mac = signer.sign(purpose, message, key_index=index)
                assert mac == _reference(key, purpose, message)
                assert signer.verify(purpose, message, mac[:16])
            assert signer.sign(purpose, message) == _reference(keys[0], purpose, message)
    assert not signer.verify("action-link", b"m", _reference(keys[0], "person-secret", b"m"))
    assert not signer.verify("action-link", b"m", _reference(b"not-listed", "action-link", b"m"))
