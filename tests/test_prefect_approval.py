"""request_approval end to end: a real Prefect server, the real service, real decisions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.runtime import flow_run

import peopletasks.prefect.approval as approval
from peopletasks import (
    ApprovalDue,
    Decision,
    PeopleTaskService,
    arequest_approval,
    arequest_approval_email,
    request_approval,
    request_approval_email,
)
from peopletasks.mail import MailDeliveryError, SmtpConfig
from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, cli, free_port, service_env


class Live:
    def __init__(self, service: ServiceProcess, token: str) -> None:
        self.service = service
        self.token = token
        self.block = PeopleTaskService(url=service.url, token=token)

    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.url}/people-task/tasks",
            headers={"Authorization": f"Bearer {self.token}"},
            params=params,
        )
        return list(response.json())

    def wait_for_task(self, title: str, timeout: float = 60) -> dict[str, Any]:
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while datetime.now(UTC) < deadline:
            found = [t for t in self.tasks(pattern=title) if t["title"] == title]
            if found:
                return found[0]
            threading.Event().wait(0.05)
        raise AssertionError(f"no task {title!r} within {timeout}s")

    def decide(self, task_id: str, action: str, comment: str | None = None) -> None:
        lead_token = cli(
            "token", "create", "--email", "lead@example.com", env=self.service.env
        ).splitlines()[-1]
        response = httpx.put(
            f"{self.service.url}/people-task/tasks/{task_id}/{action}",
            headers={"Authorization": f"Bearer {lead_token}"},
            json={"comment": comment} if comment else {},
        )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def live(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory: Path = tmp_path_factory.mktemp("prefect-approval")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'p.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        yield Live(service, token)


def in_thread(run: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)  # a failed test never holds the session
    thread.start()
    return thread, outcome


RUN_IDS: dict[str, Any] = {}


def flow_run_state(title: str) -> str:
    async def read() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(RUN_IDS[title])
            return str(run.state.type.value) if run.state else ""

    return asyncio.run(read()) if title in RUN_IDS else ""


def test_pause_approve_shows_paused_then_continues(live: Live) -> None:
    @flow
    async def ask(title: str) -> Decision:
        RUN_IDS[title] = flow_run.id
        return await arequest_approval(
            title, "lead@example.com", "ann@example.com", service=live.block
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("pause approve")))
    task = live.wait_for_task("pause approve")
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while flow_run_state("pause approve") != "PAUSED" and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    assert flow_run_state("pause approve") == "PAUSED"
    live.decide(task["id"], "approve", "ship it")
    thread.join(60)
    decision = outcome["result"]
    assert isinstance(decision, Decision)
    assert (decision.status, decision.approved, decision.comment) == ("approved", True, "ship it")
    assert decision.decided_by == "lead@example.com"
    assert decision.task_id == task["id"]
    assert "approverSecret" not in decision.task
    assert flow_run_state("pause approve") == "COMPLETED"


def test_sync_flow_reject(live: Live) -> None:
    @flow
    def ask(title: str) -> Decision:
        return request_approval(title, "lead@example.com", "ann@example.com", service=live.block)

    thread, outcome = in_thread(lambda: ask("sync reject"))
    task = live.wait_for_task("sync reject")
    live.decide(task["id"], "reject")
    thread.join(60)
    assert outcome["result"].status == "rejected"
    assert outcome["result"].approved is False


@pytest.mark.parametrize("wait", ["pause", "poll"])
def test_deadline_choices(live: Live, wait: str) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    @flow
    async def ask(title: str, on_due: str) -> Decision:
        return await arequest_approval(
            title,
            "lead@example.com",
            "ann@example.com",
            decision_by=soon,
            wait=wait,  # type: ignore[arg-type]
            on_due=on_due,  # type: ignore[arg-type]
            poll_interval=0.2,
            service=live.block,
        )

    assert asyncio.run(ask(f"due return {wait}", "return")).status == "due"
    rejected = asyncio.run(ask(f"due reject {wait}", "reject"))
    assert (rejected.status, rejected.approved) == ("rejected", False)
    with pytest.raises(ApprovalDue):
        asyncio.run(ask(f"due raise {wait}", "raise"))


def test_poll_mode_approve(live: Live) -> None:
    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title,
            "lead@example.com",
            "ann@example.com",
            wait="poll",
            poll_interval=0.2,
            service=live.block,
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("poll approve")))
    task = live.wait_for_task("poll approve")
    live.decide(task["id"], "approve")
    thread.join(60)
    assert outcome["result"].approved is True


def test_flow_run_retried_after_the_task_was_created_makes_one_task(live: Live) -> None:
    attempts: list[int] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        decision = await arequest_approval(
            title,
            "lead@example.com",
            "ann@example.com",
            wait="poll",
            poll_interval=0.2,
            service=live.block,
        )
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a crash after the task was created and decided")
        return decision

    thread, outcome = in_thread(lambda: asyncio.run(ask("retried run")))
    task = live.wait_for_task("retried run")
    live.decide(task["id"], "approve")
    thread.join(60)
    assert outcome["result"].approved is True
    assert len(attempts) == 2
    assert len([t for t in live.tasks(pattern="retried run")]) == 1


def test_smtp_down_send_is_retried_then_the_run_fails_naming_the_server(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real send task with its real retries, only without the waits between them.
    monkeypatch.setattr(
        approval,
        "send_approval_email",
        approval.send_approval_email.with_options(retry_delay_seconds=0),
    )
    port = free_port()  # nothing listens here: the SMTP server is down
    runs: list[Any] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        runs.append(flow_run.id)
        return await arequest_approval_email(
            title,
            "lead@example.com",
            "ann@example.com",
            service=live.block,
            mail=SmtpConfig(host="127.0.0.1", port=port, sender="approvals@example.com"),
            wait="poll",
        )

    with pytest.raises(MailDeliveryError) as failure:
        asyncio.run(ask("smtp down"))
    assert f"127.0.0.1:{port}" in str(failure.value)
    assert "not delivered" in str(failure.value)

    async def prefect_side() -> tuple[str, int, list[int]]:
        async with get_client() as client:
            run = await client.read_flow_run(runs[0])
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0]])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=50,
            )
        assert run.state is not None
        sends = [t.run_count for t in task_runs if t.name.startswith("send-approval-email")]
        return run.state.type.value, run.run_count, sends

    state, flow_attempts, send_attempts = asyncio.run(prefect_side())
    assert state == "FAILED"
    assert flow_attempts == 2  # the flow run was retried too
    assert sum(send_attempts) == 2 * 4  # each time: the send step and its 3 retries
    # One people task, however often the step and the run were retried.
    assert len(live.tasks(pattern="smtp down")) == 1


# --- one request, found again however often the run runs ------------------------------------


def test_a_rerun_with_a_new_deadline_and_text_updates_the_one_task(live: Live) -> None:
    """The deadline computed from now() and the text differ between runs of the body (here
    an in-process retry after a timeout): the run's one task follows them."""
    attempts: list[datetime] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        deadline = (datetime.now(UTC) + timedelta(days=3, seconds=len(attempts))).replace(
            microsecond=0
        )
        attempts.append(deadline)
        return await arequest_approval(
            title,
            "lead@example.com",
            "ann@example.com",
            f"attempt {len(attempts)}",
            deadline,
            wait="poll",
            poll_interval=0.1,
            timeout=1.0 if len(attempts) == 1 else 60.0,  # the first gives up: a retry
            service=live.block,
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("rerun updates")))
    task = live.wait_for_task("rerun updates")

    def updated() -> bool:
        [current] = live.tasks(pattern="rerun updates")
        return bool(current["description"] == "attempt 2")

    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while not updated() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    [current] = live.tasks(pattern="rerun updates")
    assert current["id"] == task["id"]
    assert datetime.fromisoformat(current["decisionBy"]) == attempts[1]
    live.decide(task["id"], "approve")
    thread.join(60)
    assert outcome["result"].approved is True
    assert len(attempts) == 2  # ApprovalTimeout is retried (Python's TimeoutError was not)


def test_each_call_in_a_loop_is_its_own_request(live: Live) -> None:
    @flow
    async def ask_twice(title: str) -> list[str]:
        decisions = []
        for _ in range(2):  # the same line, the same arguments: two approvals
            decision = await arequest_approval(
                title,
                "lead@example.com",
                "ann@example.com",
                wait="poll",
                poll_interval=0.1,
                service=live.block,
            )
            decisions.append(decision.task_id)
        return decisions

    thread, outcome = in_thread(lambda: asyncio.run(ask_twice("twice in a loop")))
    first = live.wait_for_task("twice in a loop")
    live.decide(first["id"], "approve")
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while len(live.tasks(pattern="twice in a loop")) < 2 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    [second] = [t for t in live.tasks(pattern="twice in a loop") if t["id"] != first["id"]]
    live.decide(second["id"], "reject")
    thread.join(60)
    assert outcome["result"] == [first["id"], second["id"]]


def test_a_pause_does_not_use_up_a_retry(live: Live) -> None:
    attempts: list[int] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        attempts.append(flow_run.run_count)
        decision = await arequest_approval(
            title, "lead@example.com", "ann@example.com", service=live.block
        )
        if len(attempts) == 1:
            raise RuntimeError("a failure after the wait")
        return decision

    thread, outcome = in_thread(lambda: asyncio.run(ask("pause then fail")))
    task = live.wait_for_task("pause then fail")
    live.decide(task["id"], "approve")
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"].approved is True
    assert len(attempts) == 2  # retried (the pause was not counted as an attempt)
    assert len(live.tasks(pattern="pause then fail")) == 1


def test_a_failed_runs_error_reads_back_as_itself(live: Live) -> None:
    """Prefect persists a failed run's exception; reading the run's state back (as a
    `run_deployment` caller does) raises that error, not a TypeError from unpickling."""
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()

    @flow(persist_result=True)
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title,
            "lead@example.com",
            "ann@example.com",
            decision_by=soon,
            on_due="raise",
            wait="poll",
            poll_interval=0.2,
            service=live.block,
        )

    state = asyncio.run(ask("raise due", return_state=True))  # type: ignore[call-overload]

    async def read_back() -> Any:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
        assert run.state is not None
        return await run.state.aresult()

    with pytest.raises(ApprovalDue) as raised:
        asyncio.run(read_back())
    assert raised.value.decision_by is not None


def test_wrong_options_are_refused_before_anything_is_created(live: Live) -> None:
    with pytest.raises(ValueError, match="wait must be one of pause, suspend, poll"):
        request_approval("x", "a@x.org", "b@x.org", wait="later", service=live.block)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_due"):
        request_approval("x", "a@x.org", "b@x.org", on_due="ignore", service=live.block)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'waiting'"):
        request_approval("x", "a@x.org", "b@x.org", waiting="poll")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="service=, not backend="):
        request_approval_email("x", "a@x.org", "b@x.org", backend="peoplelogic")

    @flow
    def no_deployment() -> Decision:
        return request_approval(
            "suspend here", "a@x.org", "b@x.org", wait="suspend", service=live.block
        )

    with pytest.raises(RuntimeError, match="wait='suspend' needs a deployment"):
        no_deployment()
    assert live.tasks(pattern="suspend here") == []
