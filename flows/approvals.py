"""Deployment entrypoints (see deployments/prefect.yaml): the package's ready-made flows."""

from peopletasks.flows import (
    create_recurring_tasks,
    request_approval_email_flow,
    request_approval_flow,
    vacation_request,
)

__all__ = [
    "create_recurring_tasks",
    "request_approval_email_flow",
    "request_approval_flow",
    "vacation_request",
]

if __name__ == "__main__":
    # `python flows/approvals.py`: serve them from this process (no work pool needed).
    from prefect import serve

    serve(
        request_approval_flow.to_deployment(name="request-approval"),
        request_approval_email_flow.to_deployment(name="request-approval-email"),
        vacation_request.to_deployment(name="vacation-request"),
        create_recurring_tasks.to_deployment(
            name="monthly-reviews",
            cron="0 8 1 * *",
            parameters={
                "tasks": [
                    {
                        "name": "expenses",
                        "title": "Approve expenses for {period}",
                        "approver": "finance@example.com",
                        "requester": "ops@example.com",
                    }
                ],
            },
        ),
    )
