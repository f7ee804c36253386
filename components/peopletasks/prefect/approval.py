"""request_approval and request_approval_email (and their async twins): one path.

```
_ask(request)
  create_approval_task    the task; found again (and updated) by its request key
  register_resume         suspend mode: before any mail goes out
  send_approval_email     the email variants (cached per task: never twice)
  wait_for_decision       pause | suspend | poll (see `waiting`), then the decision recorded
```

Each entry point takes the options of `ApprovalRequest` (or `EmailApprovalRequest`),
declared there once; `peopletasks.flows` builds the ready-made flows from the same
requests. `service=` picks our People Task service; `backend=` any task system
(`PeoplelogicBackend`, `PlannrBackend`, their blocks, ...; see `prefect.connection`).
"""

from __future__ import annotations

from prefect.context import FlowRunContext
from prefect.utilities.asyncutils import run_coro_as_sync

from peopletasks.prefect.connection import connect
from peopletasks.prefect.decision import Decision
from peopletasks.prefect.request import (
    ApprovalRequest,
    EmailApprovalRequest,
    request_key_for,
    takes,
)
from peopletasks.prefect.steps import (
    create_approval_task,
    create_step,
    register_resume,
    run_logger,
    send_approval_email,
)
from peopletasks.prefect.waiting import WAIT_MODES, OnDue, WaitMode, wait_for_decision


async def ask(request: ApprovalRequest, site: str) -> Decision:
    """Create (or find) the task, mail it if asked, wait, and return the decision."""
    mode = WAIT_MODES[request.wait]
    mode.check_run()  # refused before anything is created
    request_key = request_key_for(request.key, site)
    # One connection (one block load) for every step of this request.
    async with connect(request.service, request.backend) as system:
        extra = request.service_fields()
        if isinstance(request, EmailApprovalRequest):
            extra["notify"] = ["email"]  # the service mails, where it has SMTP
        created = await create_step(backend=system)(
            request.title,
            request.first_approver,
            request.requester,
            request.description,
            request.deadline,
            request_key=request_key,
            backend=system,
            extra=extra or None,
            if_exists="update",
        )
        if isinstance(request, EmailApprovalRequest):
            context = FlowRunContext.get()
            pending = created.get("status") == "pending"
            if mode.suspends and pending and context and context.flow_run:
                # The service checks where it will resume the run before anyone is mailed.
                await register_resume(
                    str(created["id"]), flow_run_id=str(context.flow_run.id), backend=system
                )
            if "email" in (created.get("notify") or ()):
                run_logger().info(
                    "the service mails task %s's approvers (and its reminders)", created["id"]
                )
            else:  # the service has no SMTP: this process mails, never both
                if request.rule == "sequential" and len(request.approvers) > 1:
                    raise ValueError(
                        f"task {created['id']}: a sequential request mails each approver in "
                        "turn, after this process may be gone, and this service has no SMTP: "
                        "give it PEOPLETASKS_SMTP_HOST (nobody was mailed)"
                    )
                await send_approval_email(
                    created,
                    mail=request.mail,
                    sender=request.sender,
                    reply_to=request.reply_to,
                    copy_to_requester=request.copy_to_requester,
                )
        decision = await wait_for_decision(
            created,
            wait=request.wait,
            on_due=request.on_due,
            backend=system,
            timeout=request.timeout,
            poll_interval=request.poll_interval,
        )
    return request.typed(decision)


@takes(ApprovalRequest)
async def arequest_approval(request: ApprovalRequest, site: str) -> Decision:
    """Ask `approver` to approve; wait; return the `Decision` (async flows).

    `backend=` picks the task system: our People Task service by default (`service=`),
    or e.g. `PeoplelogicBackend(...)` / `PlannrBackend(...)` (polled; see docs/backends.md).
    """
    return await ask(request, site)


@takes(EmailApprovalRequest)
async def arequest_approval_email(request: EmailApprovalRequest, site: str) -> Decision:
    """As `arequest_approval`, and mail the approver the signed Approve / Reject links
    (and the requester a copy)."""
    return await ask(request, site)


@takes(ApprovalRequest)
def request_approval(request: ApprovalRequest, site: str) -> Decision:
    """Ask `approver` to approve, wait, and return the `Decision`.

    `backend=` picks the task system: our People Task service by default (`service=`),
    or e.g. `PeoplelogicBackend(...)` / `PlannrBackend(...)` (polled; see docs/backends.md).

    Example:
        ```python
        from prefect import flow
        from peopletasks import request_approval

        @flow
        def release(version: str) -> None:
            decision = request_approval(
                title=f"Release {version}",
                approver="lead@example.com",
                requester="ci@example.com",
            )
            if decision.approved:
                ...
        ```
    """
    return run_coro_as_sync(ask(request, site))


@takes(EmailApprovalRequest)
def request_approval_email(request: EmailApprovalRequest, site: str) -> Decision:
    """As `request_approval`, and mail the approver signed Approve / Reject links.

    Example:
        ```python
        from prefect import flow
        from peopletasks import request_approval_email

        @flow
        def vacation_request(employee: str, days: str) -> bool:
            decision = request_approval_email(
                title=f"Vacation {days}",
                description=f"{employee} asks for {days} off.",
                requester=employee,
                approver="lead@example.com",
                decision_by="2026-12-01T17:00:00Z",
            )
            return decision.approved
        ```
    """
    return run_coro_as_sync(ask(request, site))


__all__ = [
    "ApprovalRequest",
    "EmailApprovalRequest",
    "OnDue",
    "WaitMode",
    "arequest_approval",
    "arequest_approval_email",
    "create_approval_task",
    "request_approval",
    "request_approval_email",
    "send_approval_email",
    "wait_for_decision",
]
