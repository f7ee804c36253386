"""When the service acts on a pending task by itself: its reminders and its escalation,
computed from what the task says (pure functions of the task's values).

Reminders come `every` after the task's creation (the 1st at created + every, the 2nd
at created + 2 x every, ...) and `beforeDue` before its deadline, merged in time, all
before the deadline, at most `max` in all. A reminder time missed (the service was
down) is skipped, not made up: the next reminder is the first time still to come.
The escalation comes once, `after` the task's creation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from peopletasks.domain.values import duration_seconds
from peopletasks.errors import ValidationFailed


def _after(value: Any) -> timedelta:
    return timedelta(seconds=duration_seconds(value))


def next_reminder(
    reminders: Mapping[str, Any] | None,
    created_at: datetime,
    decision_by: datetime | None,
    *,
    after: datetime,
    sent: int,
) -> datetime | None:
    """The first reminder time later than `after`, or None (none left, or `max` sent)."""
    if not reminders or sent >= reminders.get("max", 10):
        return None
    times: list[datetime] = []
    every = reminders.get("every")
    if every is not None:
        step = duration_seconds(every)
        passed = (after - created_at).total_seconds()
        k = max(1, math.floor(passed / step) + 1)
        when = created_at + timedelta(seconds=k * step)
        if when <= after:  # floating point at the boundary
            when += timedelta(seconds=step)
        times.append(when)
    if decision_by is not None:
        times.extend(decision_by - _after(b) for b in reminders.get("beforeDue") or ())
    upcoming = [t for t in times if t > after and (decision_by is None or t < decision_by)]
    return min(upcoming, default=None)


def escalation_time(escalation: Mapping[str, Any] | None, created_at: datetime) -> datetime | None:
    return created_at + _after(escalation["after"]) if escalation else None


def check_follow_ups(
    reminders: Mapping[str, Any] | None,
    escalation: Mapping[str, Any] | None,
    *,
    created_at: datetime,
    decision_by: datetime | None,
    approver: str,
) -> None:
    """Refuse (422 naming the field) reminders or an escalation that could never
    happen as asked: after the deadline, before the task exists, to the approver."""
    if reminders:
        before_due = reminders.get("beforeDue") or ()
        if before_due and decision_by is None:
            raise ValidationFailed.field("reminders.beforeDue", "needs a decisionBy")
        every = reminders.get("every")
        if (
            every is not None
            and decision_by is not None
            and created_at + _after(every) >= decision_by
        ):
            raise ValidationFailed.field(
                "reminders.every",
                f"the first reminder ({every} after creation) would come after the "
                "deadline (decisionBy)",
            )
        for index, before in enumerate(before_due):
            assert decision_by is not None
            if decision_by - _after(before) <= created_at:
                raise ValidationFailed.field(
                    f"reminders.beforeDue.{index}",
                    f"{before} before the deadline is before the task is created",
                )
    if escalation:
        if decision_by is not None and created_at + _after(escalation["after"]) >= decision_by:
            raise ValidationFailed.field(
                "escalation.after",
                f"the escalation ({escalation['after']} after creation) would come after the "
                "deadline (decisionBy)",
            )
        if escalation.get("to") == approver:
            raise ValidationFailed.field(
                "escalation.to", f"{approver} is the approver: escalate to someone else"
            )
