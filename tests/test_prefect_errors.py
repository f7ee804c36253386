"""The errors a flow run can end with survive pickling, as Prefect stores them: a
`run_deployment` caller (or `state.result()` in another process) gets the same error."""

from __future__ import annotations

import pickle

import pytest

from peopletasks import ApprovalDue, ApprovalTimeout, BackendError, RequestKeyConflict
from peopletasks.mail import MailDeliveryError

ERRORS = [
    BackendError("create task", "no answer", status_code=503, outcome_unknown=True),
    BackendError("read task", "cannot reach it"),
    ApprovalDue("65f1c0ffee0123456789abcd", "2026-12-01T17:00:00Z"),
    ApprovalTimeout("65f1c0ffee0123456789abcd", 30.0),
    RequestKeyConflict(
        "recurring:monthly/reviews:2026-12:expenses",
        "65f1c0ffee0123456789abcd",
        {"title": ("Approve expenses", "Approve costs")},
    ),
    MailDeliveryError(
        recipients=["lead@example.com"],
        code=550,
        smtp_message="no such user",
        message_id="<task-1.approval@x>",
        permanent=True,
        attempts=1,
        server="smtp.example.com:587",
    ),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_round_trips_through_pickle(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_the_errors_say_what_happened() -> None:
    timeout = ApprovalTimeout("t1", 30.0)
    assert not isinstance(timeout, TimeoutError)  # Prefect would skip the run's retries
    assert str(timeout) == "no decision on task t1 within 30 s"
    conflict = ERRORS[4]
    assert "'Approve expenses' there, 'Approve costs' asked" in str(conflict)
    assert BackendError("c", "m", status_code=503).worth_retrying
