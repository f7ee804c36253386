"""wait="suspend" under a served deployment: the flow-run process exits while the
approver thinks, and the service's decision brings the run back.

Real parts: `flow.serve` in a subprocess (its runner starts each flow run in a
subprocess of its own), the session's Prefect server, `peopletasks serve` with its
webhook dispatcher and deadline scheduler.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from tests.conftest import TEST_KEY
from tests.support.receiver import eventually
from tests.support.server import ServiceProcess, cli, service_env

ROOT = Path(__file__).resolve().parents[1]
FLOW_FILE = Path("tests/support/suspend_flow.py")
DEPLOYMENT = "suspend-approval/suspend-test"


class Served:
    """The service, and the suspend flow served as a deployment from another process."""

    def __init__(self, service: ServiceProcess, token: str, directory: Path) -> None:
        self.service = service
        self.token = token
        self.directory = directory

    def tasks(self, title: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.url}/people-task/tasks",
            headers={"Authorization": f"Bearer {self.token}"},
            params={"pattern": title},
        )
        assert response.status_code == 200, response.text
        return [t for t in response.json() if t["title"] == title]

    def decide(self, task_id: str, action: str, comment: str | None = None) -> None:
        lead = cli("token", "create", "--email", "lead@example.com", env=self.service.env)
        response = httpx.put(
            f"{self.service.url}/people-task/tasks/{task_id}/{action}",
            headers={"Authorization": f"Bearer {lead.splitlines()[-1]}"},
            json={"comment": comment} if comment else {},
        )
        assert response.status_code == 200, response.text

    async def start(self, title: str, **parameters: Any) -> tuple[FlowRun, Path]:
        """A run of the served deployment (not waited for); its events file."""
        events = self.directory / f"events-{uuid.uuid4().hex[:8]}.jsonl"
        run = await run_deployment(
            DEPLOYMENT,
            parameters={
                "title": title,
                "requester": "ann@example.com",
                "events_file": str(events),
                **parameters,
            },
            timeout=0,
        )
        assert isinstance(run, FlowRun)
        return run, events


async def run_state(run: FlowRun) -> tuple[str, str]:
    """(state type, state name) of the run as Prefect has it now."""
    async with get_client() as client:
        current = await client.read_flow_run(run.id)
    assert current.state is not None
    return current.state.type.value, current.state.name or ""


async def wait_for_state(run: FlowRun, *names: str, timeout: float) -> str:
    async def reached() -> str | None:
        _, name = await run_state(run)
        return name if name in names else None

    found: str = await eventually(reached, timeout=timeout, interval=0.2)
    return found


def events_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def process_gone(pid: int) -> bool:
    """No such process, or one that has exited and waits only to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


@pytest.fixture(scope="module")
def served(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("suspend")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'service.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        runner_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(directory / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PEOPLETASKS_API_URL": service.url,
            "PEOPLETASKS_API_TOKEN": token,
        }
        log = directory / "serve.log"
        with log.open("wb") as out:
            runner = subprocess.Popen(
                [sys.executable, str(FLOW_FILE), DEPLOYMENT.split("/")[1]],
                cwd=ROOT,
                env=runner_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            served = Served(service, token, directory)
            _wait_for_deployment(runner, log)
            yield served
        finally:
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(timeout=20)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()


def _wait_for_deployment(runner: subprocess.Popen[bytes], log: Path) -> None:
    async def registered() -> bool:
        if runner.poll() is not None:
            return True  # it died: said below
        async with get_client() as client:
            try:
                await client.read_deployment_by_name(DEPLOYMENT)
            except Exception:
                return False
        return True

    asyncio.run(eventually(registered, timeout=90, interval=0.25))
    if runner.poll() is not None:
        raise RuntimeError(f"flow.serve exited:\n{log.read_text()}")


async def suspended_with_process_gone(served: Served, run: FlowRun, events: Path) -> int:
    """Wait until the run is Suspended and its flow-run process has exited; its pid."""
    await wait_for_state(run, "Suspended", timeout=90)
    entered = events_of(events)
    assert [e["event"] for e in entered] == ["enter"]
    pid = int(entered[0]["pid"])
    await eventually(lambda: process_gone(pid), timeout=30, interval=0.1)
    # Nothing runs the flow while it waits: still Suspended, the body after the wait unrun.
    assert await run_state(run) == ("PAUSED", "Suspended")
    assert [e["event"] for e in events_of(events)] == ["enter"]
    return pid


@pytest.mark.parametrize(
    ("action", "comment", "expected"),
    [("approve", "ship it", "approved"), ("reject", "not now", "rejected")],
)
async def test_suspended_run_exits_then_the_decision_brings_it_back(
    served: Served, action: str, comment: str, expected: str
) -> None:
    title = f"suspend {action} {uuid.uuid4().hex[:6]}"
    run, events = await served.start(title)
    first_pid = await suspended_with_process_gone(served, run, events)
    [task] = served.tasks(title)
    assert task["status"] == "pending"

    served.decide(task["id"], action, comment)

    await wait_for_state(run, "Completed", timeout=90)
    entered, again, decided = events_of(events)
    assert (entered["event"], again["event"], decided["event"]) == ("enter", "enter", "decided")
    assert again["pid"] != first_pid  # a new flow-run process picked the run up again
    decision = decided["decision"]
    assert decision["status"] == expected
    assert decision["approved"] is (expected == "approved")
    assert decision["task_id"] == task["id"]
    assert decision["decided_by"] == "lead@example.com"
    assert decision["comment"] == comment
    # The re-run found its task again: still one task for this request.
    assert [t["id"] for t in served.tasks(title)] == [task["id"]]


async def test_suspended_run_comes_back_due_at_the_deadline(served: Served) -> None:
    title = f"suspend due {uuid.uuid4().hex[:6]}"
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    run, events = await served.start(title, decision_by=deadline.isoformat())
    await suspended_with_process_gone(served, run, events)
    assert datetime.now(UTC) < deadline, "the run took too long to suspend for this test"

    # Nobody decides: the service's deadline scheduler turns the task due and resumes the run.
    await wait_for_state(run, "Completed", timeout=90)
    decided = events_of(events)[-1]
    assert decided["event"] == "decided"
    assert decided["decision"]["status"] == "due"
    assert decided["decision"]["approved"] is False
    assert datetime.fromisoformat(decided["decision"]["task"]["decisionBy"]) <= datetime.now(UTC)
    assert len(served.tasks(title)) == 1
