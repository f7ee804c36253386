"""What callers may send: validated, unknown fields refused, each error naming its field."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
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


# -- the fields Peoplelogic and Plannr taught people ------------------------------

#: Plannr's priorities, lowest first (the order `sort=priority:1` follows).
PRIORITIES = ("low", "medium", "high", "highest")
Priority = Literal["low", "medium", "high", "highest"]
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_DATE_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _kind(value: str) -> str:
    value = value.strip().lower()
    if not _IDENTIFIER.match(value):
        raise ValueError("must be a word of letters, digits, _ or - (up to 64), like user or group")
    return value


def _key(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            "must start with a letter and hold only letters, digits, _ or - (up to 64)"
        )
    return value


def _stripped(value: str) -> str:
    return _not_blank(_no_control_chars(value))


Kind = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_kind)]
ExternalId = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_stripped)]
Label = Annotated[str, Field(max_length=200), AfterValidator(_no_control_chars)]
Order = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]
OrderGroup = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_stripped)]
TaskRef = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_stripped)]


def parse_date(value: str) -> date:
    """`YYYY-MM-DD`; raises ValueError saying so."""
    if not _DATE_FORM.match(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date as YYYY-MM-DD") from None


def number_value(value: float) -> int | float:
    """A finite number; integral ones as int (so 2.0 is stored and matched as 2)."""
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class Assignee(_Input):
    """Someone the task is assigned to: a user, a group, ... (Peoplelogic's entityType,
    entityId)."""

    type: Kind = Field("user", description="What `id` names: `user`, `group`, `team`, ...")
    id: ExternalId = Field(description="The assignee's id in that type (e.g. an e-mail).")


class ConnectedTo(_Input):
    """The entity the task is about (Peoplelogic's connectedTo, Plannr's taskable)."""

    type: Kind = Field(description="e.g. `okr`, `meeting`, `client`, `case`, `plan`.")
    id: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_stripped)]


class CustomField(_Input):
    """A typed value: `value` must match `type` (a `date` is `YYYY-MM-DD`)."""

    key: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_key)] = Field(
        description="Names the field in filters: `filter=customFields.<key>:<value>`."
    )
    name: Label | None = Field(None, description="A label for people (optional).")
    type: Literal["string", "number", "boolean", "date"]
    value: StrictBool | StrictInt | StrictFloat | StrictStr = Field(
        description="A string (up to 10,000), a finite number, true / false, or YYYY-MM-DD."
    )

    @field_validator("value")
    @classmethod
    def _typed(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError("must be true or false for type boolean")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a number for type number")
            return number_value(value)
        elif not isinstance(value, str):
            raise ValueError(f"must be a string for type {kind}")
        elif kind == "date":
            parse_date(value)
        elif len(value) > 10_000 or "\x00" in value:
            raise ValueError("must be at most 10,000 characters, without NUL")
        return value


class Mapping(_Input):
    """The task's counterpart in another system (Peoplelogic's mappings)."""

    app: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)] = Field(
        description="The other system, e.g. `peoplelogic` or `plannr`."
    )
    namespace: Label = Field("", description="A kind of object in that system (optional).")
    mappedId: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_stripped)]
    reference: Annotated[str, Field(max_length=500), AfterValidator(_no_control_chars)] | None = (
        Field(None, description="e.g. the object's URL there.")
    )
    mappingData: (
        dict[
            Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_stripped)],
            Annotated[str, Field(max_length=1000), AfterValidator(_no_control_chars)],
        ]
        | None
    ) = Field(None, max_length=20, description="Up to 20 string properties (never secrets).")


def _unique(items: list[Any], key: Any, what: str) -> list[Any]:
    seen: set[Any] = set()
    for index, item in enumerate(items):
        k = key(item)
        if k in seen:
            raise ValueError(f"[{index}] repeats {what} {k!r}")
        seen.add(k)
    return items


Assignees = Annotated[
    list[Assignee],
    Field(max_length=100),
    AfterValidator(lambda v: _unique(v, lambda a: (a.type, a.id), "the assignee")),
]
CustomFields = Annotated[
    list[CustomField],
    Field(max_length=50),
    AfterValidator(lambda v: _unique(v, lambda f: f.key, "the key")),
]
Mappings = Annotated[
    list[Mapping],
    Field(max_length=20),
    AfterValidator(lambda v: _unique(v, lambda m: (m.app, m.namespace), "app and namespace")),
]


class TaskFields(_Input):
    """The fields beside Appmixer's (Peoplelogic's and Plannr's); all optional."""

    assignees: Assignees | None = Field(None, description="Several, typed; `[]` clears.")
    priority: Priority | None = Field(None, description="low | medium | high | highest")
    order: Order | None = Field(None, description="Position among its order group.")
    orderGroup: OrderGroup | None = Field(None, description="Which ordering `order` counts in.")
    customFields: CustomFields | None = Field(None, description="Typed values; `[]` clears.")
    connectedTo: ConnectedTo | None = Field(None, description="The entity the task is about.")
    parentId: TaskRef | None = Field(None, description="A task of the same organization.")
    mappings: Mappings | None = Field(None, description="Ids of this task in other systems.")
    active: bool | None = Field(
        None, description="A flag (default true): `false` marks the task inactive."
    )


class _AppmixerCreate(_Input):
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


class TaskCreate(TaskFields, _AppmixerCreate):
    """A new task. `title`, `requester` and `approver` are required; the rest is optional."""


class _AppmixerEdit(_Input):
    title: Title | None = None
    requester: Email | None = None
    approver: Email | None = None
    description: Description | None = None
    decisionBy: Timestamp | None = None
    status: Status | None = None
    public: bool | None = None
    allowLateDecision: bool | None = None
    comment: Comment | None = Field(None, description="Recorded with a decision made by edit.")


class TaskEdit(TaskFields, _AppmixerEdit):
    """Fields to change; absent fields stay as they are (`null` clears an optional one)."""


class Decide(_Input):
    """Body of approve / reject (all optional)."""

    secret: Annotated[str, Field(max_length=200), AfterValidator(_no_control_chars)] | None = Field(
        None, description="The approver secret (or pass it as a query parameter, or a token)."
    )
    comment: Comment | None = None


NoteText = Annotated[
    str,
    Field(min_length=1, max_length=10_000),
    AfterValidator(_no_control_chars),
    AfterValidator(_not_blank),
]


class NoteCreate(_Input):
    """A note to append to a task; its author is the caller."""

    text: NoteText
    secret: Annotated[str, Field(max_length=200), AfterValidator(_no_control_chars)] | None = Field(
        None, description="An approver or requester secret (or pass it as a query parameter)."
    )


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
