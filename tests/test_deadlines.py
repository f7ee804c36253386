"""The deadline scheduler's own query: the earliest deadline of a pending task.

The scheduler asks for it every time it wakes (after each expiry, and when a new
deadline comes first), on the service's event loop: it must come from the index of
pending deadlines, not from walking tasks.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from peopletasks.domain.decisions import next_deadline
from peopletasks.store.database import sqlite_path
from peopletasks.store.tables import PENDING_DEADLINE_INDEX
from peopletasks.store.tasks import _NEXT_DEADLINE
from tests.conftest import new_database_url, service_on


async def test_the_next_deadline_is_the_earliest_of_a_pending_task(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = new_database_url(request, backend, tmp_path)
    async with service_on(url) as (domain, api):
        assert await next_deadline(domain) is None
        await api.create(title="no deadline")
        later = await api.create(title="later", decisionBy="2031-01-01T00:00:00Z")
        decided = await api.create(title="decided", decisionBy="2030-01-01T00:00:00Z")
        first = await api.create(title="first", decisionBy="2030-06-01 12:00:00")
        secret = {"secret": decided["approverSecret"]}
        answer = await api.put(f"/tasks/{decided['id']}/approve", params=secret)
        assert answer.status_code == 200, answer.text
        assert await next_deadline(domain) == datetime(2030, 6, 1, 12, tzinfo=UTC)
        secret = {"secret": first["approverSecret"]}
        answer = await api.put(f"/tasks/{first['id']}/reject", params=secret)
        assert answer.status_code == 200, answer.text
        assert await next_deadline(domain) == datetime(2031, 1, 1, tzinfo=UTC)
        assert later["status"] == "pending"


async def test_sqlite_reads_it_from_the_index_whatever_the_statistics_say(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Statistics from a sampled ANALYZE of a large store judged the partial index
    larger than the table, and SQLite walked a role index instead (28 ms at 226,000
    tasks, measured). Those statistics, put back here, must not change the plan."""
    url = new_database_url(request, "sqlite", tmp_path)
    path = sqlite_path(url)
    assert path is not None
    plain = sqlite3.connect(path, isolation_level=None)
    try:
        plain.execute("ANALYZE")
        seen = {row[0] for row in plain.execute("SELECT idx FROM sqlite_stat1")}
        stats = {
            PENDING_DEADLINE_INDEX: "804825 2",
            "ix_tasks_org_requester_status": "138040 401 401 401 401",
        }
        for index, stat in stats.items():
            if index in seen:
                plain.execute("UPDATE sqlite_stat1 SET stat = ? WHERE idx = ?", (stat, index))
            else:
                plain.execute("INSERT INTO sqlite_stat1 VALUES ('tasks', ?, ?)", (index, stat))
        # A new connection loads those statistics.
        again = sqlite3.connect(path)
        try:
            sql = str(_NEXT_DEADLINE["sqlite"])
            plan = [row[-1] for row in again.execute(f"EXPLAIN QUERY PLAN {sql}")]
        finally:
            again.close()
    finally:
        plain.close()
    assert any(PENDING_DEADLINE_INDEX in step for step in plan), plan
