"""A task's fields, declared once.

Each `TaskField` says what one field of a task is: its public name, the column that
holds it, its kind, how a caller may give it (on create, on edit) and how it is
shown. The rest is derived from `FIELDS`:

- a task's view (`views.task_view`) and what a list's `projection` chooses from;
- the create and edit bodies (`inputs.TaskCreate`, `inputs.TaskEdit`) and the
  columns a given value is written to (`columns_for`);
- the `filter` and `sort` names of a list (`selection`);
- the public schemas (`service.schemas.TaskPublic`, `TaskListItem`).

To add a field: add its column (store/tables.py and a migration), then one
`TaskField` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as Described

from peopletasks.domain.approvers import Rule, states_of
from peopletasks.domain.options import options_of
from peopletasks.domain.status import Status
from peopletasks.domain.values import (
    PRIORITIES,
    Approvers,
    Assignees,
    Channels,
    ConnectedTo,
    CustomFields,
    Description,
    Email,
    Escalation,
    Mappings,
    Options,
    Order,
    OrderGroup,
    Priority,
    Quorum,
    Reminders,
    RequestKey,
    TaskRef,
    Timestamp,
    Title,
    email_key,
)
from peopletasks.timeutil import format_datetime


class Kind(StrEnum):
    """How a field's values compare, in filters and sorts."""

    TEXT = "text"  #: as given
    EMAIL = "email"  #: an address, compared lower-cased
    CHOICE = "choice"  #: one of the field's `choices`; sorts in their order
    DATETIME = "datetime"  #: filters take <, <=, >, >= and null
    NUMBER = "number"  #: a whole number; filters take <, <=, >, >=
    BOOLEAN = "boolean"  #: true or false
    STRUCTURED = "structured"  #: a list or an object: shown, not filtered or sorted


class OnCreate(Enum):
    """Whether a create body gives the field."""

    NO = "no"  #: set by the service
    OPTIONAL = "optional"
    REQUIRED = "required"


#: "No default in the public schema": the field is always present.
ALWAYS = object()


# -- how structured fields look to callers -------------------------------------------


class AssigneePublic(BaseModel):
    type: str = Described(description="`user`, `group`, ...")
    id: str


class ConnectedToPublic(BaseModel):
    type: str
    id: str


class CustomFieldPublic(BaseModel):
    key: str
    name: str | None
    type: Literal["string", "number", "boolean", "date"]
    value: bool | int | float | str = Described(description="Of `type`; a date is YYYY-MM-DD.")


class MappingPublic(BaseModel):
    app: str
    namespace: str
    mappedId: str
    reference: str | None = None
    mappingData: dict[str, str] | None = None


StatusName = Literal["pending", "approved", "rejected", "due"]


class ApproverPublic(BaseModel):
    email: str
    status: Literal["waiting", "pending", "approved", "rejected"] = Described(
        description="waiting: a sequential task has not asked them yet."
    )
    respondedAt: str | None
    comment: str | None
    option: str | None = Described(description="The key of the option they chose.")
    data: dict[str, Any] | None = Described(description="What they filled in the form.")


class OptionPublic(BaseModel):
    key: str
    label: str
    outcome: Literal["approved", "rejected"]


DurationShown = str | int | float


class RemindersPublic(BaseModel):
    every: DurationShown | None
    beforeDue: list[DurationShown]
    max: int


class EscalationPublic(BaseModel):
    after: DurationShown
    to: str | None
    action: Literal["notify", "reassign", "approve", "reject"]


class ReassignmentPublic(BaseModel):
    from_: str = Described(alias="from", description="The approver before.")
    to: str = Described(description="The approver after.")
    reassignedAt: str
    reassignedBy: str | None = Described(description="Who; null when the escalation did.")
    comment: str | None
    reason: Literal["reassigned", "escalation"]


class StatusChange(BaseModel):
    from_: StatusName | None = Described(alias="from")
    to: StatusName
    changedAt: str
    changedBy: str | None = Described(description="Who changed it; null when the deadline did.")


# -- the declaration -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskField:
    """One field of a task (see the module's docstring)."""

    name: str
    kind: Kind
    #: Its type in the public schema.
    shown_as: Any
    #: The column holding it (None: `show` and `store` say how it is kept).
    column: str | None = None
    description: str = ""
    #: Its default in the public schema (`ALWAYS`: always present).
    shown_default: Any = ALWAYS
    #: The validated type a caller gives (None: read-only).
    given_as: Any = None
    on_create: OnCreate = OnCreate.NO
    #: The value of a create that does not give it.
    create_default: Any = None
    editable: bool = False
    #: On edit, `null` clears it (else `null` is refused).
    clearable: bool = True
    #: Part of what the approver decides on: it cannot change once the task is decided.
    term: bool = False
    #: A CHOICE field's values.
    choices: tuple[str, ...] = ()
    #: A CHOICE field sorts by the order of its `choices`, not alphabetically.
    ranked: bool = False
    #: Filterable and sortable parts of a STRUCTURED field: public suffix -> column.
    parts: Mapping[str, str] = field(default_factory=dict)
    #: The shown value from a task row (default: its column, as its kind shows).
    show: Callable[[Any], Any] | None = None
    #: The columns a given value is written to (default: its column, as given).
    store: Callable[[Any], dict[str, Any]] | None = None

    def shown(self, row: Any) -> Any:
        """Its value on `row` (a task row, or anything with its columns as attributes)."""
        if self.show is not None:
            return self.show(row)
        assert self.column is not None
        value = getattr(row, self.column)
        return format_datetime(value) if self.kind is Kind.DATETIME else value

    def columns(self, value: Any) -> dict[str, Any]:
        if self.store is not None:
            return self.store(value)
        assert self.column is not None
        return {self.column: value}


def _custom_fields_shown(row: Any) -> list[dict[str, Any]]:
    """Kept by key (so filters reach a value by path); shown as a list, in order."""
    stored = row.custom_fields
    return [{"key": key, **value} for key, value in stored.items()] if stored else []


def _custom_fields_stored(value: list[dict[str, Any]] | None) -> dict[str, Any]:
    by_key = {
        f["key"]: {"name": f["name"], "type": f["type"], "value": f["value"]} for f in value or ()
    }
    return {"custom_fields": by_key or None}


def _connected_to_shown(row: Any) -> dict[str, Any] | None:
    if row.connected_id is None:
        return None
    return {"type": row.connected_type, "id": row.connected_id}


def _connected_to_stored(value: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "connected_type": value["type"] if value else None,
        "connected_id": value["id"] if value else None,
    }


def _mappings_stored(value: list[dict[str, Any]] | None) -> dict[str, Any]:
    kept = [{k: v for k, v in m.items() if v is not None} for m in value or ()]
    return {"mappings": kept or None}


def _list_or_empty(column: str) -> Callable[[Any], Any]:
    return lambda row: getattr(row, column) or []


def _address_shown(column: str) -> Callable[[Any], Any]:
    """An address as it was given: its `<column>_given` (kept only where the case
    differs from the key), else the key in `column`."""
    given = f"{column}_given"
    return lambda row: getattr(row, given) or getattr(row, column)


def _address_stored(column: str) -> Callable[[Any], dict[str, Any]]:
    """The key (`email_key`: what compares, filters, sorts and is indexed) in `column`,
    the address as given beside it when its case differs."""
    given = f"{column}_given"

    def store(value: str) -> dict[str, Any]:
        key = email_key(value)
        return {column: key, given: value if value != key else None}

    return store


FIELDS: tuple[TaskField, ...] = (
    TaskField("id", Kind.TEXT, str, "id"),
    # Appmixer's name of the id: its components read `taskId` from a create answer and
    # a webhook body.
    TaskField(
        "taskId",
        Kind.TEXT,
        str,
        "id",
        description="The same as `id` (Appmixer's components read `taskId`).",
    ),
    TaskField(
        "title",
        Kind.TEXT,
        str,
        "title",
        given_as=Title,
        on_create=OnCreate.REQUIRED,
        editable=True,
        clearable=False,
        term=True,
    ),
    TaskField(
        "description",
        Kind.TEXT,
        str,
        "description",
        description="Markdown.",
        given_as=Description,
        on_create=OnCreate.OPTIONAL,
        create_default="",
        editable=True,
        term=True,
        store=lambda value: {"description": value or ""},
    ),
    TaskField(
        "requester",
        Kind.EMAIL,
        str,
        "requester",
        description="An e-mail address, shown as given; compared without regard to case.",
        given_as=Email,
        on_create=OnCreate.REQUIRED,
        editable=True,
        clearable=False,
        term=True,
        show=_address_shown("requester"),
        store=_address_stored("requester"),
    ),
    TaskField(
        "approver",
        Kind.EMAIL,
        str,
        "approver",
        description="An e-mail address, shown as given; compared without regard to case.",
        given_as=Email,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        clearable=False,
        term=True,
        show=_address_shown("approver"),
        store=_address_stored("approver"),
    ),
    TaskField(
        "approvers",
        Kind.STRUCTURED,
        list[ApproverPublic],
        description="Everyone who approves it (1-20 addresses on create, instead of or "
        "beside `approver`, which is the first), each with where they stand.",
        shown_default=[],
        given_as=Approvers,
        on_create=OnCreate.OPTIONAL,
        term=True,
        show=states_of,
        store=lambda value: {},  # their states: made by the create, with the rule
    ),
    TaskField(
        "decisionRule",
        Kind.CHOICE,
        Literal["any", "all", "quorum", "sequential"],
        "decision_rule",
        description="How the approvers' responses decide: any (the first), all, quorum "
        "(`quorum` of them), sequential (in order, each after the one before approved).",
        shown_default="any",
        given_as=Rule,
        on_create=OnCreate.OPTIONAL,
        create_default=Rule.ANY,
        clearable=False,
        term=True,
        choices=tuple(Rule),
        store=lambda value: {"decision_rule": Rule(value).value},
    ),
    TaskField(
        "quorum",
        Kind.NUMBER,
        int | None,
        "quorum",
        description="With decisionRule quorum: approved at this many approvals.",
        shown_default=None,
        given_as=Quorum,
        on_create=OnCreate.OPTIONAL,
        term=True,
    ),
    TaskField(
        "options",
        Kind.STRUCTURED,
        list[OptionPublic],
        description="The responses an approver chooses from (2-10), each with its outcome; "
        "approve and reject unless given.",
        shown_default=[],
        given_as=Options,
        on_create=OnCreate.OPTIONAL,
        term=True,
        show=options_of,
        store=lambda value: {"options": value or None},
    ),
    TaskField(
        "form",
        Kind.STRUCTURED,
        dict[str, Any] | None,
        "form",
        description="A JSON Schema object the approver fills (string, number, integer, "
        "boolean properties; enum, format date, minimum / maximum, maxLength, required).",
        shown_default=None,
        given_as=dict[str, Any],
        on_create=OnCreate.OPTIONAL,
        term=True,
    ),
    TaskField(
        "allowSelfApproval",
        Kind.BOOLEAN,
        bool,
        "allow_self_approval",
        description="May the requester be among the approvers (and approve)?",
        shown_default=False,
        given_as=bool,
        on_create=OnCreate.OPTIONAL,
        create_default=False,
        clearable=False,
        term=True,
    ),
    TaskField(
        "status",
        Kind.CHOICE,
        StatusName,
        "status",
        description="pending, then approved, rejected or due.",
        given_as=Status,
        on_create=OnCreate.OPTIONAL,
        create_default=Status.PENDING,
        clearable=False,
        choices=tuple(Status),
    ),
    TaskField(
        "decisionBy",
        Kind.DATETIME,
        str | None,
        "decision_by",
        description="Deadline (ISO 8601 with zone); after it the task becomes `due`. "
        "No deadline when null.",
        given_as=Timestamp,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        term=True,
    ),
    TaskField(
        "public",
        Kind.BOOLEAN,
        bool,
        "public",
        description="Kept for Appmixer compatibility; stored and echoed.",
        given_as=bool,
        on_create=OnCreate.OPTIONAL,
        create_default=True,
        editable=True,
        clearable=False,
    ),
    TaskField(
        "allowLateDecision",
        Kind.BOOLEAN,
        bool,
        "allow_late_decision",
        description="May the approver still decide once the task is `due`?",
        given_as=bool,
        on_create=OnCreate.OPTIONAL,
        create_default=False,
        editable=True,
        clearable=False,
        term=True,
    ),
    TaskField("createdBy", Kind.EMAIL, str | None, "created_by"),
    TaskField("createdAt", Kind.DATETIME, str, "created_at"),
    TaskField("updatedAt", Kind.DATETIME, str, "updated_at"),
    TaskField("decidedBy", Kind.EMAIL, str | None, "decided_by"),
    TaskField("decidedAt", Kind.DATETIME, str | None, "decided_at"),
    TaskField(
        "decisionMade",
        Kind.DATETIME,
        str | None,
        "decided_at",
        description="When approved or rejected: the same as `decidedAt` (Appmixer's name).",
        shown_default=None,
    ),
    TaskField("comment", Kind.TEXT, str | None, "comment", description="The decision's."),
    TaskField(
        "option",
        Kind.TEXT,
        str | None,
        "option",
        description="The key of the option that decided it.",
        shown_default=None,
    ),
    TaskField(
        "data",
        Kind.STRUCTURED,
        dict[str, Any] | None,
        "decision_data",
        description="The form data of the response that decided it.",
        shown_default=None,
    ),
    TaskField(
        "requestKey",
        Kind.TEXT,
        str | None,
        "request_key",
        description="Idempotency key: a create with a key already used in the organization "
        "answers 200 with that task (and its secrets) instead of creating another.",
        shown_default=None,
        given_as=RequestKey,
        on_create=OnCreate.OPTIONAL,
    ),
    TaskField(
        "priority",
        Kind.CHOICE,
        Priority | None,
        "priority",
        description="low | medium | high | highest (sorted by rank).",
        shown_default=None,
        given_as=Priority,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        choices=PRIORITIES,
        ranked=True,
    ),
    TaskField(
        "order",
        Kind.NUMBER,
        int | None,
        "position",
        description="Position among its order group.",
        shown_default=None,
        given_as=Order,
        on_create=OnCreate.OPTIONAL,
        editable=True,
    ),
    TaskField(
        "orderGroup",
        Kind.TEXT,
        str | None,
        "order_group",
        description="Which ordering `order` counts in.",
        shown_default=None,
        given_as=OrderGroup,
        on_create=OnCreate.OPTIONAL,
        editable=True,
    ),
    TaskField(
        "parentId",
        Kind.TEXT,
        str | None,
        "parent_id",
        description="A task of the same organization.",
        shown_default=None,
        given_as=TaskRef,
        on_create=OnCreate.OPTIONAL,
        editable=True,
    ),
    TaskField(
        "active",
        Kind.BOOLEAN,
        bool,
        "active",
        description="A flag (default true): `false` marks the task inactive.",
        shown_default=True,
        given_as=bool,
        on_create=OnCreate.OPTIONAL,
        create_default=True,
        editable=True,
        clearable=False,
    ),
    # Completion mirrors the decision (Plannr's completed_at / completed_by).
    TaskField(
        "completedAt",
        Kind.DATETIME,
        str | None,
        "decided_at",
        description="When decided (read-only).",
        shown_default=None,
    ),
    TaskField(
        "completedBy",
        Kind.EMAIL,
        str | None,
        "decided_by",
        description="Who decided (read-only).",
        shown_default=None,
    ),
    TaskField(
        "notesCount",
        Kind.NUMBER,
        int,
        "notes_count",
        description="Read them at /tasks/{id}/notes.",
        shown_default=0,
    ),
    TaskField(
        "assignees",
        Kind.STRUCTURED,
        list[AssigneePublic],
        "assignees",
        description="Several, typed; `[]` clears.",
        shown_default=[],
        given_as=Assignees,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        show=_list_or_empty("assignees"),
        store=lambda value: {"assignees": value or None},
    ),
    TaskField(
        "connectedTo",
        Kind.STRUCTURED,
        ConnectedToPublic | None,
        description="The entity the task is about.",
        shown_default=None,
        given_as=ConnectedTo,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        parts={"type": "connected_type", "id": "connected_id"},
        show=_connected_to_shown,
        store=_connected_to_stored,
    ),
    TaskField(
        "customFields",
        Kind.STRUCTURED,
        list[CustomFieldPublic],
        "custom_fields",
        description="Typed values; `[]` clears.",
        shown_default=[],
        given_as=CustomFields,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        term=True,
        show=_custom_fields_shown,
        store=_custom_fields_stored,
    ),
    TaskField(
        "mappings",
        Kind.STRUCTURED,
        list[MappingPublic],
        "mappings",
        description="Ids of this task in other systems.",
        shown_default=[],
        given_as=Mappings,
        on_create=OnCreate.OPTIONAL,
        editable=True,
        show=_list_or_empty("mappings"),
        store=_mappings_stored,
    ),
    TaskField(
        "statusHistory",
        Kind.STRUCTURED,
        list[StatusChange],
        "status_history",
        description="Oldest first (read-only).",
        shown_default=[],
        show=_list_or_empty("status_history"),
    ),
    # -- what the service does for a task while it waits (issue 16) --
    TaskField(
        "notify",
        Kind.STRUCTURED,
        list[Literal["email"]],
        "notify",
        description='How the service tells people: `["email"]` mails the approver on '
        "create (and the requester a copy and, later, the outcome). Unset: the service's "
        "default (PEOPLETASKS_NOTIFY_DEFAULT, none unless configured). Shown as the service "
        "does it: `[]` where the service has no SMTP.",
        shown_default=[],
        given_as=Channels,
        on_create=OnCreate.OPTIONAL,
        show=_list_or_empty("notify"),
        store=lambda value: {"notify": value},
    ),
    TaskField(
        "reminders",
        Kind.STRUCTURED,
        RemindersPublic | None,
        "reminders",
        description="Mail the pending approver again: `every` after creation and "
        "`beforeDue` before the deadline, at most `max` times.",
        shown_default=None,
        given_as=Reminders,
        on_create=OnCreate.OPTIONAL,
    ),
    TaskField(
        "escalation",
        Kind.STRUCTURED,
        EscalationPublic | None,
        "escalation",
        description="What happens if the task is still pending `after` its creation.",
        shown_default=None,
        given_as=Escalation,
        on_create=OnCreate.OPTIONAL,
    ),
    TaskField(
        "nextReminderAt",
        Kind.DATETIME,
        str | None,
        "next_reminder_at",
        description="When the next reminder goes out (read-only).",
        shown_default=None,
    ),
    TaskField(
        "remindersSent",
        Kind.NUMBER,
        int,
        "reminders_sent",
        description="Reminders sent so far (read-only).",
        shown_default=0,
    ),
    TaskField(
        "escalatesAt",
        Kind.DATETIME,
        str | None,
        "escalate_at",
        description="When the escalation fires, if still pending (read-only).",
        shown_default=None,
    ),
    TaskField(
        "escalatedAt",
        Kind.DATETIME,
        str | None,
        "escalated_at",
        description="When the escalation fired (read-only).",
        shown_default=None,
    ),
    TaskField(
        "delegatedFrom",
        Kind.EMAIL,
        str | None,
        "delegated_from",
        description="The approver asked for, when a standing delegation sent the task to "
        "`approver` instead (read-only).",
        shown_default=None,
    ),
    TaskField(
        "reassignments",
        Kind.STRUCTURED,
        list[ReassignmentPublic],
        "reassignments",
        description="Every change of approver by reassignment, oldest first (read-only).",
        shown_default=[],
        show=_list_or_empty("reassignments"),
    ),
    TaskField(
        "decidedBySystem",
        Kind.BOOLEAN,
        bool,
        "decided_by_system",
        description="True when the escalation decided the task (`decidedBy` is null and "
        "`comment` says why).",
        shown_default=False,
    ),
)

BY_NAME: dict[str, TaskField] = {f.name: f for f in FIELDS}
#: Every key of a task's view, in order (what `projection` chooses from).
NAMES: tuple[str, ...] = tuple(BY_NAME)
#: The fields a caller may give on edit (besides the decision's `status` and `comment`).
EDITABLE: tuple[TaskField, ...] = tuple(f for f in FIELDS if f.editable)


def columns_for(given: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of the fields in `given` (public name -> validated value)."""
    values: dict[str, Any] = {}
    for name, value in given.items():
        values.update(BY_NAME[name].columns(value))
    return values
