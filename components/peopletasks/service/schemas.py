"""What the service answers (documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

StatusName = Literal["pending", "approved", "rejected", "due"]
PriorityName = Literal["low", "medium", "high", "highest"]


class AssigneePublic(BaseModel):
    type: str = Field(description="`user`, `group`, ...")
    id: str


class ConnectedToPublic(BaseModel):
    type: str
    id: str


class CustomFieldPublic(BaseModel):
    key: str
    name: str | None
    type: Literal["string", "number", "boolean", "date"]
    value: bool | int | float | str = Field(description="Of `type`; a date is YYYY-MM-DD.")


class MappingPublic(BaseModel):
    app: str
    namespace: str
    mappedId: str
    reference: str | None = None
    mappingData: dict[str, str] | None = None


class StatusChange(BaseModel):
    from_: StatusName | None = Field(alias="from")
    to: StatusName
    changedAt: str
    changedBy: str | None = Field(description="Who changed it; null when the deadline did.")


class NotePublic(BaseModel):
    id: str
    text: str
    createdBy: str | None = Field(description="The e-mail of whoever added it.")
    createdAt: str


class TaskPublic(BaseModel):
    """A task as the API returns it (never with secrets)."""

    id: str
    title: str
    description: str
    requester: str
    approver: str
    status: StatusName
    decisionBy: str | None = Field(description="ISO 8601 with zone, or null for no deadline.")
    public: bool
    allowLateDecision: bool
    createdBy: str | None
    createdAt: str
    updatedAt: str
    decidedBy: str | None
    decidedAt: str | None
    comment: str | None
    requestKey: str | None = None
    priority: PriorityName | None = None
    order: int | None = None
    orderGroup: str | None = None
    parentId: str | None = None
    active: bool = True
    completedAt: str | None = Field(None, description="When decided (read-only).")
    completedBy: str | None = Field(None, description="Who decided (read-only).")
    notesCount: int = Field(0, description="Read them at /tasks/{id}/notes.")
    assignees: list[AssigneePublic] = []
    connectedTo: ConnectedToPublic | None = None
    customFields: list[CustomFieldPublic] = []
    mappings: list[MappingPublic] = []
    statusHistory: list[StatusChange] = Field([], description="Oldest first (read-only).")


class ActionLinks(BaseModel):
    """Signed links for the approver: opening one shows a confirmation page (it
    decides nothing); the page's form decides."""

    approve: str
    reject: str
    expiresAt: str = Field(description="At the deadline, or after the configured maximum age.")


class TaskCreated(TaskPublic):
    """The created task with its two secrets: the only time they are shown."""

    approverSecret: str = Field(description="Lets the approver read, approve and reject.")
    requesterSecret: str = Field(description="Lets the requester read.")
    links: ActionLinks


class TaskListItem(BaseModel):
    """A task in a list: `projection` decides which properties are present."""

    id: str
    title: str | None = None
    description: str | None = None
    requester: str | None = None
    approver: str | None = None
    status: StatusName | None = None
    decisionBy: str | None = None
    public: bool | None = None
    allowLateDecision: bool | None = None
    createdBy: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    decidedBy: str | None = None
    decidedAt: str | None = None
    comment: str | None = None
    requestKey: str | None = None
    priority: PriorityName | None = None
    order: int | None = None
    orderGroup: str | None = None
    parentId: str | None = None
    active: bool | None = None
    completedAt: str | None = None
    completedBy: str | None = None
    notesCount: int | None = None
    assignees: list[AssigneePublic] | None = None
    connectedTo: ConnectedToPublic | None = None
    customFields: list[CustomFieldPublic] | None = None
    mappings: list[MappingPublic] | None = None
    statusHistory: list[StatusChange] | None = None


class TaskCount(BaseModel):
    count: int


class HistoryEntry(BaseModel):
    from_: StatusName | None = Field(alias="from")
    to: StatusName
    changedBy: str | None
    changedAt: str
    comment: str | None


class PrefectTarget(BaseModel):
    flowRunId: str
    apiUrl: str


class WebhookPublic(BaseModel):
    id: str
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
    type: str = Field(description="task.approved, task.rejected or task.due")
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
