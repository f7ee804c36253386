"""The flows bench/resume.py measures in suspend mode, and `python bench/suspend_flows.py
serve`: both served from one process (the runner polls every PREFECT_RUNNER_POLL_FREQUENCY
seconds). A process worker runs them as `suspend_flows.ours` / `suspend_flows.bare`
(bench/ on its PYTHONPATH).

- `ours`: `request_approval(wait="suspend")` against the service of the saved
  PeopleTaskService block "bench"; the service resumes the run when the task is decided.
- `bare`: Prefect's own `suspend_flow_run()`; the bench resumes it with
  `resume_flow_run`.
"""

from __future__ import annotations

import sys

from prefect import flow, serve, suspend_flow_run

from peopletasks import request_approval

APPROVER = "approver@example.com"
REQUESTER = "requester@example.com"


@flow(name="bench-suspend-ours", persist_result=True)
def ours(title: str) -> bool:
    decision = request_approval(title, APPROVER, REQUESTER, wait="suspend", service="bench")
    return decision.approved


@flow(name="bench-suspend-bare", persist_result=True)
def bare() -> bool:
    suspend_flow_run(timeout=3600)
    return True


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve(ours.to_deployment(name="serve"), bare.to_deployment(name="serve"))
