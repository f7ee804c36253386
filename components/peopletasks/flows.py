"""Ready-made flows (also the entrypoints of deployments/prefect.yaml).

`request_approval_flow` and `request_approval_email_flow` take exactly the options of
`request_approval` / `request_approval_email` (declared once, in `ApprovalRequest`), as
typed parameters of the flow (`wait`, `on_due`, `timeout`, `key` ...). Their results are
persisted (a `run_deployment` caller reads the `Decision` with `state.result()`), and the
run's final state is named for the decision: Approved, Rejected or Due.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from prefect import State, flow
from prefect.context import FlowRunContext
from prefect.states import Completed
from prefect.utilities.asyncutils import run_coro_as_sync

from peopletasks.prefect.approval import ask, request_approval_email
from peopletasks.prefect.connection import ServiceLike
from peopletasks.prefect.decision import Decision
from peopletasks.prefect.recurring import RecurringTask, run_period
from peopletasks.prefect.request import ApprovalRequest, EmailApprovalRequest, takes
from peopletasks.prefect.steps import create_approval_task


def decided(decision: Decision) -> Decision:
    """The flow's return value: a Completed state named for the decision (Approved,
    Rejected, Due) whose result is the decision. Prefect makes it the run's final state
    and hands callers the decision, so it is typed as one."""
    state: State[Decision] = Completed(
        name=decision.status.capitalize(), message=decision.summary, data=decision
    )
    return cast(Decision, state)


@flow(name="request-approval", persist_result=True, result_serializer="json")
@takes(ApprovalRequest)
def request_approval_flow(request: ApprovalRequest, site: str) -> Decision:
    """Ask for an approval and wait (a deployment's parameters are the request's)."""
    return decided(run_coro_as_sync(ask(request, site)))


@flow(name="request-approval-email", persist_result=True, result_serializer="json")
@takes(EmailApprovalRequest)
def request_approval_email_flow(request: EmailApprovalRequest, site: str) -> Decision:
    """Ask for an approval by e-mail (signed links) and wait."""
    return decided(run_coro_as_sync(ask(request, site)))


@flow(name="vacation-request", persist_result=True, result_serializer="json")
def vacation_request(employee: str, days: str, approver: str = "lead@example.com") -> Decision:
    """The example: an employee asks for days off; their lead decides from the inbox
    within three days of the request (of the run's scheduled start: the same deadline
    however often the run runs again)."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    asked = context.flow_run.expected_start_time or context.flow_run.created
    assert asked is not None
    deadline = (asked + timedelta(days=3)).replace(microsecond=0)
    return decided(
        request_approval_email(
            title=f"Vacation {days}",
            description=f"**{employee}** asks for {days} off.\n\nDecide by {deadline:%a %d %b}.",
            requester=employee,
            approver=approver,
            decision_by=deadline,
        )
    )


@flow(name="create-recurring-tasks", persist_result=True, result_serializer="json")
async def create_recurring_tasks(
    tasks: list[RecurringTask],
    period: str | None = None,
    period_format: str = "%Y-%m",
    service: ServiceLike = None,
) -> list[str]:
    """Create one people task per entry of `tasks` for the period; their ids.

    Args:
        tasks: The set: each with `name`, `title`, `approver`, `requester` (and optionally
            `description`, `decision_by`); `{period}` in a title or description becomes
            the period.
        period: The period (e.g. "2026-12"); unset: the run's scheduled start, in its
            schedule's time zone, formatted with `period_format`.
        period_format: A strftime format: "%Y-%m" monthly, "%G-W%V" weekly, "%Y-%m-%d" daily.
        service: Our People Task service (a PeopleTaskService block or a saved one's name);
            unset: PEOPLETASKS_SERVICE_BLOCK or PEOPLETASKS_API_URL / _API_TOKEN.

    Running it twice for a period creates nothing new (each task's request key is
    `recurring:{flow}/{deployment}:{period}:{name}`); a task of the period that differs
    from its entry is an error (`RequestKeyConflict`).
    """
    where = await run_period()
    period = period or where.period(period_format)
    ids = []
    for entry in tasks:
        created = await create_approval_task(
            entry.title.format(period=period),
            entry.approver,
            entry.requester,
            entry.description.format(period=period),
            entry.decision_by,
            request_key=f"recurring:{where.scope}:{period}:{entry.name}",
            service=service,
            if_exists="error",
        )
        ids.append(str(created["id"]))
    return ids


__all__ = [
    "RecurringTask",
    "create_recurring_tasks",
    "request_approval_email_flow",
    "request_approval_flow",
    "vacation_request",
]
