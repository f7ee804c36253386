"""The production road, as a new Prefect user takes it, from the project's own .venv.

Real parts only: the session's `prefect server start`, `prefect deploy --prefect-file
deployments/prefect.yaml --all`, `prefect deployment ls`, a process worker
(`prefect worker start --pool approvals --type process`, polling every second; each
flow run a process of its own), `peopletasks serve` (webhook targets on private
addresses refused; the Prefect API named in PEOPLETASKS_PREFECT_API_URL), an SMTP
server, and blocks holding the credentials (the deployments carry only their names).

The runs start together (the worker starts their processes in parallel); each test
then drives one: suspend approve / reject / due, pause, a retry from the UI, a refused
resume target, and a run made by the deployment's cron schedule.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiosmtpd.controller import Controller
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
from prefect.states import Scheduled

from peopletasks import Decision, PeopleTaskMail, PeopleTaskService
from tests.conftest import TEST_KEY
from tests.support.prefect_server import PREFECT, prefect_env
from tests.support.receiver import eventually
from tests.support.server import ServiceProcess, cli, free_port, service_env

ROOT = Path(__file__).resolve().parents[1]
LEAD = "lead@example.com"
ANN = "ann@example.com"
DEPLOYMENTS = {
    "create-recurring-tasks/monthly-reviews",
    "request-approval/request-approval",
    "request-approval-email/request-approval-email",
    "vacation-request/vacation-request",
}


class Inbox:
    """An SMTP server (aiosmtpd) keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def about(self, title: str) -> list[Message]:
        return [m for m in self.messages if title in str(m["Subject"])]


class Service:
    """A `peopletasks serve` process and the callers the tests need."""

    def __init__(self, process: ServiceProcess, token: str) -> None:
        self.process = process
        self.token = token
        self.lead = cli("token", "create", "--email", LEAD, env=process.env).splitlines()[-1]

    def tasks(self, title: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.process.url}/people-task/tasks",
            headers={"Authorization": f"Bearer {self.token}"},
            params={"pattern": title},
        )
        assert response.status_code == 200, response.text
        return [t for t in response.json() if t["title"] == title]

    def edit(self, task_id: str, **fields: Any) -> None:
        response = httpx.put(
            f"{self.process.url}/people-task/tasks/{task_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            json=fields,
        )
        assert response.status_code == 200, response.text

    def decide(self, task_id: str, action: str, comment: str | None = None) -> None:
        response = httpx.put(
            f"{self.process.url}/people-task/tasks/{task_id}/{action}",
            headers={"Authorization": f"Bearer {self.lead}"},
            json={"comment": comment} if comment else {},
        )
        assert response.status_code == 200, response.text


@dataclass
class Road:
    service: Service
    refusing: Service
    inbox: Inbox
    worker_log: Path
    deployed: str
    listed: str
    runs: dict[str, FlowRun] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    deadline: datetime = field(default_factory=lambda: datetime.now(UTC))


def _service(directory: Path, name: str, **settings: str) -> tuple[ServiceProcess, str]:
    env = service_env(f"sqlite+aiosqlite:///{directory / f'{name}.db'}", TEST_KEY)
    env["PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS"] = "false"  # as in production
    env.update(settings)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    return ServiceProcess(env).start(), token


@pytest.fixture(scope="module")
async def road(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Road]:
    directory = tmp_path_factory.mktemp("production-road")
    # The service resumes runs on the Prefect API it is told of, and on nothing else private.
    process, token = _service(directory, "tasks", PEOPLETASKS_PREFECT_API_URL=prefect_api)
    refusing_process, refusing_token = _service(directory, "refusing")
    inbox = Inbox()
    inbox.controller.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        service = Service(process, token)
        refusing = Service(refusing_process, refusing_token)
        # Credentials where Prefect keeps them: blocks, saved once.
        await PeopleTaskService(url=process.url, token=token).save("peopletasks", overwrite=True)
        await PeopleTaskService(url=refusing_process.url, token=refusing_token).save(
            "refusing", overwrite=True
        )
        await PeopleTaskMail(
            host="127.0.0.1", port=inbox.port, sender="approvals@example.com"
        ).save("peopletasks", overwrite=True)

        env = prefect_env(
            directory / "prefect-home",
            PREFECT_API_URL=prefect_api,
            # Results where this process reads them (a run_deployment caller's state.result()).
            PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()),
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_LOGGING_LEVEL="INFO",
        )
        # The README's steps: a process work pool, the deployments, a worker.
        _prefect(env, "work-pool", "create", "approvals", "--type", "process", "--overwrite")
        deployed = _prefect(
            env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"
        )
        listed = _prefect(env, "deployment", "ls")
        worker_log = directory / "worker.log"
        worker = _start_worker(env, directory, worker_log)
        road = Road(service, refusing, inbox, worker_log, deployed, listed)
        await _start_runs(road)
        yield road
    finally:
        if worker is not None:
            os.killpg(worker.pid, 2)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait()
        inbox.controller.stop()
        process.stop()
        refusing_process.stop()


def _start_worker(env: dict[str, str], directory: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(PREFECT), "worker", "start", "--pool", "approvals", "--type", "process"],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _prefect(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(PREFECT), *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "250"},  # Rich wraps nothing at this width
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def _start_runs(road: Road) -> None:
    """Start every scenario's run at once (the worker runs them in parallel)."""
    tag = uuid.uuid4().hex[:6]
    # Far enough for any machine to suspend first; the test brings it closer then.
    road.deadline = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    asks: dict[str, tuple[str, dict[str, Any]]] = {
        "approve": ("request-approval-email/request-approval-email", {"wait": "suspend"}),
        "reject": ("request-approval/request-approval", {"wait": "suspend"}),
        "due": (
            "request-approval/request-approval",
            {"wait": "suspend", "decision_by": road.deadline.isoformat()},
        ),
        "pause": ("request-approval/request-approval", {"wait": "pause"}),
        "retry": ("request-approval/request-approval", {"wait": "suspend", "timeout": 2}),
        "refused": (
            "request-approval-email/request-approval-email",
            {"wait": "suspend", "service": "refusing"},
        ),
    }
    for name, (deployment, parameters) in asks.items():
        title = f"road {name} {tag}"
        road.titles[name] = title
        run = await run_deployment(
            deployment,
            parameters={"title": title, "approver": LEAD, "requester": ANN, **parameters},
            timeout=0,
        )
        assert isinstance(run, FlowRun)
        road.runs[name] = run


async def read_run(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def wait_for_state(road: Road, run_id: UUID, *names: str, timeout: float = 90) -> FlowRun:
    async def reached() -> FlowRun | None:
        run = await read_run(run_id)
        return run if run.state is not None and run.state.name in names else None

    try:
        found: FlowRun = await eventually(reached, timeout=timeout, interval=0.25)
    except AssertionError:
        run = await read_run(run_id)
        raise AssertionError(
            f"run never reached {names}: {run.state!r}\n{road.worker_log.read_text()[-4000:]}"
        ) from None
    return found


async def suspended_times(road: Road, run_id: UUID, times: int) -> None:
    """Wait until the run has been suspended `times` times."""

    async def enough() -> bool:
        return (await history(run_id)).count("Suspended") >= times

    try:
        await eventually(enough, timeout=90, interval=0.25)
    except AssertionError:
        raise AssertionError(
            f"not suspended {times} times: {await history(run_id)}\n"
            f"{road.worker_log.read_text()[-4000:]}"
        ) from None


async def history(run_id: UUID) -> list[str]:
    async with get_client() as client:
        return [s.name or "" for s in await client.read_flow_run_states(run_id)]


async def markdown_artifacts(run_id: UUID) -> list[str]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return [str(a.data) for a in found if a.type == "markdown"]


async def logs_of(run_id: UUID) -> list[str]:
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
        )
    return [log.message for log in logs]


async def the_task(road: Road, name: str) -> dict[str, Any]:
    [task] = await eventually(lambda: road.service.tasks(road.titles[name]), timeout=60)
    return dict(task)


def test_the_stock_setup_deploys_every_deployment(road: Road) -> None:
    for name in DEPLOYMENTS:
        assert f"Deployment '{name}' successfully created" in road.deployed
        # `prefect deployment ls` lists them (it failed on fastapi 0.151-0.154).
        assert name in road.listed


async def test_no_credential_travels_with_a_deployment(road: Road) -> None:
    async with get_client() as client:
        for name in DEPLOYMENTS:
            deployment = await client.read_deployment_by_name(name)
            carried = f"{deployment.job_variables} {deployment.parameters} {deployment.pull_steps}"
            assert road.service.token not in carried
            assert "TOKEN" not in carried and "PASSWORD" not in carried
            assert deployment.job_variables["env"]["PEOPLETASKS_SERVICE_BLOCK"] == "peopletasks"
            assert deployment.pull_steps == []  # the flows come from the installed package


async def test_suspend_approve_by_email(road: Road) -> None:
    run = road.runs["approve"]
    await wait_for_state(road, run.id, "Suspended")
    task = await the_task(road, "approve")
    # The mail went out through the block's SMTP server (the worker has no SMTP settings).
    [mail] = [m for m in road.inbox.about(road.titles["approve"]) if m["To"] == LEAD]
    assert task["id"] in str(mail["X-PeopleTasks-Task-Id"])

    road.service.decide(task["id"], "approve", "ship it")
    done = await wait_for_state(road, run.id, "Approved", "Failed", "Crashed")
    assert done.state is not None and done.state.name == "Approved", done.state
    assert done.state.type.value == "COMPLETED"
    assert f"approved by {LEAD}" in (done.state.message or "")
    # The result is persisted (as JSON): a run_deployment caller reads the decision.
    decision = Decision.model_validate(await done.state.aresult())
    assert (decision.status, decision.decided_by, decision.comment) == ("approved", LEAD, "ship it")

    # The decision is on the run: a log line and a Markdown artifact with who, when, a link.
    async def logged() -> bool:  # (logs reach the API shortly after the run ends)
        return any(f"approved by {LEAD}" in line for line in await logs_of(run.id))

    await eventually(logged, timeout=30, interval=0.5)
    [artifact] = await markdown_artifacts(run.id)
    assert "**approved**" in artifact and LEAD in artifact and "ship it" in artifact
    assert f"{road.service.process.url}/people-task/tasks/{task['id']}" in artifact
    assert str(decision.decided_at.year) in artifact  # type: ignore[union-attr]
    # One task and one mail to each person, however often the run ran.
    assert len(road.service.tasks(road.titles["approve"])) == 1
    assert len(road.inbox.about(road.titles["approve"])) == 2


async def test_suspend_reject_and_prefects_resume_form_does_not_decide(road: Road) -> None:
    run = road.runs["reject"]
    await wait_for_state(road, run.id, "Suspended")
    task = await the_task(road, "reject")
    # Prefect's Resume form says where to decide ...
    async with get_client() as client:
        current = await client.read_flow_run(run.id)
        assert current.state is not None
        keyset = current.state.state_details.run_input_keyset
        assert keyset is not None
        description = await client.read_flow_run_input(run.id, keyset["description"])
        assert "Resuming the run here does not decide it" in description
        assert f"/people-task/tasks/{task['id']}" in description
        # ... and resuming with it (nothing filled in) does not decide: the run waits again.
        await client.resume_flow_run(run.id, run_input={})
    await suspended_times(road, run.id, 2)
    assert road.service.tasks(road.titles["reject"])[0]["status"] == "pending"

    road.service.decide(task["id"], "reject", "not now")
    done = await wait_for_state(road, run.id, "Rejected", "Failed", "Crashed")
    assert done.state is not None and done.state.name == "Rejected", done.state
    decision = Decision.model_validate(await done.state.aresult())
    assert (decision.status, decision.approved, decision.comment) == ("rejected", False, "not now")
    assert len(road.service.tasks(road.titles["reject"])) == 1


async def test_suspend_due_at_the_deadline(road: Road) -> None:
    run = road.runs["due"]
    await wait_for_state(road, run.id, "Suspended")
    task = await the_task(road, "due")
    # The requester moves the deadline to two seconds from now, and nobody decides: the
    # service's deadline scheduler turns the task due and resumes the run.
    road.service.edit(task["id"], decisionBy=(datetime.now(UTC) + timedelta(seconds=2)).isoformat())
    done = await wait_for_state(road, run.id, "Due", "Failed", "Crashed", timeout=120)
    assert done.state is not None and done.state.name == "Due", done.state
    decision = Decision.model_validate(await done.state.aresult())
    assert (decision.status, decision.approved) == ("due", False)


async def test_pause_shows_paused_while_it_waits(road: Road) -> None:
    run = road.runs["pause"]
    paused = await wait_for_state(road, run.id, "Paused")
    assert paused.state is not None and "Waiting for lead@example.com" in (
        paused.state.message or ""
    )
    task = await the_task(road, "pause")
    assert (await read_run(run.id)).state.name == "Paused"  # type: ignore[union-attr]
    road.service.decide(task["id"], "approve")
    done = await wait_for_state(road, run.id, "Approved", "Failed", "Crashed")
    assert done.state is not None and done.state.name == "Approved", done.state
    states = await history(run.id)
    # Paused until the decision, then Running only to finish.
    assert states[states.index("Paused") :] == ["Paused", "Running", "Approved"]
    assert done.run_count == 1  # the pause did not count as another attempt


async def test_a_retry_from_the_ui_of_a_timed_out_suspension_waits_again(road: Road) -> None:
    run = road.runs["retry"]
    # timeout=2: Prefect fails the suspended run when nobody decided in time.
    failed = await wait_for_state(road, run.id, "Failed", timeout=120)
    assert failed.state is not None and "never resumed" in (failed.state.message or "")
    task = await the_task(road, "retry")
    async with get_client() as client:  # what the UI's Retry does
        await client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)
    # It waits again, suspended on the task it asked for first (which, with timeout=2,
    # Prefect fails again shortly after).
    await suspended_times(road, run.id, 2)
    assert [t["id"] for t in road.service.tasks(road.titles["retry"])] == [task["id"]]
    assert road.service.tasks(road.titles["retry"])[0]["status"] == "pending"
    assert not [line for line in await logs_of(run.id) if "ValidationError" in line]


async def test_a_refused_resume_target_fails_before_any_mail(road: Road) -> None:
    run = road.runs["refused"]
    failed = await wait_for_state(road, run.id, "Failed", "Suspended", timeout=120)
    assert failed.state is not None and failed.state.name == "Failed", failed.state
    assert "PEOPLETASKS_PREFECT_API_URL" in (failed.state.message or "")
    assert road.inbox.about(road.titles["refused"]) == []
    assert "Suspended" not in await history(run.id)


async def test_the_cron_schedule_makes_runs_and_a_run_creates_its_periods_tasks(
    road: Road,
) -> None:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name("create-recurring-tasks/monthly-reviews")

        async def scheduled() -> list[FlowRun]:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])
                )
            )

        # The scheduler made the cron's next runs (on SQLAlchemy 2.1 it failed every 10 s).
        runs = await eventually(scheduled, timeout=60, interval=0.5)
        assert all(r.auto_scheduled for r in runs)
        first = min(runs, key=lambda r: r.expected_start_time)  # type: ignore[arg-type, return-value]
        assert first.expected_start_time is not None
        period = first.expected_start_time.astimezone(UTC).strftime("%Y-%m")
        # Run it now, as a late start would: its tasks are for the period it was scheduled for.
        await client.set_flow_run_state(first.id, Scheduled(scheduled_time=datetime.now(UTC)))
    done = await wait_for_state(road, first.id, "Completed", "Failed", "Crashed", timeout=120)
    assert done.state is not None and done.state.name == "Completed", done.state
    title = f"Approve expenses for {period}"
    [task] = road.service.tasks(title)
    assert task["requestKey"] == (
        f"recurring:create-recurring-tasks/monthly-reviews:{period}:expenses"
    )
    assert await done.state.aresult() == [task["id"]]
