"""What a waiting flow gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

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


class DecisionInput(RunInput):
    """The run input the service resumes a paused or suspended flow run with."""

    status: str
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None


SECRET_FIELDS = frozenset({"approverSecret", "requesterSecret", "links"})
