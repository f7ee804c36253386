"""Our Blocks reach Prefect through the `prefect.collections` entry point: Prefect's
loader imports them, a Prefect server lists their types, and a block saved once loads
in a process that never imported peopletasks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

from prefect import get_client
from prefect.blocks.core import Block
from prefect.plugins import load_prefect_collections
from pydantic import SecretStr

import peopletasks.prefect.blocks as blocks
from peopletasks import PeopleTaskService
from peopletasks.prefect.blocks import PeopleTaskMail


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
