"""What callers may send: validated, unknown fields refused, each error naming its field."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from peopletasks.timeutil import parse_datetime

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class Status(StrEnum):
    """The life of a task: it starts pending and ends in one final state."""

    PENDING = "pending"  #: waiting for the approver
    APPROVED = "approved"  #: the approver said yes
    REJECTED = "rejected"  #: the approver said no
    DUE = "due"  #: the deadline passed without a decision


FINAL_STATUSES = frozenset({Status.APPROVED, Status.REJECTED, Status.DUE})


def _no_control_chars(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def normalize_email(value: str) -> str:
    """Lower-cased, trimmed; raises ValueError when it is not an e-mail address."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email.split("@")[1]:
        raise ValueError("must be an e-mail address like someone@example.com")
    return email


def _parse_datetime(value: object) -> object:
    if isinstance(value, str):
        return parse_datetime(value)
    if isinstance(value, datetime):
        raise ValueError("must be a string")
    return value


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_no_control_chars)]
Email = Annotated[str, Field(max_length=320), AfterValidator(normalize_email)]
Title = Annotated[
    str,
    Field(min_length=1, max_length=1000),
    AfterValidator(_no_control_chars),
    AfterValidator(_not_blank),
]
Description = Annotated[str, Field(max_length=100_000), AfterValidator(_no_control_chars)]
Comment = Annotated[str, Field(max_length=10_000), AfterValidator(_no_control_chars)]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_datetime),
    Field(
        description="ISO 8601 (e.g. 2026-12-01T17:00:00Z); `YYYY-MM-DD HH:MM:SS` is read as UTC.",
        json_schema_extra={"type": "string", "format": "date-time"},
    ),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, str_max_length=100_000)


class TaskCreate(_Input):
    """A new task. `title`, `requester` and `approver` are required."""

    title: Title
    requester: Email
    approver: Email
    description: Description = ""
    decisionBy: Timestamp | None = Field(
        None, description="Deadline; after it the task becomes `due`. No deadline when absent."
    )
    status: Status = Field(Status.PENDING, description="Must be `pending` (the seed allows it).")
    public: bool = Field(True, description="Kept for Appmixer compatibility; stored and echoed.")
    allowLateDecision: bool = Field(
        False, description="May the approver still decide once the task is `due`?"
    )
    requestKey: (
        Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control_chars)]
        | None
    ) = Field(
        None,
        description="Idempotency key: a create with a key already used in the organization "
        "answers 200 with that task (and its secrets) instead of creating another.",
    )


class TaskEdit(_Input):
    """Fields to change; absent fields stay as they are."""

    title: Title | None = None
    requester: Email | None = None
    approver: Email | None = None
    description: Description | None = None
    decisionBy: Timestamp | None = None
    status: Status | None = None
    public: bool | None = None
    allowLateDecision: bool | None = None
    comment: Comment | None = Field(None, description="Recorded with a decision made by edit.")


class Decide(_Input):
    """Body of approve / reject (all optional)."""

    secret: Annotated[str, Field(max_length=200), AfterValidator(_no_control_chars)] | None = Field(
        None, description="The approver secret (or pass it as a query parameter, or a token)."
    )
    comment: Comment | None = None


class PrefectResume(_Input):
    """Resume a paused or suspended Prefect flow run with the decision as run input."""

    flowRunId: UUID = Field(description="The flow run to resume.")
    apiUrl: Annotated[
        str, Field(min_length=1, max_length=2000), AfterValidator(_no_control_chars)
    ] = Field(description="Prefect's API URL, e.g. http://127.0.0.1:4200/api.")
    apiKey: Annotated[str, Field(max_length=500), AfterValidator(_no_control_chars)] | None = Field(
        None, description="A Prefect Cloud API key (sent as a bearer token; stored)."
    )


class WebhookCreate(_Input):
    """`url` (POST the event there) or `prefect` (resume a flow run), and the task."""

    taskId: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_control_chars)]
    url: (
        Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_control_chars)]
        | None
    ) = None
    prefect: PrefectResume | None = None

    @model_validator(mode="after")
    def _one_target(self) -> WebhookCreate:
        if (self.url is None) == (self.prefect is None):
            raise ValueError("give exactly one of url and prefect")
        return self
