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

    def decide(
        self, task_id: str, action: str, comment: str | None = None, as_: str = "lead@example.com"
    ) -> None:
        lead = cli("token", "create", "--email", as_, env=self.service.env)
        response = httpx.put(
            f"{self.service.url}/people-task/tasks/{task_id}/{action}",
            headers={"Authorization": f"Bearer {lead.splitlines()[-1]}"},
            json={"comment": comment} if comment else {},
        )
        assert response.status_code == 200, response.text

    def register_resume(self, task_id: str, run: FlowRun, api_url: str) -> str:
        """One more Prefect resume webhook for `run` on this task (a second subscriber,
        or a redelivery, as Prefect sees it); its id."""
        response = httpx.post(
            f"{self.service.url}/people-task/webhooks",
            headers={"Authorization": f"Bearer {self.token}"},
            json={"taskId": task_id, "prefect": {"flowRunId": str(run.id), "apiUrl": api_url}},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.url}/people-task/webhooks/{webhook_id}/deliveries",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        return list(response.json())

    def resend(self, webhook_id: str, delivery_id: str) -> None:
        response = httpx.post(
            f"{self.service.url}/people-task/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
            headers={"Authorization": f"Bearer {self.token}"},
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


async def state_history(run: FlowRun) -> list[tuple[str, datetime]]:
    """(state name, timestamp) of every state the run went through, oldest first."""
    async with get_client() as client:
        states = await client.read_flow_run_states(run.id)
    return [(state.name or "", state.timestamp) for state in states]


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
    # The flow computes its deadline from now(): each run of the body asks with another.
    run, events = await served.start(title, hours_from_now=24)
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
    # The re-run found its task again: still one task for this request (its key is the
    # flow run and the call's place, not the arguments).
    assert [t["id"] for t in served.tasks(title)] == [task["id"]]


async def test_a_suspended_run_waits_for_all_three_approvers(served: Served) -> None:
    """Responses that do not meet the rule leave the run suspended (its process gone);
    the one that does brings it back, with every approver's response."""
    title = f"suspend all three {uuid.uuid4().hex[:6]}"
    approvers = ["lead@example.com", "cfo@example.com", "legal@example.com"]
    run, events = await served.start(title, approvers=approvers, rule="all")
    await suspended_with_process_gone(served, run, events)
    [task] = served.tasks(title)
    for approver in approvers[:2]:
        served.decide(task["id"], "approve", f"yes from {approver}", as_=approver)
    [task] = served.tasks(title)
    assert task["status"] == "pending"
    assert [a["status"] for a in task["approvers"]] == ["approved", "approved", "pending"]
    assert await run_state(run) == ("PAUSED", "Suspended")  # two of three: not resumed

    served.decide(task["id"], "approve", "last one", as_=approvers[2])

    await wait_for_state(run, "Completed", timeout=90)
    decision = events_of(events)[-1]["decision"]
    assert decision["status"] == "approved" and decision["decided_by"] == "legal@example.com"
    assert [(r["email"], r["comment"]) for r in decision["responses"]] == [
        ("lead@example.com", "yes from lead@example.com"),
        ("cfo@example.com", "yes from cfo@example.com"),
        ("legal@example.com", "last one"),
    ]


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


def accepted_at(attempts: list[dict[str, Any]]) -> list[datetime]:
    """When Prefect accepted (resumed the run on) a delivery's attempts."""
    return [
        datetime.fromisoformat(a["attemptedAt"])
        for a in attempts
        if '"ACCEPT"' in (a.get("responseBody") or "")
    ]


async def test_two_resumes_of_one_decision_continue_the_run_once(
    served: Served, prefect_api: str
) -> None:
    title = f"suspend twice {uuid.uuid4().hex[:6]}"
    run, events = await served.start(title)
    await suspended_with_process_gone(served, run, events)
    [task] = served.tasks(title)
    # Besides the flow's own resume webhook, a second one for the same run and task:
    # the decision reaches Prefect twice, as an at-least-once redelivery would.
    extra = served.register_resume(task["id"], run, prefect_api)

    served.decide(task["id"], "approve")
    await wait_for_state(run, "Completed", timeout=90)
    [delivery] = await eventually(
        lambda: [d for d in served.deliveries(extra) if d["attempts"] >= 1], timeout=30
    )
    # The code after the wait ran once, with the decision; Prefect resumed the run once.
    assert [e["event"] for e in events_of(events)] == ["enter", "enter", "decided"]
    assert events_of(events)[-1]["decision"]["status"] == "approved"
    assert [name for name, _ in await state_history(run)].count("Resuming") == 1

    # Sending that decision once more, after the fact, changes nothing either.
    served.resend(extra, delivery["id"])
    await eventually(
        lambda: served.deliveries(extra)[0]["attempts"] > delivery["attempts"], timeout=30
    )
    assert await run_state(run) == ("COMPLETED", "Completed")
    assert [e["event"] for e in events_of(events)] == ["enter", "enter", "decided"]
    assert [name for name, _ in await state_history(run)].count("Resuming") == 1
    assert len(served.tasks(title)) == 1


async def test_a_stale_resume_does_not_answer_the_next_approval(
    served: Served, prefect_api: str
) -> None:
    """A flow asks twice. A late delivery of the first decision (a retry, a resend)
    resumes the run while it waits on the second: the second stays unanswered."""
    title = f"suspend stale {uuid.uuid4().hex[:6]}"
    run, events = await served.start(title, approvals=2)
    await suspended_with_process_gone(served, run, events)
    [first] = served.tasks(f"{title} #1")
    extra = served.register_resume(first["id"], run, prefect_api)
    served.decide(first["id"], "approve")

    # The run comes back, takes the first decision, asks the second time and suspends.
    await eventually(lambda: [e for e in events_of(events) if e["event"] == "decided"], timeout=90)
    [second] = await eventually(lambda: served.tasks(f"{title} #2"), timeout=30)
    await wait_for_state(run, "Suspended", timeout=90)
    suspended_since = (await state_history(run))[-1][1]

    # The first decision arrives again, while the run waits on the second.
    [delivery] = served.deliveries(extra)
    served.resend(extra, delivery["id"])
    await eventually(
        lambda: [
            t for t in accepted_at(served.deliveries(extra)[0]["attemptLog"]) if t > suspended_since
        ],
        timeout=60,
    )

    async def settled() -> str | None:
        history = await state_history(run)
        name, at = history[-1]
        return (
            name if name in {"Suspended", "Completed", "Failed"} and at > suspended_since else None
        )

    assert await eventually(settled, timeout=90, interval=0.2) == "Suspended"
    # (Each re-run goes through the flow body from the top: it passes the first
    # approval again, answered at once; nothing answered the second.)
    decided = [e for e in events_of(events) if e["event"] == "decided"]
    assert {d["decision"]["task_id"] for d in decided} == {first["id"]}
    assert served.tasks(f"{title} #2")[0]["status"] == "pending"

    # The second approver's own decision is what the second request gets.
    served.decide(second["id"], "reject", "no")
    await wait_for_state(run, "Completed", timeout=90)
    last_run = events_of(events)[-1]["pid"]
    decided = [
        e["decision"] for e in events_of(events) if e["event"] == "decided" and e["pid"] == last_run
    ]
    assert [(d["task_id"], d["status"]) for d in decided] == [
        (first["id"], "approved"),
        (second["id"], "rejected"),
    ]
    assert len(served.tasks(f"{title} #1")) == len(served.tasks(f"{title} #2")) == 1
