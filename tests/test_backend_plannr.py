"""Approvals in Plannr: a real Prefect flow, our client, a stand-in Plannr over real HTTP
(tests/support/plannr.py, written from the API reference)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from peopletasks import (
    BackendError,
    Decision,
    PlannrBackend,
    PlannrTasks,
    arequest_approval,
    request_approval,
)
from tests.support.plannr import PlannrStandIn
from tests.support.standin import flow_run_state, in_thread, until


@pytest.fixture(scope="module")
def plannr() -> Iterator[PlannrStandIn]:
    standin = PlannrStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


def backend_for(standin: PlannrStandIn, **overrides: Any) -> PlannrBackend:
    options: dict[str, Any] = {
        "url": standin.url,
        "token": standin.token,
        "account_uuid": standin.account_uuid,
        "taskable_type": "plan",
        "taskable_uuid": standin.plan["uuid"],
        "request_key_field": "peopletasks_request_key",
        **overrides,
    }
    return PlannrBackend(**options)


def lead(standin: PlannrStandIn) -> str:
    return str(standin.people["lena"]["uuid"])


def one_task(standin: PlannrStandIn, name: str) -> dict[str, Any]:
    return dict(until(lambda: standin.named(name))[0])


RUNS: dict[str, Any] = {}


@pytest.mark.usefixtures("prefect_api")
def test_approval_flow_continues_with_the_completion_and_its_author(
    plannr: PlannrStandIn,
) -> None:
    @flow
    async def review(title: str) -> Decision:
        RUNS[title] = flow_run.id
        return await arequest_approval(
            title,
            lead(plannr),
            "advice-bot",
            "Check the client's details before the annual review",
            decision_by="2031-01-01T09:30:00+01:00",
            backend=backend_for(plannr, priority="high"),
            wait="poll",
            poll_interval=0.1,
        )

    thread, outcome = in_thread(lambda: asyncio.run(review("Check details")))
    task = one_task(plannr, "Check details")
    # What a person sees in Plannr: on the plan, assigned to them, due then, high priority.
    assert [a["uuid"] for a in task["assigned_to"]] == [lead(plannr)]
    assert task["taskable_type"] == "plan"
    assert task["taskable"]["uuid"] == plannr.plan["uuid"]
    assert task["due_at"] == "2031-01-01 08:30:00"
    assert task["priority"] == "high"
    assert task["status"]["name"] == "Incomplete"
    [field] = task["custom_fields"]
    assert field["reference"] == "peopletasks_request_key"
    assert field["value"].startswith(f"{RUNS['Check details']}:")

    plannr.decide(task["uuid"], "Complete", by="lena")
    thread.join(60)
    decision = outcome["result"]
    assert (decision.status, decision.approved) == ("approved", True)
    assert decision.decided_by == lead(plannr)
    assert decision.decided_at is not None
    assert decision.task_id == task["uuid"]
    assert decision.task["completed_by"]["email"] == "lena@example.com"


@pytest.mark.usefixtures("prefect_api")
def test_sync_flow_shows_paused_while_polling_and_gets_the_rejection(
    plannr: PlannrStandIn,
) -> None:
    @flow
    def transfer(title: str) -> Decision:
        RUNS[title] = flow_run.id
        return request_approval(
            title, lead(plannr), "ann", backend=backend_for(plannr), poll_interval=0.1
        )

    thread, outcome = in_thread(lambda: transfer("Pension transfer"))
    task = one_task(plannr, "Pension transfer")
    until(
        lambda: "Pension transfer" in RUNS and flow_run_state(RUNS["Pension transfer"]) == "PAUSED"
    )
    plannr.decide(task["uuid"], "Rejected", by="lena")
    thread.join(60)
    decision = outcome["result"]
    assert (decision.status, decision.approved) == ("rejected", False)
    assert decision.decided_by == lead(plannr)
    assert flow_run_state(RUNS["Pension transfer"]) == "COMPLETED"


@pytest.mark.usefixtures("prefect_api")
def test_a_wrong_token_fails_the_run_with_the_call_and_401(plannr: PlannrStandIn) -> None:
    @flow
    async def ask() -> Decision:
        return await arequest_approval(
            "Wrong token", lead(plannr), "ann", backend=backend_for(plannr, token="nope")
        )

    attempts = len(plannr.create_attempts)
    with pytest.raises(BackendError) as caught:
        asyncio.run(ask())
    assert caught.value.status_code == 401
    assert "create Plannr task (POST /api/v1/task)" in str(caught.value)
    assert "HTTP 401" in str(caught.value)
    assert "Unauthenticated." in str(caught.value)
    assert plannr.named("Wrong token") == []
    assert len(plannr.create_attempts) == attempts + 1


@pytest.mark.usefixtures("prefect_api")
def test_an_unknown_plan_fails_the_run_with_404(plannr: PlannrStandIn) -> None:
    @flow
    async def ask() -> Decision:
        backend = backend_for(plannr, taskable_uuid="7c33cf98-b1d4-454b-9fa2-29731af08076")
        return await arequest_approval("No plan", lead(plannr), "ann", backend=backend)

    with pytest.raises(BackendError) as caught:
        asyncio.run(ask())
    assert caught.value.status_code == 404
    assert "No query results for model [Plan]" in str(caught.value)
    assert plannr.named("No plan") == []


@pytest.mark.usefixtures("prefect_api")
def test_429_then_success_makes_one_task(plannr: PlannrStandIn) -> None:
    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title, lead(plannr), "ann", backend=backend_for(plannr), wait="poll", poll_interval=0.1
        )

    attempts = len(plannr.create_attempts)
    plannr.fail_next_create(429, retry_after="1")
    thread, outcome = in_thread(lambda: asyncio.run(ask("Rate limited")))
    task = one_task(plannr, "Rate limited")
    plannr.decide(task["uuid"], "Complete", by="adam")
    thread.join(60)
    assert outcome["result"].approved is True
    assert outcome["result"].decided_by == plannr.people["adam"]["uuid"]
    assert len(plannr.named("Rate limited")) == 1
    first, second = plannr.create_attempts[attempts : attempts + 2]
    assert second - first >= 0.9  # Retry-After: 1 was honoured


@pytest.mark.usefixtures("prefect_api")
def test_a_retried_flow_run_finds_its_task_instead_of_creating_another(
    plannr: PlannrStandIn,
) -> None:
    runs: list[int] = []
    block = PlannrTasks(
        url=plannr.url,
        token=plannr.token,
        account_uuid=plannr.account_uuid,
        approved=["Complete"],
    )

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        decision = await arequest_approval(
            title, lead(plannr), "ann", backend=block, wait="poll", poll_interval=0.1
        )
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("a crash after the task was created and decided")
        return decision

    thread, outcome = in_thread(lambda: asyncio.run(ask("Retried run")))
    task = one_task(plannr, "Retried run")
    plannr.decide(task["uuid"], "Complete", by="lena")
    thread.join(60)
    assert outcome["result"].approved is True
    assert len(runs) == 2
    assert len(plannr.named("Retried run")) == 1


# -- the client alone, over real HTTP ---------------------------------------------------


async def test_the_account_header_is_required(plannr: PlannrStandIn) -> None:
    other = "fb3ad368-3b69-4207-9d89-4f6b845ff315"
    async with backend_for(plannr, account_uuid=other) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.create_task(title="Other account", approver="", requester="ann")
    assert caught.value.status_code == 403
    assert "This action is unauthorized." in str(caught.value)


async def test_validation_errors_name_the_field(plannr: PlannrStandIn) -> None:
    async with backend_for(plannr) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.create_task(
                title="Unknown adviser",
                approver="06f3b45f-0000-0000-0000-d139cb04704b",
                requester="ann",
            )
    assert caught.value.status_code == 422
    assert "assigned_to_uuids.0: The selected assigned to uuid is invalid." in str(caught.value)


async def test_update_changes_the_given_fields(plannr: PlannrStandIn) -> None:
    async with backend_for(plannr) as backend:
        created = await backend.create_task(title="Annual review", approver="", requester="ann")
        updated = await backend.update_task(
            created["uuid"],
            title="Annual review 2031",
            decision_by="2031-05-02T17:00:00Z",
            extra={"priority": "highest"},
        )
        again = await backend.get_task(created["uuid"])
    assert updated["name"] == again["name"] == "Annual review 2031"
    assert again["due_at"] == "2031-05-02 17:00:00"
    assert again["priority"] == "highest"
    assert again["description"] == ""


async def test_add_note_appends_a_dated_paragraph(plannr: PlannrStandIn) -> None:
    async with backend_for(plannr) as backend:
        created = await backend.create_task(
            title="Fact find", approver="", requester="ann", description="Gather documents."
        )
        await backend.add_note(created["uuid"], "Client prefers e-mail")
    description = plannr.tasks[created["uuid"]]["description"]
    first, note = description.split("\n\n")
    assert first == "Gather documents."
    assert note.startswith("Note (") and note.endswith("UTC): Client prefers e-mail")


async def test_the_status_mapping(plannr: PlannrStandIn) -> None:
    complete = plannr.statuses["Complete"]["uuid"]
    async with backend_for(plannr, approved=[complete], rejected=["rejected"]) as backend:
        task = await backend.create_task(title="Mapping", approver="", requester="ann")
        assert (await backend.read_outcome(task["uuid"])).status == "pending"
        plannr.decide(task["uuid"], "Rejected", by="lena")
        assert (await backend.read_outcome(task["uuid"])).status == "rejected"
        plannr.decide(task["uuid"], "Complete", by="lena")
        assert (await backend.read_outcome(task["uuid"])).status == "approved"


async def test_from_the_environment(plannr: PlannrStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from peopletasks.prefect.connection import connect

    monkeypatch.setenv("PEOPLETASKS_PLANNR_URL", plannr.url)
    monkeypatch.setenv("PEOPLETASKS_PLANNR_TOKEN", plannr.token)
    monkeypatch.setenv("PEOPLETASKS_PLANNR_ACCOUNT_UUID", plannr.account_uuid)
    monkeypatch.setenv("PEOPLETASKS_PLANNR_REJECTED", "Rejected, Declined")
    async with connect(backend="plannr") as backend:
        created = await backend.create_task(title="From env", approver="", requester="ann")
        plannr.decide(created["uuid"], "Rejected", by="adam")
        outcome = await backend.read_outcome(created["uuid"])
    assert (outcome.status, outcome.decided_by) == ("rejected", plannr.people["adam"]["uuid"])
