"""The fields beside Appmixer's (Peoplelogic's and Plannr's): create, read, edit, filter,
sort, projection, notes, completion and status history, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from peopletasks.store import migrate
from peopletasks.store.migrate import alembic_config
from peopletasks.store.tables import organizations, tasks
from peopletasks.store.types import UTCDateTime
from peopletasks.timeutil import format_datetime
from tests.conftest import Api, ApiFactory, error_of, new_database_url, service_on

EVERY_FIELD: dict[str, Any] = {
    "assignees": [
        {"type": "user", "id": "ana@example.com"},
        {"type": "Group", "id": "finance-team"},
    ],
    "priority": "high",
    "order": 3,
    "orderGroup": "123e4567-e89b-12d3-a456-426614174000",
    "customFields": [
        {"key": "favourite_drink", "name": "Favourite drink", "type": "string", "value": "Tea"},
        {"key": "budget", "type": "number", "value": 2500.0},
        {"key": "remote", "type": "boolean", "value": True},
        {"key": "start", "type": "date", "value": "2026-12-07"},
    ],
    "connectedTo": {"type": "okr", "id": "okr-42"},
    "mappings": [
        {
            "app": "peoplelogic",
            "namespace": "task",
            "mappedId": "pl-1",
            "reference": "https://app.example.com/tasks/pl-1",
            "mappingData": {"board": "q4"},
        },
        {"app": "plannr", "mappedId": "2d2578ba"},
    ],
    "active": False,
}
#: EVERY_FIELD as the API answers it.
SHOWN: dict[str, Any] = {
    **EVERY_FIELD,
    "assignees": [
        {"type": "user", "id": "ana@example.com"},
        {"type": "group", "id": "finance-team"},  # types are lower-cased
    ],
    "customFields": [
        {"key": "favourite_drink", "name": "Favourite drink", "type": "string", "value": "Tea"},
        {"key": "budget", "name": None, "type": "number", "value": 2500},  # 2500.0 is 2500
        {"key": "remote", "name": None, "type": "boolean", "value": True},
        {"key": "start", "name": None, "type": "date", "value": "2026-12-07"},
    ],
    "mappings": [
        EVERY_FIELD["mappings"][0],
        {"app": "plannr", "namespace": "", "mappedId": "2d2578ba"},
    ],
}


def pick(task: dict[str, Any], keys: Any = SHOWN) -> dict[str, Any]:
    return {k: task[k] for k in keys}


async def ids(api: Api, **params: Any) -> list[str]:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()]


async def count(api: Api, **params: Any) -> int:
    response = await api.get("/tasks-count", params=params)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


# -- create, read, edit -------------------------------------------------------------


async def test_every_field_round_trips_through_create_get_and_list(api: Api) -> None:
    parent = await api.create(title="Quarterly plan")
    task = await api.create(**EVERY_FIELD, parentId=parent["id"])
    assert pick(task) == SHOWN
    assert task["parentId"] == parent["id"]
    fetched = (await api.get(f"/tasks/{task['id']}")).json()
    assert pick(fetched) == SHOWN and fetched["parentId"] == parent["id"]
    (listed,) = [t for t in (await api.get("/tasks")).json() if t["id"] == task["id"]]
    assert pick(listed) == SHOWN
    # Read-only: nothing decided, nothing noted; the history holds the creation.
    assert task["completedAt"] is None and task["completedBy"] is None
    assert task["notesCount"] == 0
    assert task["statusHistory"] == [
        {"from": None, "to": "pending", "changedAt": task["createdAt"], "changedBy": api.email}
    ]


async def test_the_answer_to_create_is_the_task_as_stored(api: Api) -> None:
    """What POST /tasks answers is what a read of the task gives, field for field
    (secrets and links aside), whichever fields are given, first task or later:
    the answer is built from the values written, not read back (see `prepared`)."""
    parent = await api.create(title="Parent")
    shapes: list[dict[str, Any]] = [
        {},
        {"description": "Two\nlines", "decisionBy": "2031-02-03 04:05:06.789"},
        {**EVERY_FIELD, "parentId": parent["id"], "allowLateDecision": True},
        {"public": False, "requestKey": f"key-{uuid.uuid4().hex}", "active": False},
    ]
    for round_ in range(3):
        for shape in shapes:
            if "requestKey" in shape:
                shape = {**shape, "requestKey": f"key-{uuid.uuid4().hex}"}
            answer = await api.create(title=f"Shape {round_}", **shape)
            stored = (await api.get(f"/tasks/{answer['id']}")).json()
            assert set(answer) - set(stored) == {
                "approverSecret",
                "approverSecrets",
                "requesterSecret",
                "links",
            }
            assert {key: answer[key] for key in stored} == stored


async def test_a_task_without_the_fields_has_their_empty_forms(api: Api) -> None:
    task = await api.create()
    assert pick(task, ("assignees", "customFields", "mappings")) == {
        "assignees": [], "customFields": [], "mappings": []
    }  # fmt: skip
    for name in ("priority", "order", "orderGroup", "connectedTo", "parentId"):
        assert task[name] is None, name
    assert task["active"] is True


async def test_edit_changes_clears_and_keeps_the_fields(api: Api) -> None:
    task = await api.create(**EVERY_FIELD)
    response = await api.put(
        f"/tasks/{task['id']}",
        json={
            "priority": "low",
            "order": -1,
            "assignees": [{"id": "bo@example.com"}],
            "customFields": [],
            "connectedTo": None,
            "active": True,
        },
    )
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["priority"] == "low" and edited["order"] == -1
    assert edited["assignees"] == [{"type": "user", "id": "bo@example.com"}]
    assert edited["customFields"] == [] and edited["connectedTo"] is None
    assert edited["active"] is True
    # Untouched fields stay.
    assert edited["mappings"] == SHOWN["mappings"]
    assert edited["orderGroup"] == EVERY_FIELD["orderGroup"]
    assert (await api.get(f"/tasks/{task['id']}")).json() == edited
    # The assignee filter follows the edit.
    assert await ids(api, filter="assignee:bo@example.com") == [task["id"]]
    assert await ids(api, filter="assignee:ana@example.com") == []


def custom(key: str, type_: str, value: Any) -> dict[str, Any]:
    return {"customFields": [{"key": key, "type": type_, "value": value}]}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"order": "first"}, "order"),
        ({"order": 1.5}, "order"),
        ({"order": 2**40}, "order"),
        ({"active": None}, "active"),
        ({"assignees": [{"type": "user"}]}, "assignees.0.id"),
        ({"assignees": [{"type": "no spaces", "id": "x"}]}, "assignees.0.type"),
        ({"assignees": [{"id": "x"}, {"id": "x"}]}, "assignees"),
        (custom("n", "number", "12"), "customFields.0.value"),
        (custom("b", "boolean", 1), "customFields.0.value"),
        (custom("d", "date", "2026-02-30"), "customFields.0.value"),
        (custom("s", "string", 3), "customFields.0.value"),
        (custom("x", "colour", "red"), "customFields.0.type"),
        (custom("has space", "string", "x"), "customFields.0.key"),
        ({"connectedTo": {"type": "okr"}}, "connectedTo.id"),
        ({"mappings": [{"app": "plannr"}]}, "mappings.0.mappedId"),
        ({"mappings": [{"app": "a", "mappedId": "1"}, {"app": "a", "mappedId": "2"}]}, "mappings"),
        ({"completedAt": "2026-01-01T00:00:00Z"}, "completedAt"),
        ({"statusHistory": []}, "statusHistory"),
        ({"notesCount": 3}, "notesCount"),
        ({"parentId": "000000000000000000000000"}, "parentId"),
    ],
)  # fmt: skip
async def test_bad_values_are_refused_naming_the_field_and_change_nothing(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    before = await count(api)
    response = await api.post(
        "/tasks",
        json={"title": "t", "requester": "a@example.com", "approver": "b@example.com", **fields},
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["details"][0]["field"] == field, error
    assert error["message"].startswith(field), error
    assert await count(api) == before
    # Edit validates alike, and the task stays as it was.
    task = await api.create(priority="medium")
    response = await api.put(f"/tasks/{task['id']}", json={"title": "changed", **fields})
    assert response.status_code == 422, response.text
    assert error_of(response)["details"][0]["field"] == field
    assert (await api.get(f"/tasks/{task['id']}")).json() == {
        k: v
        for k, v in task.items()
        if k not in {"approverSecret", "approverSecrets", "requesterSecret", "links"}
    }


async def test_a_parent_is_a_task_of_the_organization_without_cycles(
    api: Api, new_api: ApiFactory
) -> None:
    root = await api.create(title="root")
    child = await api.create(title="child", parentId=root["id"])
    grandchild = await api.create(title="grandchild", parentId=child["id"])
    assert await ids(api, filter=f"parentId:{root['id']}") == [child["id"]]

    async def refused(task_id: str, parent_id: str) -> str:
        response = await api.put(f"/tasks/{task_id}", json={"parentId": parent_id})
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["details"][0]["field"] == "parentId"
        return str(error["message"])

    assert "own parent" in await refused(root["id"], root["id"])
    assert "cycle" in await refused(root["id"], grandchild["id"])
    assert "cycle" in await refused(child["id"], grandchild["id"])
    assert (await api.get(f"/tasks/{root['id']}")).json()["parentId"] is None
    # Another organization's task is no parent here (and says no more than "no task").
    stranger = await (await new_api("x@example.com", org=f"other-{uuid.uuid4().hex}")).create()
    assert "no task" in await refused(child["id"], stranger["id"])
    # Moving a branch elsewhere is fine; clearing the parent too.
    other = await api.create(title="other root")
    moved = await api.put(f"/tasks/{child['id']}", json={"parentId": other["id"]})
    assert moved.json()["parentId"] == other["id"]
    cleared = await api.put(f"/tasks/{child['id']}", json={"parentId": None})
    assert cleared.json()["parentId"] is None


async def test_crossing_moves_at_once_make_no_cycle(api: Api) -> None:
    for _ in range(5):
        a, b = await api.create(title="a"), await api.create(title="b")
        answers = await asyncio.gather(
            api.put(f"/tasks/{a['id']}", json={"parentId": b["id"]}),
            api.put(f"/tasks/{b['id']}", json={"parentId": a["id"]}),
        )
        assert sorted(r.status_code for r in answers) == [200, 422], [r.text for r in answers]
        parents = [(await api.get(f"/tasks/{t['id']}")).json()["parentId"] for t in (a, b)]
        assert parents.count(None) == 1


# -- filter, sort, projection -------------------------------------------------------------


@pytest.fixture
async def board(api: Api) -> dict[str, dict[str, Any]]:
    """Tasks spread over the fields (creation order: a, b, c, d, e)."""
    return {
        "a": await api.create(
            title="a",
            priority="medium",
            order=2,
            orderGroup="g1",
            assignees=[{"id": "ana@example.com"}],
            connectedTo={"type": "okr", "id": "okr-1"},
            customFields=[
                {"key": "budget", "type": "number", "value": 100},
                {"key": "team", "type": "string", "value": "sales"},
            ],
        ),
        "b": await api.create(
            title="b",
            priority="highest",
            order=1,
            orderGroup="g1",
            assignees=[{"type": "group", "id": "ops"}, {"id": "ana@example.com"}],
            connectedTo={"type": "meeting", "id": "m-1"},
            customFields=[{"key": "budget", "type": "number", "value": 2.5}],
        ),
        "c": await api.create(
            title="c",
            priority="low",
            active=False,
            connectedTo={"type": "okr", "id": "okr-2"},
            customFields=[
                {"key": "budget", "type": "string", "value": "100"},
                {"key": "remote", "type": "boolean", "value": True},
            ],
        ),
        "d": await api.create(title="d", priority="medium", order=3, orderGroup="g2"),
        "e": await api.create(
            title="e",
            customFields=[
                {"key": "remote", "type": "boolean", "value": False},
                {"key": "start", "type": "date", "value": "2026-12-07"},
            ],
        ),
    }


async def names(api: Api, **params: Any) -> str:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    return "".join(t["title"] for t in response.json())


async def test_sort_by_priority_follows_its_rank_and_ties_keep_creation_order(
    api: Api, board: dict[str, Any]
) -> None:
    assert await names(api, sort="priority:1") == "cadbe"  # low, medium x2, highest, none
    assert await names(api, sort="priority:-1") == "ebadc"  # none first, as with dates
    assert await names(api, sort="priority:-1", filter="priority:low,priority:high") == "c"


async def test_sort_by_order_and_group(api: Api, board: dict[str, Any]) -> None:
    assert await names(api, sort="order:1") == "badce"
    assert await names(api, sort="orderGroup:1,order:1") == "badce"
    assert await names(api, sort="orderGroup:-1,order:1") == "cedba"
    assert await names(api, sort="connectedTo.id:1") == "bacde"


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("priority:medium", "ad"),
        ("priority:medium,priority:highest", "abd"),
        ("order:2", "a"),
        ("order:>=2", "ad"),
        ("order:<2", "b"),
        ("orderGroup:g1", "ab"),
        ("active:false", "c"),
        ("active:true", "abde"),
        ("connectedTo.type:okr", "ac"),
        ("connectedTo.id:okr-2", "c"),
        ("connectedTo.type:okr,connectedTo.id:m-1", ""),
        ("assignee:ana@example.com", "ab"),
        ("assignee:ops", "b"),
        ("assignee:nobody", ""),
        ("customFields.budget:100", "ac"),  # the number 100 and the string "100"
        ("customFields.budget:100.0", "a"),  # only the number
        ("customFields.budget:2.5", "b"),
        ("customFields.team:sales", "a"),
        ("customFields.remote:true", "c"),
        ("customFields.remote:false", "e"),
        ("customFields.start:2026-12-07", "e"),
        ("customFields.missing:x", ""),
        ("completedAt:null", "abcde"),
        ("notesCount:0", "abcde"),
    ],
)
async def test_filters_on_the_fields(
    api: Api, board: dict[str, Any], filter_: str, expected: str
) -> None:
    assert await names(api, filter=filter_) == expected
    assert await count(api, filter=filter_) == len(expected)


@pytest.mark.parametrize(
    ("params", "field_text"),
    [
        ({"filter": "priority:urgent"}, "priority: expected one of low, medium, high, highest"),
        ({"filter": "order:first"}, "order: expected a whole number"),
        ({"filter": "order:>99999999999"}, "order: out of range"),
        ({"filter": "active:maybe"}, "active: expected true or false"),
        ({"filter": "customFields.has space:x"}, "not a custom field key"),
        ({"filter": "customFields:x"}, "unknown property 'customFields'"),
        ({"filter": "assignee:"}, "assignee: expected an assignee id"),
        ({"sort": "customFields:1"}, "unknown property 'customFields'"),
        ({"sort": "assignees:1"}, "unknown property 'assignees'"),
        ({"projection": "notes"}, "unknown property 'notes'"),
    ],
)
async def test_bad_filters_and_sorts_name_the_problem(
    api: Api, params: dict[str, str], field_text: str
) -> None:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 422, response.text
    assert field_text in error_of(response)["message"]


async def test_projection_keeps_or_leaves_out_the_new_fields(
    api: Api, board: dict[str, Any]
) -> None:
    kept = (await api.get("/tasks", params={"projection": "priority,assignees,connectedTo"})).json()
    assert kept[1] == {
        "id": board["b"]["id"],
        "priority": "highest",
        "assignees": [{"type": "group", "id": "ops"}, {"type": "user", "id": "ana@example.com"}],
        "connectedTo": {"type": "meeting", "id": "m-1"},
    }
    left = (await api.get("/tasks", params={"projection": "-customFields,-statusHistory"})).json()
    assert "customFields" not in left[0] and "statusHistory" not in left[0]
    assert left[0]["priority"] == "medium"


# -- notes --------------------------------------------------------------------------


async def test_notes_are_appended_by_token_and_both_secrets_and_listed_in_order(
    api: Api, anonymous: Api
) -> None:
    task = await api.create()
    path = f"/tasks/{task['id']}/notes"
    by_token = await api.post(path, json={"text": "Asked the team."})
    assert by_token.status_code == 201, by_token.text
    note = by_token.json()
    assert set(note) == {"id", "text", "createdBy", "createdAt"}
    assert note["text"] == "Asked the team." and note["createdBy"] == api.email
    by_approver = await anonymous.post(
        path, json={"text": "Looks fine.", "secret": task["approverSecret"]}
    )
    assert by_approver.status_code == 201, by_approver.text
    assert by_approver.json()["createdBy"] == "lead@example.com"
    by_requester = await anonymous.post(
        path, params={"secret": task["requesterSecret"]}, json={"text": "Thanks!"}
    )
    assert by_requester.status_code == 201, by_requester.text
    assert by_requester.json()["createdBy"] == "employee@example.com"

    for reader in (
        api.get(path),
        anonymous.get(path, params={"secret": task["requesterSecret"]}),
    ):
        listed = (await reader).json()
        assert [n["text"] for n in listed] == ["Asked the team.", "Looks fine.", "Thanks!"]
    assert [n["text"] for n in (await api.get(path, params={"offset": 1, "limit": 1})).json()] == [
        "Looks fine."
    ]
    fetched = (await api.get(f"/tasks/{task['id']}")).json()
    assert fetched["notesCount"] == 3
    assert "notes" not in fetched
    assert await ids(api, filter="notesCount:>=3") == [task["id"]]


async def test_notes_are_refused_to_others(api: Api, anonymous: Api, new_api: ApiFactory) -> None:
    task = await api.create()
    path = f"/tasks/{task['id']}/notes"
    stranger = await new_api("x@example.com", org=f"other-{uuid.uuid4().hex}")
    for caller in (stranger.post(path, json={"text": "hi"}), stranger.get(path)):
        response = await caller
        assert response.status_code == 404, response.text
    # Another person's secret in the same organization does not open this task.
    other = await api.create(approver="someone-else@example.com")
    response = await anonymous.post(path, json={"text": "hi", "secret": other["approverSecret"]})
    assert response.status_code == 404
    assert (await anonymous.post(path, json={"text": "hi"})).status_code == 401
    for body, field in (({"text": "  "}, "text"), ({}, "text"), ({"text": "x", "y": 1}, "y")):
        response = await api.post(path, json=body)
        assert response.status_code == 422, response.text
        assert error_of(response)["details"][0]["field"] == field
    assert (await api.get(path)).json() == []
    assert (await api.get(f"/tasks/{task['id']}")).json()["notesCount"] == 0


# -- completion and status history -----------------------------------------------------


async def test_approval_sets_completed_at_and_by_and_extends_the_history(
    api: Api, anonymous: Api
) -> None:
    task = await api.create(priority="high")
    decided = await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["completedAt"] == body["decidedAt"] is not None
    assert body["completedBy"] == body["decidedBy"] == "lead@example.com"
    assert body["statusHistory"] == [
        {"from": None, "to": "pending", "changedAt": task["createdAt"], "changedBy": api.email},
        {
            "from": "pending",
            "to": "approved",
            "changedAt": body["decidedAt"],
            "changedBy": "lead@example.com",
        },
    ]
    fetched = (await api.get(f"/tasks/{task['id']}")).json()
    assert fetched["statusHistory"] == body["statusHistory"]
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert [(h["from"], h["to"]) for h in history] == [
        (h["from"], h["to"]) for h in body["statusHistory"]
    ]
    assert await ids(api, filter="completedBy:LEAD@example.com") == [task["id"]]
    assert await ids(api, filter=f"completedAt:>={body['completedAt']}") == [task["id"]]
    assert await names(api, sort="completedAt:1") == task["title"]


# -- migration ------------------------------------------------------------------------


#: The history table of 0001-0006 (0007 dropped it: the row's statusHistory holds it).
_OLD_TASK_HISTORY = sa.table(
    "task_history",
    sa.column("task_seq", sa.BigInteger),
    sa.column("from_status", sa.String),
    sa.column("to_status", sa.String),
    sa.column("changed_by", sa.String),
    sa.column("changed_at", UTCDateTime()),
    sa.column("comment", sa.Text),
)


@pytest.fixture
def database_at_0004(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"pt_{uuid.uuid4().hex[:12]}")
    migrate(url, "0004")
    return url


async def test_migration_0005_gives_existing_tasks_their_status_history(
    database_at_0004: str,
) -> None:
    engine = create_async_engine(database_at_0004)
    try:
        created = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
        decided = datetime(2026, 11, 2, 9, 30, 0, 250_000, tzinfo=UTC)
        async with engine.begin() as conn:
            # Only the columns 0004 has (the new ones are not named).
            await conn.execute(organizations.insert().values(id=1, name="old", created_at=created))
            await conn.execute(
                tasks.insert().values(
                    seq=1,
                    id="old-task",
                    org_id=1,
                    title="Old",
                    requester="r@example.com",
                    approver="a@example.com",
                    status="approved",
                    created_by="c@example.com",
                    created_at=created,
                    updated_at=decided,
                )
            )
            await conn.execute(
                _OLD_TASK_HISTORY.insert(),
                [
                    {"task_seq": 1, "from_status": None, "to_status": "pending",
                     "changed_by": "c@example.com", "changed_at": created},
                    {"task_seq": 1, "from_status": "pending", "to_status": "approved",
                     "changed_by": "a@example.com", "changed_at": decided},
                ],
            )  # fmt: skip
        migrate(database_at_0004)
        async with engine.connect() as conn:
            history = (
                await conn.execute(
                    sa.select(sa.column("status_history", sa.JSON)).select_from(sa.table("tasks"))
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert history == [
        {
            "from": None,
            "to": "pending",
            "changedAt": "2026-11-01T10:00:00Z",
            "changedBy": "c@example.com",
        },
        {
            "from": "pending",
            "to": "approved",
            "changedAt": "2026-11-02T09:30:00.250Z",
            "changedBy": "a@example.com",
        },
    ]


async def test_migration_0007_keeps_the_history_and_its_downgrade_rebuilds_the_table(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """0007 drops task_history (the row's statusHistory holds every change): the
    history reads the same before and after, and a downgrade to 0006 rebuilds the
    table's rows from the rows' histories, the decision's comment with it."""
    url = new_database_url(request, backend, tmp_path)
    async with service_on(url) as (_, api):
        task = await api.create()
        path = f"/tasks/{task['id']}"
        secret = {"secret": task["approverSecret"]}
        answer = await api.put(f"{path}/reject", params=secret, json={"comment": "too late"})
        assert answer.status_code == 200, answer.text
        history = (await api.get(f"{path}/history")).json()
    # A status change's entry as task_history held it (the history also says its event).
    before = [
        {k: h[k] for k in ("from", "to", "changedBy", "changedAt", "comment")} for h in history
    ]
    assert [h["event"] for h in history] == ["created", "rejected"]
    assert [(h["from"], h["to"], h["comment"]) for h in before] == [
        (None, "pending", None),
        ("pending", "rejected", "too late"),
    ]
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        _OLD_TASK_HISTORY.c.from_status,
                        _OLD_TASK_HISTORY.c.to_status,
                        _OLD_TASK_HISTORY.c.changed_by,
                        _OLD_TASK_HISTORY.c.changed_at,
                        _OLD_TASK_HISTORY.c.comment,
                    ).order_by(sa.text("id"))
                )
            ).all()
    finally:
        await engine.dispose()
    assert [
        {
            "from": r.from_status,
            "to": r.to_status,
            "changedBy": r.changed_by,
            "changedAt": format_datetime(r.changed_at),
            "comment": r.comment,
        }
        for r in rows
    ] == [{k: v for k, v in h.items() if k != "event"} for h in before]
    migrate(url)
    async with service_on(url) as (_, api):
        assert (await api.get(f"{path}/history")).json() == history
