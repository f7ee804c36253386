"""The ready-made flows and the demo, as a newcomer runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from peopletasks import RequestKeyConflict
from peopletasks.flows import create_recurring_tasks
from peopletasks.prefect.blocks import PeopleTaskService
from peopletasks.prefect.recurring import RunPeriod, _schedule_timezone
from tests.conftest import TEST_KEY
from tests.support.server import BIN, ServiceProcess, cli, service_env

ROOT = Path(__file__).resolve().parents[1]
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
        # The period's task asked for with other terms: an error, not a silent reuse.
        changed = [{**MONTHLY[0], "approver": "cfo@example.com"}]
        with pytest.raises(RequestKeyConflict, match=r"'finance@example\.com' there"):
            asyncio.run(create_recurring_tasks(changed, period="2026-12"))
        listed = httpx.get(
            f"{service.url}/people-task/tasks",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    assert first == again
    # Keys are scoped to the flow (and, deployed, its deployment).
    assert {t["requestKey"] for t in listed if t["title"].endswith("2026-12")} == {
        "recurring:create-recurring-tasks:2026-12:expenses",
        "recurring:create-recurring-tasks:2026-12:access",
    }
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


def test_the_period_is_the_scheduled_start_in_the_schedules_time_zone() -> None:
    # 23:30 UTC on 31 December is already January in Berlin, still December in New York.
    late_in_the_year = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert RunPeriod("f/d", late_in_the_year, "Europe/Berlin").period("%Y-%m") == "2027-01"
    assert RunPeriod("f/d", late_in_the_year, "America/New_York").period("%Y-%m") == "2026-12"
    assert RunPeriod("f/d", late_in_the_year, "UTC").period("%G-W%V") == "2026-W53"

    @dataclass
    class Schedule:
        timezone: str

    @dataclass
    class DeploymentSchedule:
        id: str
        schedule: Schedule

    schedules = [
        DeploymentSchedule("a", Schedule("UTC")),
        DeploymentSchedule("b", Schedule("Asia/Tokyo")),
    ]
    # Prefect's scheduler names the schedule in the run's idempotency key.
    assert (
        _schedule_timezone(schedules, "scheduled dep b 2026-12-31 23:30:00+00:00") == "Asia/Tokyo"
    )
    assert _schedule_timezone(schedules, None) == "UTC"  # two schedules, none named
    assert _schedule_timezone(schedules[1:], None) == "Asia/Tokyo"


def test_serving_and_deploying_the_same_file_use_different_names() -> None:
    """`python flows/approvals.py` and `prefect deploy --all` never replace each other."""
    import yaml

    sys.path.insert(0, str(ROOT / "flows"))
    try:
        import approvals  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "flows"))
    config = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployed = {d["name"] for d in config["deployments"]}
    served = approvals.served_deployments()
    assert {d.name for d in served} == {name + "-served" for name in deployed}
    monthly = next(d for d in served if d.name == "monthly-reviews-served")
    [schedule] = monthly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 8 1 * *", "UTC")
    assert monthly.parameters["tasks"][0]["name"] == "expenses"
    assert approvals.pool_environment() == {
        "PEOPLETASKS_SERVICE_BLOCK": "peopletasks",
        "PEOPLETASKS_MAIL_BLOCK": "peopletasks",
    }
