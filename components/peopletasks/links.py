"""Signed action links: per task, per approver, per response, expiring.

A link is `{public_url}/people-task/act/{token}`. The token (44 URL-safe
characters) packs the task id, the response chosen (the index of one of the task's
options: 0 approve and 1 reject unless it has its own) and the expiry, and a MAC over
those and the approver's address, made with `PEOPLETASKS_SECRET_KEY` (any listed key
verifies, so keys rotate without breaking links in flight). Changing the approver,
the response or the expiry breaks the MAC; nothing in the link can be used for
another task, response or person.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from peopletasks.errors import LinkInvalid as LinkInvalid
from peopletasks.signing import Signer

PURPOSE = "action-link"
_LAYOUT = struct.Struct(">12sBI")  # task id (12 bytes), choice, expiry (Unix seconds)
_MAC_BYTES = 16
TOKEN_LENGTH = 44


@dataclass(frozen=True, slots=True)
class LinkClaims:
    task_id: str
    #: Which of the task's options the link chooses (its index).
    choice: int
    expires_at: datetime
    payload: bytes
    mac: bytes

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def issue_token(
    signer: Signer, *, task_id: str, approver: str, choice: int, expires_at: datetime
) -> str:
    payload = _LAYOUT.pack(bytes.fromhex(task_id), choice, int(expires_at.timestamp()))
    mac = signer.sign(PURPOSE, payload + approver.encode())[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def read_token(token: str) -> LinkClaims:
    """Unpack a token (not yet verified: call `verify` with the task's approver)."""
    if len(token) != TOKEN_LENGTH:
        raise LinkInvalid("malformed link")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkInvalid("malformed link") from None
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if len(payload) != _LAYOUT.size or len(mac) != _MAC_BYTES:
        raise LinkInvalid("malformed link")
    task_bytes, choice, expires = _LAYOUT.unpack(payload)
    return LinkClaims(
        task_id=task_bytes.hex(),
        choice=choice,
        expires_at=datetime.fromtimestamp(expires, UTC),
        payload=payload,
        mac=mac,
    )


def signed_for(signer: Signer, claims: LinkClaims, approvers: list[str]) -> str:
    """Which of `approvers` a listed key signed these claims for; LinkInvalid if none."""
    for approver in approvers:
        if signer.verify(PURPOSE, claims.payload + approver.encode(), claims.mac):
            return approver
    raise LinkInvalid("this link was not issued for this task and approver")


def form_token(signer: Signer, token: str) -> str:
    """The value the confirmation page's form must post back with its link token."""
    mac = signer.sign("link-form", token.encode())[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")
