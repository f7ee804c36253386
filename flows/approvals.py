"""The package's ready-made flows, and `python flows/approvals.py`: serve the deployments
of deployments/prefect.yaml from this process (no work pool needed).

Served deployments are named `<name>-served` (`request-approval/request-approval-served`):
a `prefect deploy` of the same file (`request-approval/request-approval`) and a served
process never replace each other's deployments. Schedules, parameters and the work
pool's environment (the block names) come from the file, as for `prefect deploy`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from peopletasks.flows import (
    create_recurring_tasks,
    request_approval_email_flow,
    request_approval_flow,
    vacation_request,
)

PREFECT_YAML = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"
SERVED = "-served"

__all__ = [
    "create_recurring_tasks",
    "request_approval_email_flow",
    "request_approval_flow",
    "served_deployments",
    "vacation_request",
]


def served_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """The deployments of `path`, to serve from this process (`flow.to_deployment`)."""
    import yaml
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    config = yaml.safe_load(path.read_text())
    made = []
    for entry in config["deployments"]:
        flow = load_flow_from_entrypoint(entry["entrypoint"])
        schedules = [
            Cron(schedule["cron"], timezone=schedule.get("timezone") or "UTC")
            for schedule in entry.get("schedules") or []
        ]
        made.append(
            flow.to_deployment(
                name=entry["name"] + SERVED,
                description=entry.get("description"),
                parameters=entry.get("parameters") or {},
                schedules=schedules or None,
            )
        )
    return made


def pool_environment(path: Path = PREFECT_YAML) -> dict[str, str]:
    """The environment the work pool gives flow runs (its job variables' `env`)."""
    import yaml

    config = yaml.safe_load(path.read_text())
    pools = config.get("definitions", {}).get("work_pool", {})
    return {k: str(v) for k, v in (pools.get("job_variables", {}).get("env") or {}).items()}


if __name__ == "__main__":
    from prefect import serve

    for name, value in pool_environment().items():
        os.environ.setdefault(name, value)
    serve(*served_deployments())
