"""The values callers send, validated: each error names what is wrong with it.

The task's own fields (`fields.FIELDS`) and the bodies of `inputs` are made of these.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

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

#: An address a mailer can send to: a dot-atom local part (RFC 5322's atext, or any
#: non-ASCII letter) and a domain of letters, digits and hyphens. Quoted local parts,
#: comments, display names and lists (`a@x.com, b@y.com`) are refused.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]"
_EMAIL = re.compile(
    rf"^{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def no_control_chars(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def email_as_given(value: str) -> str:
    """Trimmed, its case kept (as Appmixer keeps it); raises ValueError when it is not an
    e-mail address."""
    email = value.strip()
    if len(email) > 254 or len(email.split("@")[0]) > 64 or not _EMAIL.match(email):
        raise ValueError("must be an e-mail address like someone@example.com")
    return email


def email_key(value: str) -> str:
    """How an address is compared and looked up: trimmed and lower-cased. Every
    comparison of addresses (who may read or decide, filters, secrets, links, tokens)
    uses this form; `email_as_given` is only what is shown."""
    return value.strip().lower()


def normalize_email(value: str) -> str:
    """Lower-cased, trimmed (`email_key`); raises ValueError when it is not an e-mail
    address."""
    return email_key(email_as_given(value))


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


Text = Annotated[str, AfterValidator(no_control_chars)]
#: An address as the caller gave it (trimmed, case kept); its `email_key` is what
#: compares.
Email = Annotated[str, Field(max_length=320), AfterValidator(email_as_given)]
Title = Annotated[
    str,
    Field(min_length=1, max_length=1000),
    AfterValidator(no_control_chars),
    AfterValidator(_not_blank),
]
Description = Annotated[str, Field(max_length=100_000), AfterValidator(no_control_chars)]
Comment = Annotated[str, Field(max_length=10_000), AfterValidator(no_control_chars)]
RequestKey = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_control_chars)]
Secret = Annotated[str, Field(max_length=200), AfterValidator(no_control_chars)]
NoteText = Annotated[
    str,
    Field(min_length=1, max_length=10_000),
    AfterValidator(no_control_chars),
    AfterValidator(_not_blank),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_datetime),
    Field(
        description="ISO 8601 (e.g. 2026-12-01T17:00:00Z); `YYYY-MM-DD HH:MM:SS` is read as UTC.",
        json_schema_extra={"type": "string", "format": "date-time"},
    ),
]


class Input(BaseModel):
    """A body or part of one: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, str_max_length=100_000)


# -- the fields Peoplelogic and Plannr taught people ------------------------------

#: Plannr's priorities, lowest first (the order `sort=priority:1` follows).
Priority = Literal["low", "medium", "high", "highest"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
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
    return _not_blank(no_control_chars(value))


EntityKind = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_kind)]
ExternalId = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_stripped)]
Label = Annotated[str, Field(max_length=200), AfterValidator(no_control_chars)]
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


#: The largest whole number a custom field holds exactly (both stores keep 64-bit integers).
MAX_WHOLE_NUMBER = 2**63 - 1


def number_value(value: float) -> int | float:
    """A finite number; integral ones as int (so 2.0 is stored and matched as 2)."""
    if isinstance(value, int):
        if abs(value) > MAX_WHOLE_NUMBER:
            raise ValueError(
                f"a whole number must be between -{MAX_WHOLE_NUMBER} and {MAX_WHOLE_NUMBER}"
            )
        return value
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class Assignee(Input):
    """Someone the task is assigned to: a user, a group, ... (Peoplelogic's entityType,
    entityId)."""

    type: EntityKind = Field("user", description="What `id` names: `user`, `group`, `team`, ...")
    id: ExternalId = Field(description="The assignee's id in that type (e.g. an e-mail).")


class ConnectedTo(Input):
    """The entity the task is about (Peoplelogic's connectedTo, Plannr's taskable)."""

    type: EntityKind = Field(description="e.g. `okr`, `meeting`, `client`, `case`, `plan`.")
    id: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_stripped)]


class CustomField(Input):
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


class Mapping(Input):
    """The task's counterpart in another system (Peoplelogic's mappings)."""

    app: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)] = Field(
        description="The other system, e.g. `peoplelogic` or `plannr`."
    )
    namespace: Label = Field("", description="A kind of object in that system (optional).")
    mappedId: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_stripped)]
    reference: Annotated[str, Field(max_length=500), AfterValidator(no_control_chars)] | None = (
        Field(None, description="e.g. the object's URL there.")
    )
    mappingData: (
        dict[
            Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_stripped)],
            Annotated[str, Field(max_length=1000), AfterValidator(no_control_chars)],
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


def _unique_addresses(emails: list[str]) -> list[str]:
    return _unique(emails, email_key, "the address")


Approvers = Annotated[
    list[Email], Field(min_length=1, max_length=20), AfterValidator(_unique_addresses)
]
Quorum = Annotated[StrictInt, Field(ge=1, le=20)]
OptionKey = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_key)]
OptionLabel = Annotated[
    str,
    Field(min_length=1, max_length=100),
    AfterValidator(no_control_chars),
    AfterValidator(_not_blank),
]


class Option(Input):
    """A response the approver may choose: its key, its button's label, its outcome."""

    key: OptionKey = Field(description="Names it in `PUT /tasks/{id}/respond` (`option`).")
    label: OptionLabel
    outcome: Literal["approved", "rejected"] = Field(description="What choosing it means.")


def _both_outcomes(options: list[Option]) -> list[Option]:
    _unique(options, lambda o: o.key, "the key")
    if {o.outcome for o in options} != {"approved", "rejected"}:
        raise ValueError("needs at least one option of each outcome, approved and rejected")
    return options


Options = Annotated[
    list[Option], Field(min_length=2, max_length=10), AfterValidator(_both_outcomes)
]


# -- follow-ups: notifications, reminders, escalation, delegation -------------------------

#: The longest duration a reminder or escalation takes (ten years, in seconds).
MAX_DURATION_SECONDS = 3650 * 86400.0
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_ISO_DURATION = re.compile(
    rf"^P(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
)
_CALENDAR_UNITS = re.compile(r"^P(?:[^T]*[YM])")
DURATION_HINT = "an ISO 8601 duration such as P1D, PT24H or P1DT12H, or a number of seconds"


def duration_seconds(value: str | int | float) -> float:
    """Seconds of a duration as callers give it (ISO 8601 or seconds); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().upper()
        if _CALENDAR_UNITS.match(text):
            raise ValueError("years and months have no fixed length: give weeks or days (P30D)")
        found = _ISO_DURATION.match(text)
        if found is None or text in {"P", "PT"} or text.endswith("T"):
            raise ValueError(f"expected {DURATION_HINT}")
        weeks, days, hours, minutes, secs = (
            float(part.replace(",", ".")) if part else 0.0 for part in found.groups()
        )
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    if not math.isfinite(seconds) or seconds < 1:
        raise ValueError("must be at least one second")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("must be at most 3650 days")
    return seconds


def _duration(value: object) -> object:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected {DURATION_HINT}")
    duration_seconds(value)
    return value.strip().upper() if isinstance(value, str) else value


Duration = Annotated[
    str | int | float,
    BeforeValidator(_duration),
    Field(
        description="ISO 8601 (P1D, PT24H, P1DT12H; no years or months) or seconds.",
        json_schema_extra={"examples": ["P1D", "PT1H", 3600]},
    ),
]

#: How the service may notify people of a task.
Channel = Literal["email"]
Channels = Annotated[
    list[Channel],
    Field(max_length=1),
    AfterValidator(lambda v: _unique(v, lambda c: c, "the channel")),
]


class Reminders(Input):
    """When the pending approver is reminded: every `every` from the task's creation
    and `beforeDue` before its deadline, at most `max` times in all."""

    every: Duration | None = Field(None, description="Repeat this long after creation.")
    beforeDue: list[Duration] = Field(
        default_factory=list, max_length=10, description="This long before `decisionBy`."
    )
    max: StrictInt = Field(10, ge=1, le=100, description="At most this many reminders.")

    @model_validator(mode="after")
    def _something(self) -> Reminders:
        if self.every is None and not self.beforeDue:
            raise ValueError("give every, beforeDue or both")
        return self


EscalationAction = Literal["notify", "reassign", "approve", "reject"]


class Escalation(Input):
    """What happens when the task is still pending `after` its creation: `notify`
    tells `to`; `reassign` makes `to` the approver; `approve` / `reject` decide it as
    the system (and tell `to`, when given)."""

    after: Duration = Field(description="This long after creation.")
    to: Email | None = Field(None, description="The escalation contact.")
    action: EscalationAction = "notify"

    @model_validator(mode="after")
    def _contact(self) -> Escalation:
        if self.to is None and self.action in ("notify", "reassign"):
            raise ValueError(f"`to` is required for action {self.action}")
        return self
