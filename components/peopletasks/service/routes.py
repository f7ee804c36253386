"""The People Task API under `/people-task`, path for path as Appmixer's reference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response

from peopletasks.domain import Status
from peopletasks.domain import decisions as decision_ops
from peopletasks.domain import delegation as delegation_ops
from peopletasks.domain import deliveries as delivery_ops
from peopletasks.domain import links as link_ops
from peopletasks.domain import messages as message_ops
from peopletasks.domain import tasks as task_ops
from peopletasks.domain import webhooks as webhook_ops
from peopletasks.domain.inputs import (
    Decide,
    Delegation,
    NoteCreate,
    Reassign,
    Respond,
    TaskCreate,
    TaskEdit,
    WebhookCreate,
)
from peopletasks.service.auth import (
    BodySecretPrincipalDep,
    DomainDep,
    PrincipalDep,
)
from peopletasks.service.responses import json
from peopletasks.service.routing import ApiRoute
from peopletasks.service.schemas import (
    ActionLinks,
    DashboardUrl,
    DelegationPublic,
    DeliveryPublic,
    HistoryEntry,
    MessagePublic,
    NotePublic,
    TaskCount,
    TaskCreated,
    TaskListItem,
    TaskPublic,
    WebhookCreated,
    WebhookPublic,
    error_responses,
)

router = APIRouter(prefix="/people-task", route_class=ApiRoute)

TaskId = Annotated[str, Path(max_length=64, description="ID of a task.")]
WebhookId = Annotated[str, Path(max_length=64, description="ID of a webhook.")]
Role = Annotated[
    Literal["approver", "requester"] | None,
    Query(description="Only tasks where the caller has this role."),
]
Filter = Annotated[
    list[str],
    Query(
        max_length=50,
        description="`prop:value`, e.g. `status:pending`; several comma-separated or repeated. "
        "Date and number properties take `<`, `<=`, `>`, `>=` before the value. Beside the "
        "task's properties: `connectedTo.type`, `connectedTo.id`, `assignee:<id>`, "
        "`customFields.<key>:<value>`.",
    ),
]
Pattern = Annotated[
    str | None, Query(max_length=200, description="Case-insensitive text in the title.")
]
Sort = Annotated[
    str | None,
    Query(
        max_length=500,
        description="`prop:1` or `prop:-1`, e.g. `decisionBy:-1`; `priority` sorts by rank.",
    ),
]
Projection = Annotated[
    str | None,
    Query(max_length=500, description="`-description` leaves it out; `title,status` keeps only."),
]
Limit = Annotated[int, Query(ge=1, le=task_ops.MAX_LIMIT, description="At most this many.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Skip this many.")]


@router.get(
    "/tasks",
    tags=["tasks"],
    operation_id="listTasks",
    summary="Get tasks",
    response_model=list[TaskListItem],
    responses=error_responses(401, 403, 422),
)
async def list_tasks(
    domain: DomainDep,
    principal: PrincipalDep,
    role: Role = None,
    filter: Filter = [],  # noqa: B006 - the seed's name; FastAPI copies defaults
    sort: Sort = None,
    projection: Projection = None,
    pattern: Pattern = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """The caller's tasks: with a secret, that person's tasks in that role; with a token,
    the tasks the caller approves, requests or created."""
    return json(
        await task_ops.list_tasks(
            domain,
            principal,
            role=role,
            filters=filter,
            sort=sort,
            projection=projection,
            pattern=pattern,
            limit=limit,
            offset=offset,
        )
    )


@router.get(
    "/tasks-count",
    tags=["tasks"],
    operation_id="countTasks",
    summary="Get task count",
    response_model=TaskCount,
    responses=error_responses(401, 403, 422),
)
async def count_tasks(
    domain: DomainDep,
    principal: PrincipalDep,
    role: Role = None,
    filter: Filter = [],  # noqa: B006 - the seed's name; FastAPI copies defaults
    pattern: Pattern = None,
) -> Any:
    count = await task_ops.count_tasks(
        domain, principal, role=role, filters=filter, pattern=pattern
    )
    return json({"count": count})


@router.get(
    "/dashboard-url",
    tags=["dashboard"],
    operation_id="getDashboardUrl",
    summary="Where people see their tasks and decide",
    response_model=DashboardUrl,
    responses=error_responses(401),
)
async def get_dashboard_url(domain: DomainDep, principal: PrincipalDep) -> Any:
    """The dashboard's URL (`PEOPLETASKS_DASHBOARD_URL`). Appmixer's RequestApprovalEmail
    asks for it before mailing, and mails it with `?taskId=…&action=approve|reject&secret=…`
    (the approver's secret): the dashboard opens that task with that action chosen."""
    return json({"dashboardUrl": domain.dashboard_url})


@router.get(
    "/tasks/{id}",
    tags=["tasks"],
    operation_id="getTask",
    summary="Get task",
    response_model=TaskPublic,
    responses=error_responses(401, 404),
)
async def get_task(domain: DomainDep, principal: PrincipalDep, id: TaskId) -> Any:
    return json(await task_ops.get_task(domain, principal, id))


@router.get(
    "/tasks/{id}/wait",
    tags=["tasks"],
    operation_id="waitForDecision",
    summary="Wait for a task's decision (long poll)",
    response_model=TaskPublic,
    responses=error_responses(401, 404, 422),
)
async def wait_for_task(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
    timeout: Annotated[
        float, Query(ge=0, le=60, description="Seconds to wait at most (default 25).")
    ] = 25.0,
) -> Any:
    """Answers as soon as the task is no longer pending (at once if it is decided already),
    or with the pending task after `timeout`: call again to keep waiting."""
    return json(await task_ops.wait_for_decision(domain, principal, id, timeout=timeout))


@router.get(
    "/tasks/{id}/history",
    tags=["tasks"],
    operation_id="getTaskHistory",
    summary="Get the status history of a task",
    response_model=list[HistoryEntry],
    responses=error_responses(401, 404),
)
async def get_task_history(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
) -> Any:
    return json(await task_ops.task_history_of(domain, principal, id))


@router.post(
    "/tasks/{id}/notes",
    tags=["tasks"],
    operation_id="addTaskNote",
    summary="Add a note to a task",
    status_code=201,
    response_model=NotePublic,
    responses=error_responses(400, 401, 404, 409, 422),
)
async def add_task_note(
    domain: DomainDep,
    principal: BodySecretPrincipalDep,
    id: TaskId,
    body: NoteCreate,
) -> Any:
    """Append a note; its author is the caller: an API token of the task's organization,
    or the task's approver or requester secret (in the body or the query)."""
    return json(await task_ops.add_note(domain, principal, id, body.text), 201)


@router.get(
    "/tasks/{id}/notes",
    tags=["tasks"],
    operation_id="listTaskNotes",
    summary="Get the notes of a task, oldest first",
    response_model=list[NotePublic],
    responses=error_responses(401, 404, 422),
)
async def list_task_notes(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    return json(await task_ops.list_notes(domain, principal, id, limit=limit, offset=offset))


@router.get(
    "/tasks/{id}/links",
    tags=["tasks"],
    operation_id="getTaskLinks",
    summary="Fresh signed approve / reject links (for the task's creator)",
    response_model=ActionLinks,
    responses=error_responses(401, 403, 404),
)
async def get_task_links(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
) -> Any:
    return json(await link_ops.task_links(domain, principal, id))


@router.post(
    "/tasks",
    tags=["tasks"],
    operation_id="createTask",
    summary="Create a new task",
    status_code=201,
    response_model=TaskCreated,
    responses={
        200: {"model": TaskCreated, "description": "A task with this requestKey existed"},
        **error_responses(400, 401, 403, 422),
    },
)
async def create_task(domain: DomainDep, principal: PrincipalDep, body: TaskCreate) -> Any:
    """Create a pending task (201). The answer holds `approverSecret`,
    `requesterSecret` and the approver's signed `links`. With a `requestKey` used
    before in the organization: 200 and that task, nothing created."""
    task = await task_ops.create_task(domain, principal, body)
    status = 201 if task.pop("created") else 200
    return json(task, status, {"Location": f"/people-task/tasks/{task['id']}"})


@router.put(
    "/tasks/{id}",
    tags=["tasks"],
    operation_id="editTask",
    summary="Edit a task",
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def edit_task(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
    body: TaskEdit,
) -> Any:
    """Change fields; absent fields stay. Setting `status` to approved / rejected is a
    decision (the approver's only); a decided task never goes back to pending."""
    return json(await task_ops.edit_task(domain, principal, id, body))


DecideBody = Annotated[Decide | None, Body()]


@router.put(
    "/tasks/{id}/approve",
    tags=["tasks"],
    operation_id="approveTask",
    summary="Approve a task",
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def approve_task(
    domain: DomainDep,
    principal: BodySecretPrincipalDep,
    id: TaskId,
    body: DecideBody = None,
) -> Any:
    """The approver approves (approver secret in body or query, or the approver's token).
    The first decision wins; a later one gets 409 with the task as it stands."""
    comment = body.comment if body else None
    return json(await decision_ops.decide_task(domain, principal, id, Status.APPROVED, comment))


@router.put(
    "/tasks/{id}/reject",
    tags=["tasks"],
    operation_id="rejectTask",
    summary="Reject a task",
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def reject_task(
    domain: DomainDep,
    principal: BodySecretPrincipalDep,
    id: TaskId,
    body: DecideBody = None,
) -> Any:
    """The approver rejects; as approve."""
    comment = body.comment if body else None
    return json(await decision_ops.decide_task(domain, principal, id, Status.REJECTED, comment))


@router.put(
    "/tasks/{id}/respond",
    tags=["tasks"],
    operation_id="respondToTask",
    summary="Respond to a task with one of its options",
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def respond_to_task(
    domain: DomainDep, principal: BodySecretPrincipalDep, id: TaskId, body: Respond
) -> Any:
    """One approver's response: `option` (a key of the task's `options`; `approve` and
    `reject` unless it has its own), a `comment`, and `data` (the task's `form` filled
    in). Each approver responds once (409 after), in turn in a sequential task (409
    saying whose turn it is); the task's status moves when its `decisionRule` is met."""
    return json(
        await decision_ops.respond_to_task(
            domain, principal, id, body.option, body.comment, body.data
        )
    )


@router.put(
    "/tasks/{id}/reassign",
    tags=["tasks"],
    operation_id="reassignTask",
    summary="Pass a task to someone else",
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def reassign_task(
    domain: DomainDep,
    principal: BodySecretPrincipalDep,
    id: TaskId,
    body: Reassign,
) -> Any:
    """`to` becomes the approver of a task that can still be decided, in the caller's
    place: by an approver (secret in body or query, token, or dashboard) who has not
    responded; or, on a task with one approver, by its creator or an admin token. The
    old approver's links stop deciding; the new approver gets a mail with links of their
    own (where the service has SMTP); `reassignments`, the history and a
    `task.reassigned` webhook record it. A reassignment racing a decision has one
    winner: the other gets 409."""
    return json(await delegation_ops.reassign_task(domain, principal, id, body.to, body.comment))


@router.get(
    "/tasks/{id}/messages",
    tags=["tasks"],
    operation_id="listTaskMessages",
    summary="The mail the service sent about a task, oldest first",
    response_model=list[MessagePublic],
    responses=error_responses(401, 404, 422),
)
async def list_task_messages(
    domain: DomainDep,
    principal: PrincipalDep,
    id: TaskId,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """To whom, what kind, how it went (each attempt); never bodies or links."""
    return json(await message_ops.list_messages(domain, principal, id, limit=limit, offset=offset))


@router.put(
    "/delegations",
    tags=["delegations"],
    operation_id="setDelegation",
    summary="Send the caller's new tasks to someone else for a while",
    response_model=DelegationPublic,
    responses=error_responses(400, 401, 403, 422),
)
async def set_delegation(domain: DomainDep, principal: PrincipalDep, body: Delegation) -> Any:
    """Tasks created for `from` while `start` <= now < `end` go to `to` (recorded on
    the task as `delegatedFrom`). One per person: a new one replaces it. `from` is the
    caller (their API token)."""
    return json(await delegation_ops.set_delegation(domain, principal, body))


@router.get(
    "/delegations",
    tags=["delegations"],
    operation_id="listDelegations",
    summary="The caller's delegations, from them and to them",
    response_model=list[DelegationPublic],
    responses=error_responses(401, 403),
)
async def list_delegations(domain: DomainDep, principal: PrincipalDep) -> Any:
    return json(await delegation_ops.list_delegations(domain, principal))


@router.delete(
    "/delegations/{email}",
    tags=["delegations"],
    operation_id="deleteDelegation",
    summary="End a delegation",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
)
async def delete_delegation(
    domain: DomainDep,
    principal: PrincipalDep,
    email: Annotated[str, Path(max_length=320, description="Its `from`.")],
) -> Response:
    await delegation_ops.delete_delegation(domain, principal, email.strip().lower())
    return Response(status_code=204)


@router.post(
    "/webhooks",
    tags=["webhooks"],
    operation_id="registerWebhook",
    summary="Register a webhook for a task",
    status_code=201,
    response_model=WebhookCreated,
    responses=error_responses(400, 401, 403, 422),
)
async def register_webhook(
    request: Request, domain: DomainDep, principal: PrincipalDep, body: WebhookCreate
) -> Any:
    """Register `url` (POSTed a signed event on every status change of the task) or
    `prefect` (the flow run is resumed with the decision as run input). The answer
    holds the signing `secret`, shown this once."""
    check = request.app.state.target_check
    return json(await webhook_ops.register_webhook(domain, principal, body, check), 201)


@router.get(
    "/webhooks/{id}",
    tags=["webhooks"],
    operation_id="getWebhook",
    summary="Get a webhook",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404),
)
async def get_webhook(domain: DomainDep, principal: PrincipalDep, id: WebhookId) -> Any:
    return json(await webhook_ops.get_webhook(domain, principal, id))


@router.get(
    "/webhooks/{id}/deliveries",
    tags=["webhooks"],
    operation_id="listWebhookDeliveries",
    summary="Deliveries of a webhook, newest first, with every attempt",
    response_model=list[DeliveryPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def list_deliveries(
    domain: DomainDep,
    principal: PrincipalDep,
    id: WebhookId,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    return json(
        await delivery_ops.list_deliveries(domain, principal, id, limit=limit, offset=offset)
    )


@router.post(
    "/webhooks/{id}/deliveries/{deliveryId}/resend",
    tags=["webhooks"],
    operation_id="resendWebhookDelivery",
    summary="Send a delivery again (same webhook-id)",
    response_model=DeliveryPublic,
    responses=error_responses(401, 403, 404, 409),
)
async def resend_delivery(
    domain: DomainDep,
    principal: PrincipalDep,
    id: WebhookId,
    deliveryId: Annotated[str, Path(max_length=64)],
) -> Any:
    return json(await delivery_ops.resend_delivery(domain, principal, id, deliveryId))


@router.delete(
    "/webhooks/{id}",
    tags=["webhooks"],
    operation_id="deleteWebhook",
    summary="Delete a webhook",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
)
async def delete_webhook(domain: DomainDep, principal: PrincipalDep, id: WebhookId) -> Response:
    await webhook_ops.delete_webhook(domain, principal, id)
    return Response(status_code=204)


#: Most of what the service answers: the router tries these routes first.
BUSIEST = (get_task, create_task, approve_task, reject_task)
