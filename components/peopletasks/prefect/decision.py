"""What a waiting flow gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field

from peopletasks.backends.base import TaskOutcome
from peopletasks.backends.service import SECRET_FIELDS
from peopletasks.templating import parse_iso


class Decision(BaseModel):
    """The outcome of an approval request."""

    status: Literal["approved", "rejected", "due"]
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    task: dict[str, Any] = Field(default_factory=dict, description="The task as it stands.")

    @classmethod
    def from_task(cls, task: dict[str, Any]) -> Decision:
        public = {k: v for k, v in task.items() if k not in SECRET_FIELDS}
        return cls(
            status=task["status"],
            approved=task["status"] == "approved",
            task_id=task["id"],
            decided_by=task.get("decidedBy"),
            decided_at=parse_iso(task.get("decidedAt")),
            comment=task.get("comment"),
            task=public,
        )

    @classmethod
    def from_outcome(cls, outcome: TaskOutcome) -> Decision:
        """From any backend's reading of a decided (or due) task."""
        if outcome.status == "pending":
            raise ValueError(f"task {outcome.task_id} is not decided yet")
        return cls(
            status=outcome.status,
            approved=outcome.status == "approved",
            task_id=outcome.task_id,
            decided_by=outcome.decided_by,
            decided_at=outcome.decided_at,
            comment=outcome.comment,
            task=outcome.task,
        )

    @property
    def summary(self) -> str:
        """One line: `approved by lead@example.com at 2026-12-01 17:00:00+00:00: "Enjoy"`."""
        if self.status == "due":
            return f"due: not decided by the deadline (task {self.task_id})"
        by = f" by {self.decided_by}" if self.decided_by else ""
        at = f" at {self.decided_at.isoformat()}" if self.decided_at else ""
        said = f': "{self.comment}"' if self.comment else ""
        return f"{self.status}{by}{at}{said} (task {self.task_id})"


class DecisionInput(RunInput):
    """The run input the service resumes a paused or suspended flow run with (for flows
    that pause with `pause_flow_run(wait_for_input=DecisionInput)` themselves)."""

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
