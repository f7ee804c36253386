"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Each request carries `webhook-id` (the same on every retry), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature`: `v1,` + base64 of
HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"). The secret is shown once, at
registration, as `whsec_` + base64. Receivers verify with any Standard Webhooks
library, e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`, or with
`verify()` below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The request was not signed with this secret, or is too old or too new."""


def signature(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    secret: bytes, message_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def decode_secret(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> None:
    """Raise InvalidSignature unless `body` and `headers` were signed with `secret`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        given = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed webhook headers") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance window")
    expected = signature(decode_secret(secret), message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in given):
        raise InvalidSignature("no matching signature")
