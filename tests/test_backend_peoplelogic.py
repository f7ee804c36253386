"""Approvals in Peoplelogic: a real Prefect flow, our client, a stand-in Peoplelogic over
real HTTP (tests/support/peoplelogic.py, written from the API reference)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from peopletasks import (
    BackendError,
    Decision,
    PeoplelogicBackend,
    PeoplelogicTasks,
    arequest_approval,
    request_approval,
)
from tests.support.peoplelogic import AUTOMATION, PeoplelogicStandIn
from tests.support.standin import flow_run_state, in_thread, until

LEAD = str(uuid.uuid4())  # the approver's Peoplelogic id


@pytest.fixture(scope="module")
def peoplelogic() -> Iterator[PeoplelogicStandIn]:
    standin = PeoplelogicStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


def backend_for(standin: PeoplelogicStandIn, **overrides: Any) -> PeoplelogicBackend:
    options: dict[str, Any] = {
        "url": standin.url,
        "token": standin.token,
        "entity": standin.entity,
        "approved": {"Done"},
        "rejected": {"cancelled"},
        **overrides,
    }
    return PeoplelogicBackend(**options)


def one_task(standin: PeoplelogicStandIn, name: str) -> dict[str, Any]:
    return dict(until(lambda: standin.named(name))[0])


RUNS: dict[str, Any] = {}


@pytest.mark.usefixtures("prefect_api")
def test_approval_flow_continues_with_the_decision_and_its_author(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    @flow
    async def budget(title: str) -> Decision:
        RUNS[title] = flow_run.id
        return await arequest_approval(
            title,
            LEAD,
            "finance-bot",
            "Q3 budget of the data team",
            decision_by="2031-07-17T12:00:00Z",
            backend=backend_for(peoplelogic),
            wait="poll",
            poll_interval=0.1,
        )

    thread, outcome = in_thread(lambda: asyncio.run(budget("Budget Q3")))
    task = one_task(peoplelogic, "Budget Q3")
    # What a person sees in Peoplelogic: assigned to them, due that day, traceable to the run.
    assert task["assignees"] == [{"entityId": LEAD, "entityType": "user"}]
    assert task["dueDate"] == "2031-07-17"
    assert task["description"] == "Q3 budget of the data team"
    [mapping] = task["mappings"]
    assert mapping["namespace"] == "peopletasks"
    assert mapping["mappedId"].startswith(f"{RUNS['Budget Q3']}:")
    assert mapping["mappingData"]["requester"] == "finance-bot"

    peoplelogic.decide(task["id"], "done", by=LEAD, note="Go ahead")
    thread.join(60)
    decision = outcome["result"]
    assert (decision.status, decision.approved) == ("approved", True)
    assert decision.decided_by == LEAD
    assert decision.comment == "Go ahead"
    assert decision.decided_at is not None
    assert decision.task_id == task["id"]
    assert decision.task["status"]["current"] == "done"


@pytest.mark.usefixtures("prefect_api")
def test_sync_flow_shows_paused_while_polling_and_gets_the_rejection(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    @flow
    def trip(title: str) -> Decision:
        RUNS[title] = flow_run.id
        # wait="pause" (the default): Peoplelogic has no webhooks, so this polls while
        # the run shows Paused in Prefect.
        return request_approval(
            title, LEAD, "ann", backend=backend_for(peoplelogic), poll_interval=0.1
        )

    thread, outcome = in_thread(lambda: trip("Trip to Lisbon"))
    task = one_task(peoplelogic, "Trip to Lisbon")
    until(lambda: "Trip to Lisbon" in RUNS and flow_run_state(RUNS["Trip to Lisbon"]) == "PAUSED")
    peoplelogic.decide(task["id"], "Cancelled", by=LEAD)
    thread.join(60)
    decision = outcome["result"]
    assert (decision.status, decision.approved, decision.decided_by) == ("rejected", False, LEAD)
    assert decision.comment is None
    assert flow_run_state(RUNS["Trip to Lisbon"]) == "COMPLETED"


@pytest.mark.usefixtures("prefect_api")
def test_a_wrong_token_fails_the_run_with_the_call_and_401(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    @flow
    async def ask() -> Decision:
        return await arequest_approval(
            "Wrong token",
            LEAD,
            "ann",
            backend=backend_for(peoplelogic, token="eyJ.not-ours.sig"),
            wait="poll",
        )

    attempts = len(peoplelogic.create_attempts)
    with pytest.raises(BackendError) as caught:
        asyncio.run(ask())
    message = str(caught.value)
    assert caught.value.status_code == 401
    assert f"create Peoplelogic task (POST /api/v1/entity/{peoplelogic.entity}/task)" in message
    assert "HTTP 401" in message
    assert "missing or invalid JWT" in message
    assert peoplelogic.named("Wrong token") == []
    assert len(peoplelogic.create_attempts) == attempts + 1  # a 401 is not tried again


@pytest.mark.usefixtures("prefect_api")
def test_an_unknown_entity_fails_the_run_with_404(peoplelogic: PeoplelogicStandIn) -> None:
    @flow
    async def ask() -> Decision:
        return await arequest_approval(
            "Nowhere", LEAD, "ann", backend=backend_for(peoplelogic, entity="no-such-okr")
        )

    with pytest.raises(BackendError) as caught:
        asyncio.run(ask())
    assert caught.value.status_code == 404
    assert "POST /api/v1/entity/no-such-okr/task" in str(caught.value)
    assert "no Entity with that ID" in str(caught.value)


@pytest.mark.usefixtures("prefect_api")
def test_429_then_success_makes_one_task(peoplelogic: PeoplelogicStandIn) -> None:
    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title, LEAD, "ann", backend=backend_for(peoplelogic), wait="poll", poll_interval=0.1
        )

    attempts = len(peoplelogic.create_attempts)
    peoplelogic.fail_next_create(429, retry_after="1")
    thread, outcome = in_thread(lambda: asyncio.run(ask("Rate limited")))
    task = one_task(peoplelogic, "Rate limited")
    peoplelogic.decide(task["id"], "done", by=LEAD)
    thread.join(60)
    assert outcome["result"].approved is True
    assert len(peoplelogic.named("Rate limited")) == 1
    first, second = peoplelogic.create_attempts[attempts : attempts + 2]
    assert second - first >= 0.9  # Retry-After: 1 was honoured


@pytest.mark.usefixtures("prefect_api")
def test_a_retried_flow_run_finds_its_task_instead_of_creating_another(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    runs: list[int] = []

    @flow(retries=1, retry_delay_seconds=0)
    async def ask(title: str) -> Decision:
        decision = await arequest_approval(
            title, LEAD, "ann", backend=backend_for(peoplelogic), wait="poll", poll_interval=0.1
        )
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("a crash after the task was created and decided")
        return decision

    thread, outcome = in_thread(lambda: asyncio.run(ask("Retried run")))
    task = one_task(peoplelogic, "Retried run")
    peoplelogic.decide(task["id"], "done", by=LEAD)
    thread.join(60)
    assert outcome["result"].approved is True
    assert len(runs) == 2
    assert len(peoplelogic.named("Retried run")) == 1


@pytest.mark.usefixtures("prefect_api")
def test_the_block_and_suspend_refused_before_anything_is_created(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    block = PeoplelogicTasks(
        url=peoplelogic.url, token=peoplelogic.token, entity=peoplelogic.entity
    )

    @flow
    async def ask() -> Decision:
        return await arequest_approval("Suspended", LEAD, "ann", backend=block, wait="suspend")

    with pytest.raises(ValueError, match="wait='suspend' needs") as caught:
        asyncio.run(ask())
    assert "Peoplelogic sends no webhooks" in str(caught.value)
    assert peoplelogic.named("Suspended") == []


# -- the client alone, over real HTTP ---------------------------------------------------


async def test_update_changes_the_given_fields_and_keeps_the_name(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    async with backend_for(peoplelogic) as backend:
        created = await backend.create_task(title="Offsite", approver=LEAD, requester="ann")
        updated = await backend.update_task(
            created["id"], description="Two days in Porto", decision_by="2031-03-01T09:00:00+02:00"
        )
        assert (updated["name"], updated["description"]) == ("Offsite", "Two days in Porto")
        assert updated["dueDate"] == "2031-03-01"
        renamed = await backend.update_task(created["id"], title="Offsite 2031")
        assert (await backend.get_task(created["id"]))["name"] == renamed["name"] == "Offsite 2031"


async def test_add_note_appends_to_the_notes(peoplelogic: PeoplelogicStandIn) -> None:
    async with backend_for(peoplelogic) as backend:
        created = await backend.create_task(title="Laptop", approver=LEAD, requester="ann")
        await backend.add_note(created["id"], "Budget code 4711")
        after = await backend.add_note(created["id"], "Needed by Monday")
    assert [n["note"] for n in after["notes"]] == ["Budget code 4711", "Needed by Monday"]
    assert {n["author"] for n in after["notes"]} == {AUTOMATION}
    assert [n["note"] for n in peoplelogic.tasks[created["id"]]["notes"]] == [
        "Budget code 4711",
        "Needed by Monday",
    ]


async def test_errors_name_the_call_and_carry_the_body(peoplelogic: PeoplelogicStandIn) -> None:
    async with backend_for(peoplelogic) as backend:
        with pytest.raises(BackendError) as missing:
            await backend.get_task("no-such-task")
        assert missing.value.status_code == 404
        assert "read Peoplelogic task (GET /api/v1/task/no-such-task)" in str(missing.value)
        with pytest.raises(BackendError) as bad:
            await backend.create_task(title=" ", approver=LEAD, requester="ann")
        assert bad.value.status_code == 400
        assert "name is required" in str(bad.value)
    async with backend_for(peoplelogic, token=peoplelogic.read_only_token) as reader:
        with pytest.raises(BackendError) as forbidden:
            await reader.create_task(title="Not allowed", approver=LEAD, requester="ann")
    assert forbidden.value.status_code == 403
    assert "insufficient permissions" in str(forbidden.value)


async def test_a_failed_create_that_may_have_happened_is_not_repeated(
    peoplelogic: PeoplelogicStandIn,
) -> None:
    peoplelogic.fail_next_create(500, retry_after=None)
    async with backend_for(peoplelogic) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.create_task(title="Half done", approver=LEAD, requester="ann")
    assert caught.value.status_code == 500
    assert caught.value.outcome_unknown is True
    assert "not repeated" in str(caught.value)
    assert len(peoplelogic.named("Half done")) == 1  # done once, not twice


async def test_the_status_mapping_and_an_overdue_task(peoplelogic: PeoplelogicStandIn) -> None:
    async with backend_for(
        peoplelogic, approved="approved, Done", overdue_ends_wait=True
    ) as backend:
        created = await backend.create_task(
            title="Old", approver=LEAD, requester="ann", decision_by="2020-01-01"
        )
        assert (await backend.read_outcome(created["id"])).status == "due"
        peoplelogic.decide(created["id"], "APPROVED", by=LEAD)
        outcome = await backend.read_outcome(created["id"])
    assert (outcome.status, outcome.decided_by) == ("approved", LEAD)
    async with backend_for(peoplelogic) as patient:
        other = await patient.create_task(
            title="Old too", approver=LEAD, requester="ann", decision_by="2020-01-01"
        )
        assert (await patient.read_outcome(other["id"])).status == "pending"


async def test_from_the_environment(
    peoplelogic: PeoplelogicStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peopletasks.prefect.connection import connect

    monkeypatch.setenv("PEOPLETASKS_PEOPLELOGIC_URL", peoplelogic.url)
    monkeypatch.setenv("PEOPLETASKS_PEOPLELOGIC_TOKEN", peoplelogic.token)
    monkeypatch.setenv("PEOPLETASKS_PEOPLELOGIC_ENTITY", peoplelogic.entity)
    monkeypatch.setenv("PEOPLETASKS_PEOPLELOGIC_APPROVED", "approved, ok")
    async with connect(backend="peoplelogic") as backend:
        created = await backend.create_task(title="From env", approver=LEAD, requester="ann")
        peoplelogic.decide(created["id"], "OK", by=LEAD)
        assert (await backend.read_outcome(created["id"])).status == "approved"
    monkeypatch.delenv("PEOPLETASKS_PEOPLELOGIC_ENTITY")
    with pytest.raises(ValueError, match="entity"):
        async with connect(backend="peoplelogic"):
            pass


@pytest.mark.usefixtures("prefect_api")
async def test_a_saved_block_by_name(peoplelogic: PeoplelogicStandIn) -> None:
    from peopletasks.prefect.connection import connect

    block = PeoplelogicTasks(
        url=peoplelogic.url, token=peoplelogic.token, entity=peoplelogic.entity
    )
    await block.save("backend-test", overwrite=True)
    async with connect(backend="peoplelogic-tasks/backend-test") as backend:
        created = await backend.create_task(title="From a block", approver=LEAD, requester="ann")
    assert peoplelogic.named("From a block")[0]["id"] == created["id"]


@pytest.mark.usefixtures("prefect_api")
def test_an_overdue_task_ends_the_wait_only_when_asked(peoplelogic: PeoplelogicStandIn) -> None:
    from peopletasks import ApprovalDue

    @flow
    async def ask(title: str, on_due: str) -> Decision:
        return await arequest_approval(
            title,
            LEAD,
            "ann",
            decision_by="2020-01-01",
            backend=backend_for(peoplelogic, overdue_ends_wait=True),
            on_due=on_due,  # type: ignore[arg-type]
            wait="poll",
            poll_interval=0.1,
        )

    rejected = asyncio.run(ask("Late reject", "reject"))
    assert (rejected.status, rejected.approved) == ("rejected", False)
    with pytest.raises(ApprovalDue, match=r"2020-01-02T00:00:00Z"):
        asyncio.run(ask("Late raise", "raise"))
