"""Signed action links: per task, per approver, per action, expiring.

A link is `{public_url}/people-task/act/{token}`. The token (44 URL-safe
characters) packs the task id, the action and the expiry, and a MAC over those
and the task's approver, made with `PEOPLETASKS_SECRET_KEY` (any listed key
verifies, so keys rotate without breaking links in flight). Changing the
task's approver, the action or the expiry breaks the MAC; nothing in the link
can be used for another task, action or person.
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
ACTIONS = ("approve", "reject")
_LAYOUT = struct.Struct(">12sBI")  # task id (12 bytes), action, expiry (Unix seconds)
_MAC_BYTES = 16
TOKEN_LENGTH = 44


@dataclass(frozen=True, slots=True)
class LinkClaims:
    task_id: str
    action: str
    expires_at: datetime
    payload: bytes
    mac: bytes

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def issue_token(
    signer: Signer, *, task_id: str, approver: str, action: str, expires_at: datetime
) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    payload = _LAYOUT.pack(
        bytes.fromhex(task_id), ACTIONS.index(action), int(expires_at.timestamp())
    )
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
    task_bytes, action_index, expires = _LAYOUT.unpack(payload)
    if action_index >= len(ACTIONS):
        raise LinkInvalid("malformed link")
    return LinkClaims(
        task_id=task_bytes.hex(),
        action=ACTIONS[action_index],
        expires_at=datetime.fromtimestamp(expires, UTC),
        payload=payload,
        mac=mac,
    )


def verify(signer: Signer, claims: LinkClaims, approver: str) -> None:
    """Raise LinkInvalid unless a listed key signed these claims for this approver."""
    if not signer.verify(PURPOSE, claims.payload + approver.encode(), claims.mac):
        raise LinkInvalid("this link was not issued for this task and approver")


def form_token(signer: Signer, token: str) -> str:
    """The value the confirmation page's form must post back with its link token."""
    mac = signer.sign("link-form", token.encode())[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")
