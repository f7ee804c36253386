"""The first decision wins, under real concurrency, on real service processes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_KEY, new_database_url
from tests.support.server import ServiceProcess, cli, service_env

TASKS = 200


@pytest.fixture
def race_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return new_database_url(request, backend, tmp_path)


async def test_approve_and_reject_race_one_winner_per_task(
    race_database: str, backend: str
) -> None:
    env = service_env(race_database, TEST_KEY)
    token = cli("token", "create", "--email", "racer@example.com", env=env).strip().splitlines()[-1]
    # Two replicas on PostgreSQL; SQLite is one replica (one writer by design).
    replicas = [ServiceProcess(env).start()]
    if backend == "postgresql":
        replicas.append(ServiceProcess(env).start())
    try:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            auth = {"Authorization": f"Bearer {token}"}
            base = replicas[0].url + "/people-task"

            async def create(i: int) -> dict[str, str]:
                response = await client.post(
                    f"{base}/tasks",
                    headers=auth,
                    json={
                        "title": f"race {i}",
                        "requester": "r@example.com",
                        "approver": "a@example.com",
                    },
                )
                assert response.status_code == 201, response.text
                return dict(response.json())

            created = await asyncio.gather(*(create(i) for i in range(TASKS)))
            secrets = {task["id"]: task["approverSecret"] for task in created}
            attempts = [
                (task["id"], action, replicas[n % len(replicas)].url)
                for n, (task, action) in enumerate(
                    (t, a) for t in created for a in ("approve", "reject")
                )
            ]
            random.Random(7).shuffle(attempts)

            async def decide(task_id: str, action: str, url: str) -> tuple[str, str, int]:
                response = await client.put(
                    f"{url}/people-task/tasks/{task_id}/{action}",
                    json={"secret": secrets[task_id]},
                )
                assert response.status_code in (200, 409), response.text
                return task_id, action, response.status_code

            results = await asyncio.gather(*(decide(*a) for a in attempts))

            winners: dict[str, list[str]] = {t["id"]: [] for t in created}
            for task_id, action, status in results:
                if status == 200:
                    winners[task_id].append(action)
            assert all(len(w) == 1 for w in winners.values()), winners

            listed = await client.get(f"{base}/tasks", headers=auth, params={"limit": 1000})
            final = {t["id"]: t["status"] for t in listed.json()}
            for task_id, (action,) in winners.items():
                assert final[task_id] == {"approve": "approved", "reject": "rejected"}[action]
            # Exactly one decision in each task's history.
            for task in created[:20]:
                history = (
                    await client.get(f"{base}/tasks/{task['id']}/history", headers=auth)
                ).json()
                assert [h["from"] for h in history] == [None, "pending"]
    finally:
        for replica in replicas:
            replica.stop()
