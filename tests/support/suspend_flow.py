"""A flow that asks for an approval with wait="suspend", served from its own process.

`python tests/support/suspend_flow.py NAME` serves it as deployment `suspend-approval/NAME`
(the runner starts each flow run in a subprocess of its own). The service comes from
`PEOPLETASKS_API_URL` / `PEOPLETASKS_API_TOKEN`.

Each flow run appends what it does to `events_file`, one JSON object a line:
`{"event": "enter", "pid": ...}` every time the flow body starts (the first run and
the re-run after the resume), `{"event": "decided", "pid": ..., "decision": {...}}`
when the code after the wait runs.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow

from peopletasks import request_approval


def record(events_file: str, **event: Any) -> None:
    with Path(events_file).open("a") as out:
        out.write(json.dumps({**event, "pid": os.getpid()}) + "\n")


@flow(name="suspend-approval")
def ask_and_suspend(
    title: str,
    requester: str,
    events_file: str,
    decision_by: str | None = None,
    on_due: str = "return",
    approvals: int = 1,
    hours_from_now: float | None = None,
    approvers: list[str] | None = None,
    rule: str = "any",
) -> list[dict[str, Any]]:
    """Ask `approvals` times in a row (titles "TITLE #1", "TITLE #2" ... when more than one).
    `hours_from_now`: the deadline computed from now() by each run of the body (as careless
    flow code does). `approvers` and `rule`: several approvers instead of the lead."""
    record(events_file, event="enter")
    if hours_from_now is not None:
        decision_by = (datetime.now(UTC) + timedelta(hours=hours_from_now)).isoformat()
    decisions = []
    for n in range(1, approvals + 1):
        decision = request_approval(
            title if approvals == 1 else f"{title} #{n}",
            approvers or "lead@example.com",
            requester,
            decision_by=decision_by,
            wait="suspend",
            on_due=on_due,  # type: ignore[arg-type]
            rule=rule,  # type: ignore[arg-type]
        )
        decisions.append(decision.model_dump(mode="json"))
        record(events_file, event="decided", decision=decisions[-1])
    return decisions


if __name__ == "__main__":
    ask_and_suspend.serve(name=sys.argv[1] if len(sys.argv) > 1 else "test")
