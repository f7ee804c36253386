"""The ready-made flows and the demo, as a newcomer runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from peopletasks.flows import create_recurring_tasks
from peopletasks.prefect.blocks import PeopleTaskService
from tests.conftest import TEST_KEY
from tests.support.server import BIN, ServiceProcess, cli, service_env

MONTHLY = [
    {
        "name": "expenses",
        "title": "Approve expenses for {period}",
        "approver": "finance@example.com",
        "requester": "ops@example.com",
    },
    {
        "name": "access",
        "title": "Review access rights for {period}",
        "approver": "security@example.com",
        "requester": "ops@example.com",
    },
]


def test_recurring_tasks_twice_for_one_period_make_one_set(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "ops@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        monkeypatch.setenv("PEOPLETASKS_API_URL", service.url)
        monkeypatch.setenv("PEOPLETASKS_API_TOKEN", token)
        first = asyncio.run(create_recurring_tasks(MONTHLY, period="2026-12"))
        again = asyncio.run(create_recurring_tasks(MONTHLY, period="2026-12"))
        next_month = asyncio.run(create_recurring_tasks(MONTHLY, period="2027-01"))
        listed = httpx.get(
            f"{service.url}/people-task/tasks",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    assert first == again
    assert len(set(first) | set(next_month)) == 4
    assert sorted(t["title"] for t in listed) == [
        "Approve expenses for 2026-12",
        "Approve expenses for 2027-01",
        "Review access rights for 2026-12",
        "Review access rights for 2027-01",
    ]
    assert PeopleTaskService(url=service.url, token=token).url == service.url


def test_demo_auto_approve_from_a_clean_directory_exits_0(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PEOPLETASKS_", "PREFECT_API_URL", "PREFECT_HOME"))
    }
    done = subprocess.run(
        [str(BIN), "demo", "--auto-approve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "decision: approved by lead@example.com" in done.stdout
    assert list(tmp_path.iterdir()) == []  # it leaves nothing behind
