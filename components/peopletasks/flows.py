"""Ready-made flows (also the entrypoints of deployments/prefect.yaml via flows/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from peopletasks.prefect.approval import (
    create_approval_task,
    request_approval,
    request_approval_email,
)
from peopletasks.prefect.decision import Decision


@flow(name="request-approval")
def request_approval_flow(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | None = None,
    wait: str = "pause",
) -> Decision:
    """Ask for an approval and wait (callable as a deployment with parameters)."""
    return request_approval(
        title,
        approver,
        requester,
        description,
        decision_by,
        wait=wait,  # type: ignore[arg-type]
    )


@flow(name="request-approval-email")
def request_approval_email_flow(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | None = None,
    wait: str = "pause",
) -> Decision:
    """Ask for an approval by e-mail and wait."""
    return request_approval_email(
        title,
        approver,
        requester,
        description,
        decision_by,
        wait=wait,  # type: ignore[arg-type]
    )


@flow(name="vacation-request")
def vacation_request(employee: str, days: str, approver: str = "lead@example.com") -> Decision:
    """The example: an employee asks for days off; their lead decides from the inbox."""
    deadline = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    return request_approval_email(
        title=f"Vacation {days}",
        description=f"**{employee}** asks for {days} off.\n\nDecide by {deadline:%a %d %b}.",
        requester=employee,
        approver=approver,
        decision_by=deadline,
    )


@flow(name="create-recurring-tasks")
async def create_recurring_tasks(
    tasks: list[dict[str, Any]], period: str | None = None
) -> list[str]:
    """Create one people task per entry of `tasks` for `period` (default: this month,
    e.g. "2026-12").

    Each entry has `name`, `title`, `approver`, `requester` (and optionally
    `description`, `decision_by`). Running it twice for one period creates
    nothing new: each task's request key is `recurring:{period}:{name}`.
    """
    period = period or f"{datetime.now(UTC):%Y-%m}"
    ids = []
    for entry in tasks:
        created = await create_approval_task(
            entry["title"].format(period=period),
            entry["approver"],
            entry["requester"],
            entry.get("description", ""),
            entry.get("decision_by"),
            request_key=f"recurring:{period}:{entry['name']}",
        )
        ids.append(created["id"])
    return ids
