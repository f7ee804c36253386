"""What the service answers (documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, create_model

from peopletasks.domain.fields import (
    ALWAYS,
    FIELDS,
    StatusName,
)


def _public_fields() -> dict[str, Any]:
    made: dict[str, Any] = {}
    for f in FIELDS:
        info: Any = Field(description=f.description or None)
        if f.shown_default is not ALWAYS:
            info = Field(f.shown_default, description=f.description or None)
        made[f.name] = (f.shown_as, info)
    return made


if TYPE_CHECKING:
    TaskPublic = BaseModel
else:
    TaskPublic = create_model(
        "TaskPublic",
        __doc__="A task as the API returns it (never with secrets).",
        **_public_fields(),
    )


class NotePublic(BaseModel):
    id: str
    text: str
    createdBy: str | None = Field(description="The e-mail of whoever added it.")
    createdAt: str


class ActionLinks(BaseModel):
    """Signed links for the approver: opening one shows a confirmation page (it
    decides nothing); the page's form decides."""

    approve: str
    reject: str
    expiresAt: str = Field(description="At the deadline, or after the configured maximum age.")


if TYPE_CHECKING:
    TaskCreated = BaseModel
    TaskListItem = BaseModel
else:
    TaskCreated = create_model(
        "TaskCreated",
        __base__=TaskPublic,
        __doc__="The created task with its two secrets: the only time they are shown.",
        approverSecret=(
            str,
            Field(description="Lets the (first) approver read this task and respond to it."),
        ),
        approverSecrets=(
            dict[str, str],
            Field(description="Each approver's secret, by address."),
        ),
        requesterSecret=(str, Field(description="Lets the requester read.")),
        links=(ActionLinks, ...),
        approverLinks=(
            dict[str, ActionLinks] | None,
            Field(None, description="With several approvers: each one's own links."),
        ),
    )
    TaskListItem = create_model(
        "TaskListItem",
        __doc__="A task in a list: `projection` decides which properties are present.",
        **{
            name: (info.annotation, ...) if name == "id" else (info.annotation | None, None)
            for name, info in TaskPublic.model_fields.items()
        },
    )


class TaskCount(BaseModel):
    count: int


class DashboardUrl(BaseModel):
    dashboardUrl: str = Field(
        description="Where people see their tasks and decide (`PEOPLETASKS_DASHBOARD_URL`); "
        "it takes Appmixer's `?taskId=&secret=&action=`."
    )


class FieldChange(BaseModel):
    from_: Any = Field(alias="from")
    to: Any


class ApproverChange(BaseModel):
    from_: str = Field(alias="from")
    to: str


class HistoryEntry(BaseModel):
    event: Literal["created", "approved", "rejected", "due", "edited", "responded", "reassigned"]
    from_: StatusName | None = Field(
        alias="from", description="The status before (null on creation and edits)."
    )
    to: StatusName | None = Field(description="The status after (null on edits).")
    changedBy: str | None = Field(description="Who; null when the deadline did it.")
    changedAt: str
    comment: str | None = Field(description="A decision's comment.")
    changes: dict[str, FieldChange] | None = Field(
        None, description="An edit's fields, each as shown before and after."
    )
    option: str | None = Field(None, description="A response's option.")
    approver: ApproverChange | None = Field(
        None, description="A reassignment's approvers: from whom to whom."
    )


class MailAttemptPublic(BaseModel):
    attemptedAt: str
    latencyMs: int
    smtpCode: int | None = Field(description="The SMTP server's reply code (250: accepted).")
    error: str | None


class MessagePublic(BaseModel):
    """A mail the service sent (or will send) about a task; never its body or links."""

    id: str
    kind: Literal[
        "approval", "copy", "reminder", "reassigned", "escalation", "escalated", "outcome"
    ]
    to: str
    sequence: int = Field(description="Which of its kind: reminder n, n-th reassignment ...")
    status: Literal["pending", "sent", "failed", "cancelled"]
    attempts: int
    messageId: str | None = Field(
        description="The Message-ID header, the same on every attempt (set by the first)."
    )
    createdAt: str
    sentAt: str | None
    nextAttemptAt: str | None
    lastError: str | None = Field(description="Why the last attempt failed, or why cancelled.")
    attemptLog: list[MailAttemptPublic]


class DelegationPublic(BaseModel):
    from_: str = Field(alias="from")
    to: str
    start: str
    end: str
    createdBy: str | None
    createdAt: str


class PrefectTarget(BaseModel):
    flowRunId: str
    apiUrl: str


class WebhookPublic(BaseModel):
    id: str
    webhookId: str = Field(description="The same as `id` (Appmixer's components read it).")
    url: str = Field(description="Where events are POSTed (for Prefect: the resume endpoint).")
    taskId: str
    status: StatusName = Field(
        description="The task's current status (tells whether it was decided before this)."
    )
    kind: Literal["http", "prefect"]
    createdAt: str
    disabledAt: str | None = Field(description="Set when the receiver answered 410 Gone.")
    disabledReason: str | None
    prefect: PrefectTarget | None = None


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="`whsec_...`: verifies the Standard Webhooks signature; shown this once."
    )


class AttemptPublic(BaseModel):
    attemptedAt: str
    statusCode: int | None
    latencyMs: int
    error: str | None
    responseBody: str | None = Field(description="The first 4 KiB of the receiver's answer.")


class DeliveryPublic(BaseModel):
    id: str
    messageId: str = Field(description="The `webhook-id` header: the same on every attempt.")
    type: str = Field(
        description="task.approved, task.rejected, task.due, task.reassigned or task.escalated"
    )
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    nextAttemptAt: str | None
    deliveredAt: str | None
    lastStatusCode: int | None
    lastError: str | None
    createdAt: str
    attemptLog: list[AttemptPublic]


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []
    task: dict[str, Any] | None = Field(None, description="With 409: the task as it stands.")


class ErrorBody(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    waiting: int = Field(description="Long polls parked in this process.")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}
