"""GET /tasks and /tasks-count: secret, role, filter, sort, projection, pattern, paging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import Api, ApiFactory, error_of, new_database_url, service_on


async def titles(api: Api, **params: Any) -> list[str]:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    return [t["title"] for t in response.json()]


async def count(api: Api, **params: Any) -> int:
    response = await api.get("/tasks-count", params=params)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


@pytest.fixture
async def board(api: Api, anonymous: Api) -> dict[str, dict[str, Any]]:
    """Five tasks: two approvers, two requesters, mixed states and deadlines."""
    made = {
        "alpha": await api.create(title="Alpha budget", decisionBy="2030-01-03T00:00:00Z"),
        "beta": await api.create(title="Beta 50% off_sale", decisionBy="2030-01-01T00:00:00Z"),
        "gamma": await api.create(title="gamma BUDGET", approver="cfo@example.com"),
        "delta": await api.create(
            title="Delta", requester="other@example.com", decisionBy="2030-01-02T00:00:00Z"
        ),
        "epsilon": await api.create(title="Epsilon", decisionBy="2030-01-02T00:00:00Z"),
    }
    await anonymous.put(
        f"/tasks/{made['beta']['id']}/approve", params={"secret": made["beta"]["approverSecret"]}
    )
    await anonymous.put(
        f"/tasks/{made['delta']['id']}/reject", params={"secret": made["delta"]["approverSecret"]}
    )
    return made


async def test_a_token_lists_the_tasks_it_created_in_creation_order(
    api: Api, board: dict[str, Any]
) -> None:
    assert await titles(api) == [
        "Alpha budget", "Beta 50% off_sale", "gamma BUDGET", "Delta", "Epsilon"
    ]  # fmt: skip
    assert await count(api) == 5


async def test_a_list_never_shows_secrets(api: Api, board: dict[str, Any]) -> None:
    for task in (await api.get("/tasks")).json():
        assert "approverSecret" not in task and "requesterSecret" not in task


async def test_an_approver_secret_lists_its_own_task_only(
    anonymous: Api, board: dict[str, Any]
) -> None:
    """A task's secret proves one role on one task, not a person (docs/api.md)."""
    secret = board["alpha"]["approverSecret"]
    assert await titles(anonymous, secret=secret) == ["Alpha budget"]
    assert await titles(anonymous, secret=secret, role="approver") == ["Alpha budget"]
    assert await count(anonymous, secret=secret) == 1
    cfo = board["gamma"]["approverSecret"]
    assert await titles(anonymous, secret=cfo) == ["gamma BUDGET"]


async def test_one_secret_per_task_and_role(board: dict[str, Any]) -> None:
    secrets = [board[name][f"{role}Secret"] for name in board for role in ("approver", "requester")]
    assert len(set(secrets)) == len(secrets)


async def test_requester_secret_lists_that_requesters_tasks(
    anonymous: Api, board: dict[str, Any]
) -> None:
    secret = board["delta"]["requesterSecret"]
    assert await titles(anonymous, secret=secret) == ["Delta"]
    assert await count(anonymous, secret=secret, role="requester") == 1


async def test_a_secret_cannot_list_another_role(anonymous: Api, board: dict[str, Any]) -> None:
    response = await anonymous.get(
        "/tasks", params={"secret": board["alpha"]["requesterSecret"], "role": "approver"}
    )
    assert response.status_code == 403
    assert "role" in error_of(response)["message"]


async def test_role_with_a_token(api: Api, new_api: ApiFactory, board: dict[str, Any]) -> None:
    lead = await new_api("lead@example.com")
    assert await count(lead) == 4
    assert await count(lead, role="approver") == 4
    assert await count(lead, role="requester") == 0
    employee = await new_api("employee@example.com")
    assert await count(employee, role="requester") == 4
    assert await count(api, role="approver") == 0


async def test_filter(api: Api, board: dict[str, Any]) -> None:
    assert await titles(api, filter="status:pending") == ["Alpha budget", "gamma BUDGET", "Epsilon"]
    assert await count(api, filter="status:pending") == 3
    # Several filters: all must match; several values of one property: any.
    assert await titles(api, filter="status:pending,approver:cfo@example.com") == ["gamma BUDGET"]
    assert await titles(api, filter=["status:pending", "approver:CFO@example.com"]) == [
        "gamma BUDGET"
    ]
    assert await titles(api, filter="status:approved,status:rejected") == [
        "Beta 50% off_sale", "Delta"
    ]  # fmt: skip
    assert await titles(api, filter="decisionBy:2030-01-02 00:00:00") == ["Delta", "Epsilon"]
    assert await titles(api, filter="decisionBy:<2030-01-02T00:00:00Z") == ["Beta 50% off_sale"]
    assert await titles(api, filter="decisionBy:null") == ["gamma BUDGET"]
    assert await titles(api, filter="public:true") == await titles(api)
    assert await titles(api, filter="title:Delta") == ["Delta"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"filter": "colour:red"}, "colour"),
        ({"filter": "status"}, "property:value"),
        ({"filter": "status:maybe"}, "status"),
        ({"filter": "public:perhaps"}, "public"),
        ({"filter": "decisionBy:tomorrow"}, "decisionBy"),
        ({"sort": "colour:1"}, "colour"),
        ({"sort": "title:up"}, "direction"),
        ({"projection": "-colour"}, "colour"),
        ({"projection": "title,-description"}, "projection"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"role": "boss"}, "role"),
        ({"filters": "status:pending"}, "filters"),
        ({"pattern": "x" * 201}, "pattern"),
    ],
)
async def test_bad_selection_is_a_422_naming_it(
    api: Api, board: dict[str, Any], params: dict[str, Any], needle: str
) -> None:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 422, response.text
    assert needle in error_of(response)["message"]


async def test_count_refuses_what_it_does_not_take(api: Api) -> None:
    response = await api.get("/tasks-count", params={"sort": "title:1"})
    assert response.status_code == 422
    assert "sort" in error_of(response)["message"]


async def test_sort(api: Api, board: dict[str, Any]) -> None:
    # Ties (Delta and Epsilon share a deadline) keep creation order; no deadline sorts last.
    assert await titles(api, sort="decisionBy:1") == [
        "Beta 50% off_sale", "Delta", "Epsilon", "Alpha budget", "gamma BUDGET"
    ]  # fmt: skip
    assert await titles(api, sort="decisionBy:-1") == [
        "gamma BUDGET", "Alpha budget", "Delta", "Epsilon", "Beta 50% off_sale"
    ]  # fmt: skip
    assert await titles(api, sort="status:1,decisionBy:-1") == [
        "Beta 50% off_sale", "gamma BUDGET", "Alpha budget", "Epsilon", "Delta"
    ]  # fmt: skip


async def test_paging_is_stable_through_ties(api: Api) -> None:
    for i in range(12):
        await api.create(title=f"Same deadline {i:02}", decisionBy="2031-01-01T00:00:00Z")
    seen: list[str] = []
    for offset in range(0, 12, 5):
        seen += await titles(api, sort="decisionBy:1", limit=5, offset=offset)
    assert seen == [f"Same deadline {i:02}" for i in range(12)]


async def test_projection(api: Api, board: dict[str, Any]) -> None:
    listed = (await api.get("/tasks", params={"projection": "-description,-comment"})).json()
    assert all("description" not in t and "comment" not in t and "title" in t for t in listed)
    listed = (await api.get("/tasks", params={"projection": "title,status"})).json()
    assert all(set(t) == {"id", "title", "status"} for t in listed)


async def test_pattern_is_case_insensitive_text_not_a_regex(
    api: Api, board: dict[str, Any]
) -> None:
    assert await titles(api, pattern="budget") == ["Alpha budget", "gamma BUDGET"]
    assert await titles(api, pattern="50%") == ["Beta 50% off_sale"]
    assert await titles(api, pattern="f_s") == ["Beta 50% off_sale"]
    assert await titles(api, pattern="o%f") == []
    assert await titles(api, pattern=".*") == []
    assert await count(api, pattern="BUDGET", filter="status:pending") == 2


async def test_limit_and_offset(api: Api, board: dict[str, Any]) -> None:
    assert await titles(api, limit=2) == ["Alpha budget", "Beta 50% off_sale"]
    assert await titles(api, limit=2, offset=4) == ["Epsilon"]
    assert await titles(api, offset=10) == []


async def test_organizations_never_see_each_other(
    api: Api, new_api: ApiFactory, board: dict[str, Any]
) -> None:
    stranger = await new_api("flows@example.com", org="elsewhere-" + board["alpha"]["id"])
    assert await count(stranger) == 0
    await stranger.create(title="Theirs")
    assert await titles(stranger) == ["Theirs"]
    assert "Theirs" not in await titles(api)


async def test_an_assignee_filter_is_found_by_the_assignee_index_once_the_store_is_analyzed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On SQLite, without statistics the planner walks the caller's whole organization
    (~40 ms at 100,000 tasks); the service analyzes its store (on open, hourly, at close)."""
    url = new_database_url(request, "sqlite", tmp_path)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "task_assignees" in statement:
            statements.append((statement, parameters))

    async with service_on(url, "lists@example.com", org="plans") as (domain, api):
        for i in range(300):  # created after the store opened: not analyzed yet
            await api.create(title=f"Task {i}", assignees=[{"type": "user", "id": f"u{i % 50}"}])

        await domain.db.optimize()  # what the hourly refresh, or a restart, does

        event.listen(Engine, "before_cursor_execute", seen)
        try:
            assert len(await titles(api, filter="assignee:u7")) == 6
        finally:
            event.remove(Engine, "before_cursor_execute", seen)
        statement, parameters = statements[-1]
        async with domain.db.read() as conn:  # the service's own read connection
            plan = await conn.run_sync(
                lambda sync: [
                    row[-1]
                    for row in sync.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                ]
            )
    assert any("ix_task_assignees_entity" in step for step in plan), plan
    # Tasks are then read by key, not searched through the organization's indexes (the
    # caller's own approver tasks, by org and approver, is their search, not the org's).
    walks = [s for s in plan if "SEARCH tasks USING" in s and s.endswith("(org_id=?)")]
    assert not walks and not [s for s in plan if s.startswith("SCAN tasks")], plan
