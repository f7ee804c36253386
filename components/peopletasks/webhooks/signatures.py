"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Each request carries `webhook-id` (the same on every retry), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature`: `v1,` + base64 of
HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"). The secret is shown once, at
registration, as `whsec_` + base64. Receivers verify with any Standard Webhooks
library, e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`, or with
`verify()` below, which accepts exactly what that reference library accepts
(tests/test_webhook_signatures.py holds it to the library's verdict):

* the secret: `whsec_` + base64 or bare base64, padded or not (characters outside
  the base64 alphabet are skipped, as the reference's decoder does), or the key bytes;
* `webhook-signature`: one or more signatures separated by single spaces, each
  `version,base64`; only `v1,` signatures are checked, any one of them may match;
* `webhook-timestamp`: Unix seconds (a fraction is dropped), at most
  `TOLERANCE_SECONDS` before or after now.

Anything else is refused with `InvalidSignature`, whose `reason` names the check
that failed: `secret`, `headers`, `timestamp` or `signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from peopletasks.errors import InvalidSignature as InvalidSignature

TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


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


def decode_secret(secret: str | bytes) -> bytes:
    """The key bytes of a secret (`whsec_` + base64, padded or not; bytes as given).

    Raises `InvalidSignature` (reason `secret`) for text that is not base64, or an
    empty key.
    """
    if isinstance(secret, str):
        try:
            # As the reference decodes it: padding added (extra padding is ignored),
            # characters outside the alphabet skipped.
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
        except (binascii.Error, ValueError) as exc:  # ValueError: not ASCII
            raise InvalidSignature(
                f"the secret is not base64 after {SECRET_PREFIX!r}: {exc}", reason="secret"
            ) from None
    else:
        key = secret
    if not key:
        raise InvalidSignature("the secret is empty", reason="secret")
    return key


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
) -> None:
    """Raise `InvalidSignature` unless `body` and `headers` were signed with `secret`.

    `body` is the request body exactly as received (text is taken as UTF-8);
    `headers` may use any letter case; `now` (Unix seconds) defaults to the clock.
    """
    key = decode_secret(secret)
    payload = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    given = lowered.get("webhook-signature")
    if not (message_id and stamp and given):
        missing = [
            name
            for name, value in (
                ("webhook-id", message_id),
                ("webhook-timestamp", stamp),
                ("webhook-signature", given),
            )
            if not value
        ]
        raise InvalidSignature(f"missing header(s): {', '.join(missing)}", reason="headers")
    try:
        # As the reference reads it: a float, to the microsecond, then whole seconds.
        stamped = datetime.fromtimestamp(float(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidSignature(
            f"webhook-timestamp is not Unix seconds: {stamp[:40]!r}", reason="timestamp"
        ) from None
    current = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, tz=UTC)
    tolerance = timedelta(seconds=TOLERANCE_SECONDS)
    if stamped < current - tolerance:
        raise InvalidSignature(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS} s old", reason="timestamp"
        )
    if stamped > current + tolerance:
        raise InvalidSignature(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS} s ahead", reason="timestamp"
        )
    try:
        expected = signature(key, message_id, math.floor(stamped.timestamp()), payload).encode()
        # Single spaces separate signatures (a tab or a double space is not a separator).
        candidates = [candidate.encode() for candidate in given.split(" ")]
    except UnicodeEncodeError:  # a lone surrogate: no signature could cover it
        raise InvalidSignature("webhook headers are not valid text", reason="headers") from None
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        if not any(candidate.startswith(b"v1,") for candidate in candidates):
            raise InvalidSignature("no v1 signature", reason="signature")
        raise InvalidSignature(
            "no v1 signature matches (another secret, webhook-id, timestamp or body)",
            reason="signature",
        )
