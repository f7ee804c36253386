"""A `prefect` webhook resumes a real paused Prefect flow run with the decision."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, cli, service_env


class DecisionInput(RunInput):
    status: str
    approved: bool
    task_id: str
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None


def test_a_decision_resumes_the_waiting_flow_run(prefect_api: str, tmp_path: Path) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    created: queue.Queue[dict[str, Any]] = queue.Queue()
    outcome: dict[str, Any] = {}

    with ServiceProcess(env) as service:
        base = f"{service.url}/people-task"

        @flow
        def vacation_request() -> dict[str, Any]:
            task = httpx.post(
                f"{base}/tasks",
                headers=auth,
                json={
                    "title": "Vacation",
                    "requester": "ann@example.com",
                    "approver": "lead@example.com",
                },
            ).json()
            hook = httpx.post(
                f"{base}/webhooks",
                headers=auth,
                json={
                    "taskId": task["id"],
                    "prefect": {"flowRunId": str(flow_run.id), "apiUrl": prefect_api},
                },
            )
            hook.raise_for_status()
            created.put(task)
            decision = pause_flow_run(wait_for_input=DecisionInput, timeout=120, poll_interval=1)
            return decision.model_dump()

        def run() -> None:
            outcome["result"] = vacation_request()

        runner = threading.Thread(target=run)
        runner.start()
        task = created.get(timeout=60)
        approved = httpx.put(
            f"{base}/tasks/{task['id']}/approve",
            json={"secret": task["approverSecret"], "comment": "Enjoy"},
        )
        assert approved.status_code == 200, approved.text
        runner.join(timeout=90)
        assert not runner.is_alive()

    result = outcome["result"]
    assert result["approved"] is True
    assert result["status"] == "approved"
    assert result["task_id"] == task["id"]
    assert result["decided_by"] == "lead@example.com"
    assert result["comment"] == "Enjoy"
