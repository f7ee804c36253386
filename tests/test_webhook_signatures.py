"""`webhooks.signatures.verify()` against the Standard Webhooks reference library.

Every case asks both: `verify()` must accept exactly what `standardwebhooks` accepts,
and refuse the rest with `InvalidSignature` naming the failed check (never a
`binascii.Error`, `TypeError` or another stray exception).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from peopletasks.webhooks.signatures import (
    InvalidSignature,
    decode_secret,
    signature,
    signed_headers,
    verify,
)

KEY = bytes(range(1, 25))  # 24 bytes: base64 without padding
ODD_KEY = bytes(range(1, 33))  # 32 bytes: base64 ends in '='
SECRET = "whsec_" + base64.b64encode(KEY).decode()
ODD_SECRET = "whsec_" + base64.b64encode(ODD_KEY).decode()
UNPADDED = ODD_SECRET.rstrip("=")
BODY = b'{"type": "task.approved", "id": "t1"}'
MESSAGE_ID = "msg_2b9f"


def reference_accepts(secret: str | bytes, headers: dict[str, str], body: bytes) -> bool:
    """The reference library's verdict: any exception (its own or not) is a refusal."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception:
        return False
    return True


def ours(secret: str | bytes, headers: dict[str, str], body: bytes) -> str | None:
    """None when `verify()` accepts, else the refusal's reason. Any other exception fails."""
    try:
        verify(secret, headers, body)
    except InvalidSignature as refused:
        return refused.reason
    return None


def signed(
    key: bytes = KEY, *, message_id: str = MESSAGE_ID, body: bytes = BODY, at: float | None = None
) -> dict[str, str]:
    return signed_headers(key, message_id, body, now=time.time() if at is None else at)


def test_our_signatures_verify_with_the_reference_library() -> None:
    for key in (KEY, ODD_KEY):
        headers = signed(key)
        secret = "whsec_" + base64.b64encode(key).decode()
        assert Webhook(secret).verify(BODY, headers) == {"type": "task.approved", "id": "t1"}
        assert ours(secret, headers, BODY) is None


def test_the_reference_librarys_signatures_verify_with_ours() -> None:
    now = int(time.time())
    header = Webhook(SECRET).sign(MESSAGE_ID, datetime.fromtimestamp(now, UTC), BODY)
    assert header == signature(KEY, MESSAGE_ID, now, BODY)
    headers = {"webhook-id": MESSAGE_ID, "webhook-timestamp": str(now), "webhook-signature": header}
    assert ours(SECRET, headers, BODY) is None


# --- accepted --------------------------------------------------------------------------------


Case = tuple[str | bytes, dict[str, str], bytes]


def _accepted(case: str) -> Case:
    """Built when the test runs (not at collection): the timestamps are fresh."""
    headers = signed(ODD_KEY)
    good = headers["webhook-signature"]
    now = time.time()
    cases: dict[str, Case] = {
        "padded whsec_ secret": (ODD_SECRET, headers, BODY),
        "unpadded whsec_ secret": (UNPADDED, headers, BODY),
        "bare base64 secret": (ODD_SECRET.removeprefix("whsec_"), headers, BODY),
        "bare unpadded secret": (UNPADDED.removeprefix("whsec_"), headers, BODY),
        "extra padding": (ODD_SECRET + "==", headers, BODY),
        "the key as bytes": (ODD_KEY, headers, BODY),
        "several signatures, the match last": (
            ODD_SECRET, {**headers, "webhook-signature": f"v1,AAAA v1,{'B' * 44} {good}"}, BODY
        ),
        "other versions beside v1": (
            ODD_SECRET, {**headers, "webhook-signature": f"v1a,xyz v2,{good[3:]} {good}"}, BODY
        ),
        "header names in any case": (ODD_SECRET, {k.upper(): v for k, v in headers.items()}, BODY),
        "4 minutes old": (ODD_SECRET, signed(ODD_KEY, at=now - 240), BODY),
        "4 minutes ahead": (ODD_SECRET, signed(ODD_KEY, at=now + 240), BODY),
        "a fractional timestamp": (
            ODD_SECRET, {**headers, "webhook-timestamp": headers["webhook-timestamp"] + ".4"}, BODY
        ),
        "an empty body": (ODD_SECRET, signed(ODD_KEY, body=b""), b""),
        "a body that is not UTF-8": (ODD_SECRET, signed(ODD_KEY, body=b"\xff\x00"), b"\xff\x00"),
    }  # fmt: skip
    return cases[case]


ACCEPTED = [
    "padded whsec_ secret",
    "unpadded whsec_ secret",
    "bare base64 secret",
    "bare unpadded secret",
    "extra padding",
    "the key as bytes",
    "several signatures, the match last",
    "other versions beside v1",
    "header names in any case",
    "4 minutes old",
    "4 minutes ahead",
    "a fractional timestamp",
    "an empty body",
    "a body that is not UTF-8",
]


@pytest.mark.parametrize("case", ACCEPTED)
def test_accepted_as_the_reference_accepts(case: str) -> None:
    secret, headers, body = _accepted(case)
    assert reference_accepts(secret, headers, body)
    assert ours(secret, headers, body) is None


def test_the_unpadded_secret_decodes_to_the_same_key() -> None:
    assert UNPADDED.endswith(("A", "g", "Q", "w")) and not UNPADDED.endswith("=")
    assert decode_secret(UNPADDED) == decode_secret(ODD_SECRET) == ODD_KEY


# --- refused: one test per failure mode ------------------------------------------------------


def assert_refused(secret: str | bytes, headers: dict[str, str], body: bytes, reason: str) -> None:
    assert not reference_accepts(secret, headers, body)
    assert ours(secret, headers, body) == reason


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_A",  # one base64 character: no whole byte
        "whsec_AAAAA",  # five: one more than a multiple of four
        "whsec_",  # empty
        "whsec_====",  # only padding: an empty key
        "whsec_clé",  # not ASCII
        b"",  # an empty key
    ],
)
def test_refused_bad_secret_encoding(secret: str | bytes) -> None:
    assert_refused(secret, signed(), BODY, "secret")


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_refused_missing_headers(header: str) -> None:
    headers = signed()
    assert_refused(SECRET, {k: v for k, v in headers.items() if k != header}, BODY, "headers")
    assert_refused(SECRET, {**headers, header: ""}, BODY, "headers")


def test_refused_stale_timestamp() -> None:
    assert_refused(SECRET, signed(at=time.time() - 360), BODY, "timestamp")


def test_refused_future_timestamp() -> None:
    assert_refused(SECRET, signed(at=time.time() + 360), BODY, "timestamp")


@pytest.mark.parametrize("stamp", ["soon", "nan", "inf", "1e300", "0x10", ""])
def test_refused_malformed_timestamp(stamp: str) -> None:
    headers = {**signed(), "webhook-timestamp": stamp}
    assert_refused(SECRET, headers, BODY, "headers" if not stamp else "timestamp")


def test_refused_wrong_signature() -> None:
    assert_refused(SECRET, signed(ODD_KEY), BODY, "signature")


def test_refused_no_v1_signature() -> None:
    good = signed()["webhook-signature"]
    for header in (f"v2,{good[3:]}", f"v1a,{good[3:]}", good[3:], f"V1,{good[3:]}"):
        headers = {**signed(), "webhook-signature": header}
        assert_refused(SECRET, headers, BODY, "signature")


def test_refused_signatures_not_separated_by_single_spaces() -> None:
    good = signed()["webhook-signature"]
    for header in (f"v1,AAAA\t{good}", f"v1,AAAA,{good}", f" {good}x"):
        assert_refused(SECRET, {**signed(), "webhook-signature": header}, BODY, "signature")


def test_refused_tampered_body() -> None:
    assert_refused(SECRET, signed(), BODY.replace(b"approved", b"rejected"), "signature")


def test_refused_wrong_id() -> None:
    assert_refused(SECRET, {**signed(), "webhook-id": "msg_other"}, BODY, "signature")


def test_refused_signature_header_with_non_ascii_text() -> None:
    # compare_digest refuses non-ASCII str; both sides compare bytes instead.
    assert_refused(SECRET, {**signed(), "webhook-signature": "v1,é"}, BODY, "signature")


def test_the_window_is_judged_against_now() -> None:
    headers = signed(at=1_000_000)
    verify(SECRET, headers, BODY, now=1_000_000 + 299)
    with pytest.raises(InvalidSignature) as refused:
        verify(SECRET, headers, BODY, now=1_000_000 + 301)
    assert refused.value.reason == "timestamp"
    assert "old" in str(refused.value)


# --- any input: the same verdict as the reference --------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@st.composite
def _requests(draw: Any) -> tuple[str | bytes, dict[str, str], bytes]:
    key = draw(st.binary(min_size=0, max_size=40))
    encoded = base64.b64encode(key).decode()
    secret: str | bytes = draw(
        st.sampled_from(
            [
                "whsec_" + encoded,
                "whsec_" + encoded.rstrip("="),
                encoded.rstrip("="),
                key,
                "whsec_" + draw(st.text(alphabet=_B64 + "=-_ é", max_size=12)),
            ]
        )
    )
    body = draw(st.binary(max_size=64))
    # Far from the window's edges: the two clocks are read a moment apart.
    offset = draw(st.sampled_from([0.0, -100.0, 200.0, -400.0, 500.0, -1e6]))
    headers = signed_headers(key or b"k", "msg_x", body, now=time.time() + offset)
    good = headers["webhook-signature"]
    header = draw(
        st.sampled_from(
            [good, f"v1,AAAA {good}", f"{good} v2,x", f"v1,AAAA\t{good}", f"v2,{good[3:]}", ""]
        )
    )
    headers["webhook-signature"] = header
    if draw(st.booleans()):
        headers["webhook-id"] = draw(st.sampled_from(["msg_x", "msg_y", ""]))
    if draw(st.booleans()):
        headers["webhook-timestamp"] = draw(
            st.sampled_from([headers["webhook-timestamp"] + ".9", " 12 ", "x", "-1"])
        )
    if draw(st.booleans()):
        body = draw(st.sampled_from([body + b" ", b""]))
    return secret, headers, body


@settings(max_examples=400, deadline=None)
@given(_requests())
def test_any_request_gets_the_reference_librarys_verdict(
    request: tuple[str | bytes, dict[str, str], bytes],
) -> None:
    secret, headers, body = request
    assert (ours(secret, headers, body) is None) == reference_accepts(secret, headers, body)
