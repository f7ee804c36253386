"""Our own service as a `TaskBackend`: create, update, notes, decision, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peopletasks.backends.service import PeopleTaskClient
from peopletasks.errors import BackendError
from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, cli, service_env


@dataclass
class Running:
    url: str
    flows: str  #: the token of the user the flows run as
    lead: str  #: the approver's token


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory: Path = tmp_path_factory.mktemp("backend-service")
    env = service_env(f"sqlite+aiosqlite:///{directory / 's.db'}", TEST_KEY)
    flows = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    lead = cli("token", "create", "--email", "lead@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        yield Running(service.url, flows, lead)


async def test_create_update_note_and_decide(running: Running) -> None:
    async with PeopleTaskClient(running.url, running.flows) as client:
        created = await client.create_task(
            title="Budget", approver="lead@example.com", requester="ann@example.com"
        )
        assert client.outcome(created).status == "pending"
        updated = await client.update_task(created["id"], title="Budget 2027")
        assert updated["title"] == "Budget 2027"

        note = await client.add_note(created["id"], "Numbers attached.")
        assert (note["text"], note["createdBy"]) == ("Numbers attached.", "flows@example.com")
        assert [n["text"] for n in await client.notes(created["id"])] == ["Numbers attached."]
        assert (await client.get_task(created["id"]))["notesCount"] == 1

    async with PeopleTaskClient(running.url, running.lead) as lead:
        await lead.decide(created["id"], "approved", comment="ok")
    async with PeopleTaskClient(running.url, running.flows) as client:
        outcome = client.outcome(await client.get_task(created["id"]))
    assert (outcome.status, outcome.decided_by, outcome.comment) == (
        "approved",
        "lead@example.com",
        "ok",
    )
    assert "approverSecret" not in outcome.task


async def test_a_note_on_an_unknown_task_names_the_call(running: Running) -> None:
    async with PeopleTaskClient(running.url, running.flows) as client:
        with pytest.raises(BackendError) as caught:
            await client.add_note("0" * 24, "hello")
    assert caught.value.status_code == 404
    assert "add note" in str(caught.value)
