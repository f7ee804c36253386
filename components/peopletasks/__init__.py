"""peopletasks: human approval steps for Prefect.

```python
from prefect import flow
from peopletasks import request_approval_email

@flow
def vacation_request(employee: str, days: str) -> bool:
    decision = request_approval_email(
        title=f"Vacation {days}",
        requester=employee,
        approver="lead@example.com",
    )
    return decision.approved
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ApprovalDue",
    "ApprovalRequest",
    "ApprovalTimeout",
    "BackendError",
    "Capabilities",
    "Decision",
    "DecisionInput",
    "EmailApprovalRequest",
    "PeopleTaskClient",
    "PeopleTaskMail",
    "PeopleTaskService",
    "PeoplelogicBackend",
    "PeoplelogicTasks",
    "PlannrBackend",
    "PlannrTasks",
    "RequestKeyConflict",
    "TaskBackend",
    "TaskOutcome",
    "__version__",
    "arequest_approval",
    "arequest_approval_email",
    "create_approval_task",
    "request_approval",
    "request_approval_email",
    "send_approval_email",
    "wait_for_decision",
]

# The service does not need Prefect: its names load on first use.
_LAZY = {
    "ApprovalDue": "peopletasks.errors",
    "ApprovalRequest": "peopletasks.prefect.request",
    "ApprovalTimeout": "peopletasks.errors",
    "BackendError": "peopletasks.errors",
    "Capabilities": "peopletasks.backends.base",
    "EmailApprovalRequest": "peopletasks.prefect.request",
    "RequestKeyConflict": "peopletasks.errors",
    "PeopleTaskClient": "peopletasks.backends.service",
    "Decision": "peopletasks.prefect.decision",
    "DecisionInput": "peopletasks.prefect.decision",
    "PeopleTaskMail": "peopletasks.prefect.blocks",
    "PeopleTaskService": "peopletasks.prefect.blocks",
    "PeoplelogicBackend": "peopletasks.backends.peoplelogic",
    "PeoplelogicTasks": "peopletasks.prefect.blocks",
    "PlannrBackend": "peopletasks.backends.plannr",
    "PlannrTasks": "peopletasks.prefect.blocks",
    "TaskBackend": "peopletasks.backends.base",
    "TaskOutcome": "peopletasks.backends.base",
    "arequest_approval": "peopletasks.prefect.approval",
    "arequest_approval_email": "peopletasks.prefect.approval",
    "create_approval_task": "peopletasks.prefect.approval",
    "request_approval": "peopletasks.prefect.approval",
    "request_approval_email": "peopletasks.prefect.approval",
    "send_approval_email": "peopletasks.prefect.approval",
    "wait_for_decision": "peopletasks.prefect.approval",
}

if TYPE_CHECKING:
    from peopletasks.backends.base import Capabilities, TaskBackend, TaskOutcome
    from peopletasks.backends.peoplelogic import PeoplelogicBackend
    from peopletasks.backends.plannr import PlannrBackend
    from peopletasks.backends.service import PeopleTaskClient
    from peopletasks.errors import ApprovalDue, ApprovalTimeout, BackendError, RequestKeyConflict
    from peopletasks.prefect.approval import (
        arequest_approval,
        arequest_approval_email,
        create_approval_task,
        request_approval,
        request_approval_email,
        send_approval_email,
        wait_for_decision,
    )
    from peopletasks.prefect.blocks import (
        PeoplelogicTasks,
        PeopleTaskMail,
        PeopleTaskService,
        PlannrTasks,
    )
    from peopletasks.prefect.decision import Decision, DecisionInput
    from peopletasks.prefect.request import ApprovalRequest, EmailApprovalRequest


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'peopletasks' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
