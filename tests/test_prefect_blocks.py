"""Our Blocks reach Prefect through the `prefect.collections` entry point: Prefect's
loader imports them, a Prefect server lists their types, and a block saved once loads
in a process that never imported peopletasks. They meet Prefect's block standards, and
each is its configuration's one declaration made a Block."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from prefect import get_client
from prefect.blocks.core import Block
from prefect.plugins import load_prefect_collections
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import BaseModel, SecretStr

import peopletasks.prefect.blocks as blocks
from peopletasks import PeopleTaskClient, PeopleTaskService
from peopletasks.backends.peoplelogic import PeoplelogicBackend
from peopletasks.backends.plannr import PlannrBackend
from peopletasks.prefect.blocks import (
    PeoplelogicTasks,
    PeopleTaskMail,
    PlannrTasks,
    smtp_config_from,
)
from peopletasks.prefect.connection import capabilities_of
from peopletasks.settings import (
    PeoplelogicConfig,
    PlannrConfig,
    ServiceConnection,
    SmtpConfig,
    environment_names,
)


def test_prefects_loader_imports_our_blocks() -> None:
    collections = load_prefect_collections(reload=True)
    assert collections["peopletasks"] is blocks
    assert Block.get_block_class_from_key("people-task-service") is PeopleTaskService
    assert Block.get_block_class_from_key("people-task-mail") is PeopleTaskMail


def test_the_prefect_server_lists_our_block_types(prefect_api: str) -> None:
    """What `prefect block type ls` shows: the server registered them when it started."""

    async def listed() -> dict[str, str]:
        async with get_client() as client:
            types = await client.read_block_types()
        return {t.slug: t.name for t in types}

    types = asyncio.run(listed())
    assert types["people-task-service"] == "People Task Service"
    assert types["people-task-mail"] == "People Task Mail"


def test_a_saved_block_loads_where_peopletasks_was_never_imported(prefect_api: str) -> None:
    name = f"tasks-{uuid.uuid4().hex[:8]}"
    PeopleTaskService(url="https://tasks.example.com", token=SecretStr("pt_secret")).save(name)
    code = (
        "import sys\n"
        "from prefect.blocks.core import Block\n"
        "assert 'peopletasks' not in sys.modules\n"
        f"block = Block.load('people-task-service/{name}')\n"
        "print(type(block).__module__, type(block).__name__, block.url)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "peopletasks.prefect.blocks",
        "PeopleTaskService",
        "https://tasks.example.com",
    ]


# --- Prefect's own standards for blocks (as prefect-slack runs them) ------------------------


class TestPeopleTaskServiceStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return PeopleTaskService


class TestPeopleTaskMailStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return PeopleTaskMail


class TestPeoplelogicTasksStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return PeoplelogicTasks


class TestPlannrTasksStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return PlannrTasks


# --- one declaration: the block, the environment and the constructor agree ------------------


@pytest.mark.parametrize(
    ("block", "config", "prefix"),
    [
        (PeopleTaskService, ServiceConnection, "PEOPLETASKS_API_"),
        (PeopleTaskMail, SmtpConfig, "PEOPLETASKS_SMTP_"),
        (PeoplelogicTasks, PeoplelogicConfig, "PEOPLETASKS_PEOPLELOGIC_"),
        (PlannrTasks, PlannrConfig, "PEOPLETASKS_PLANNR_"),
    ],
)
def test_a_block_has_exactly_its_configurations_fields(
    block: type[Block], config: type[BaseModel], prefix: str
) -> None:
    assert issubclass(block, config)
    assert list(block.model_fields) == list(config.model_fields)
    names = environment_names(config, prefix)
    assert all(name.startswith(prefix) for name in names.values())


def test_the_environment_and_the_block_make_the_same_backend() -> None:
    env = {
        "PEOPLETASKS_PLANNR_TOKEN": "tok",
        "PEOPLETASKS_PLANNR_ACCOUNT_UUID": "acc",
        "PEOPLETASKS_PLANNR_REJECTED": "Rejected, Declined",
        "PEOPLETASKS_PLANNR_GROUP_UUIDS": "g1,g2",
        "PEOPLETASKS_PLANNR_PRIORITY": "high",
        "PEOPLETASKS_PLANNR_OVERDUE_ENDS_WAIT": "true",
    }
    from_env = PlannrBackend.from_env(env)
    from_block = PlannrTasks(
        token="tok",
        account_uuid="acc",
        rejected=["rejected", "DECLINED"],
        group_uuids=["g1", "g2"],
        priority="high",
        overdue_ends_wait=True,
    ).get_backend()
    direct = PlannrBackend(
        token="tok",
        account_uuid="acc",
        rejected={"Rejected", "Declined"},
        group_uuids=["g1", "g2"],
        priority="high",
        overdue_ends_wait=True,
    )
    assert isinstance(from_block, PlannrBackend)
    assert from_env.model_dump() == from_block.model_dump() == direct.model_dump()
    assert from_env.rejected == frozenset({"rejected", "declined"})


def test_a_wrong_variable_is_named() -> None:
    with pytest.raises(ValueError, match=r"PEOPLETASKS_PLANNR_PRIORITY \(priority\)"):
        PlannrBackend.from_env({**_PLANNR, "PEOPLETASKS_PLANNR_PRIORITY": "urgent"})
    with pytest.raises(ValueError, match=r"PEOPLETASKS_PLANNR_TOKEN \(token\): Field required"):
        PlannrBackend.from_env({"PEOPLETASKS_PLANNR_ACCOUNT_UUID": "acc"})
    with pytest.raises(ValueError, match="taskable_type and taskable_uuid go together"):
        PlannrBackend.from_env({**_PLANNR, "PEOPLETASKS_PLANNR_TASKABLE_TYPE": "plan"})
    with pytest.raises(ValueError, match="approved and rejected share"):
        PeoplelogicTasks(token="t", entity="e", approved=["done"], rejected=["Done"])


_PLANNR = {"PEOPLETASKS_PLANNR_TOKEN": "tok", "PEOPLETASKS_PLANNR_ACCOUNT_UUID": "acc"}


def test_what_a_system_can_do_is_declared_on_its_backend() -> None:
    assert PeopleTaskService.capabilities() is PeopleTaskClient.capabilities
    assert PeoplelogicTasks.capabilities() is PeoplelogicBackend.capabilities
    assert capabilities_of(backend="plannr-tasks/anything") is PlannrBackend.capabilities
    assert capabilities_of(backend="peoplelogic") is PeoplelogicBackend.capabilities
    assert capabilities_of() is PeopleTaskClient.capabilities
    assert capabilities_of(service="people-task-service/x").resumes_flow_runs
    assert not capabilities_of(backend=PlannrTasks(token="t", account_uuid="a")).finds_by_key


def test_the_mail_block_sends_as_its_configuration_says() -> None:
    block = PeopleTaskMail(host="smtp.example.com", password=SecretStr("pw"), sender="a@x.org")
    config = smtp_config_from(block)
    assert isinstance(config, SmtpConfig) and not isinstance(config, PeopleTaskMail)
    assert (config.tls, config.port, config.sender) == ("starttls", 587, "a@x.org")
    assert smtp_config_from(block, sender="b@x.org").sender == "b@x.org"
