"""What a waiting flow gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field

from peopletasks.backends.base import TaskOutcome
from peopletasks.backends.service import SECRET_FIELDS


class Decision(BaseModel):
    """The outcome of an approval request."""

    status: Literal["approved", "rejected", "due"]
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    decided_by_system: bool = Field(
        False, description="Decided by the service itself (an escalation), not a person."
    )
    option: str | None = Field(None, description="The key of the response that decided.")
    data: Any = Field(
        None,
        description="The form as the deciding approver filled it (an instance of the "
        "request's form model, when it was given one).",
    )
    responses: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each approver's response: email, status, respondedAt, comment, option, data.",
    )
    task: dict[str, Any] = Field(default_factory=dict, description="The task as it stands.")

    @classmethod
    def from_outcome(cls, outcome: TaskOutcome) -> Decision:
        """From any backend's reading of a decided (or due) task."""
        if outcome.status == "pending":
            raise ValueError(f"task {outcome.task_id} is not decided yet")
        responses = list(outcome.task.get("approvers") or ())
        deciding = _response_of(responses, outcome.decided_by)
        return cls(
            status=outcome.status,
            approved=outcome.status == "approved",
            task_id=outcome.task_id,
            decided_by=outcome.decided_by,
            decided_at=outcome.decided_at,
            comment=outcome.comment,
            # Our service's own: several approvers' responses, options, forms, escalation.
            decided_by_system=bool(outcome.task.get("decidedBySystem")),
            option=deciding.get("option"),
            data=deciding.get("data"),
            responses=responses,
            task=outcome.task,
        )

    @property
    def summary(self) -> str:
        """One line: `approved by lead@example.com at 2026-12-01 17:00:00+00:00: "Enjoy"`."""
        if self.status == "due":
            return f"due: not decided by the deadline (task {self.task_id})"
        by = f" by {self.decided_by}" if self.decided_by else ""
        if self.decided_by_system:
            by = " by the service (escalation)"
        at = f" at {self.decided_at.isoformat()}" if self.decided_at else ""
        said = f': "{self.comment}"' if self.comment else ""
        return f"{self.status}{by}{at}{said} (task {self.task_id})"


def _response_of(responses: list[dict[str, Any]], person: str | None) -> dict[str, Any]:
    """The response of the approver who decided (empty: none, or the service decided)."""
    for response in responses:
        if person and str(response.get("email", "")).lower() == person.lower():
            return response
    return {}


class DecisionInput(RunInput):
    """The run input the service resumes a paused or suspended flow run with (for flows
    that pause with `pause_flow_run(wait_for_input=DecisionInput)` themselves). Its
    fields are a contract: Prefect refuses a run input with fields the waiting run's
    model lacks, so flows that declared these keep resuming; the rest of the decision
    (option, form data, each approver's response) is read from the task."""

    status: str
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None


class ResumeInput(RunInput):
    """What a run suspended by `wait="suspend"` accepts when resumed: anything (the
    service's decision, or Prefect's Resume form, which asks for nothing). The run reads
    the decision from the task itself; the form's description says where to decide."""

    model_config = ConfigDict(extra="allow")


__all__ = ["SECRET_FIELDS", "Decision", "DecisionInput", "ResumeInput"]
