"""Recurring tasks: a set of tasks per period (a month, a week ...), as a scheduler user
expects.

- The period is the run's *scheduled* start, in its schedule's time zone: a run that
  starts late, or a backfill, makes the tasks of the period it was scheduled for.
- A task's request key is `recurring:{flow}/{deployment}:{period}:{name}`: running twice
  for a period creates nothing new, and two deployments never share tasks.
- A key that already names a task asked for something else is an error
  (`RequestKeyConflict`), not a silent reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prefect.context import FlowRunContext
from pydantic import BaseModel, Field


class RecurringTask(BaseModel):
    """One task of the set made every period."""

    name: str = Field(
        ..., min_length=1, description="Names the task within the set (part of its key)."
    )
    title: str = Field(..., min_length=1, description="Title; `{period}` becomes the period.")
    approver: str = Field(..., min_length=1, description="Who decides.")
    requester: str = Field(..., min_length=1, description="Who asks.")
    description: str = Field("", description="Details, Markdown; `{period}` as in the title.")
    decision_by: str | None = Field(None, description="Deadline (ISO 8601), if any.")


@dataclass(frozen=True)
class RunPeriod:
    """Where a run of the recurring flow stands: its key scope and scheduled start."""

    scope: str
    scheduled_start: datetime
    timezone: str

    def period(self, period_format: str) -> str:
        return self.scheduled_start.astimezone(ZoneInfo(self.timezone)).strftime(period_format)


async def run_period() -> RunPeriod:
    """This flow run's scope (flow / deployment), scheduled start and schedule time zone.

    Outside a deployment: the flow's name, the run's expected start (now, outside a run)
    and UTC.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return RunPeriod("local", datetime.now(UTC), "UTC")
    from prefect import get_client

    flow_name = context.flow.name if context.flow is not None else "flow"
    run = context.flow_run
    scheduled = run.expected_start_time or run.start_time or datetime.now(UTC)
    if run.deployment_id is None:
        return RunPeriod(flow_name, scheduled, "UTC")
    async with get_client() as prefect:
        run = await prefect.read_flow_run(run.id)
        deployment = await prefect.read_deployment(run.deployment_id)  # type: ignore[arg-type]
    scheduled = run.expected_start_time or scheduled
    timezone = _schedule_timezone(deployment.schedules, run.idempotency_key)
    return RunPeriod(f"{flow_name}/{deployment.name}", scheduled, timezone)


def _schedule_timezone(schedules: Sequence[object], idempotency_key: str | None) -> str:
    """The time zone of the schedule that made this run (Prefect's scheduler names it in
    the run's idempotency key, `scheduled {deployment} {schedule} {time}`); for a run
    made otherwise, that of the deployment's only schedule; else UTC."""
    parts = (idempotency_key or "").split(" ")
    chosen = None
    if len(parts) >= 3 and parts[0] == "scheduled":
        chosen = next((s for s in schedules if str(getattr(s, "id", "")) == parts[2]), None)
    if chosen is None and len(schedules) == 1:
        chosen = schedules[0]
    timezone = getattr(getattr(chosen, "schedule", None), "timezone", None)
    return str(timezone or "UTC")
