"""Create, read, edit, approve and reject over the API, as the seed describes them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api, ApiFactory, error_of

SEED_TASK = {
    "approver": "approver@example.com",
    "decisionBy": "2020-01-01 19:00:00",
    "description": "Example description",
    "requester": "requester@example.com",
    "status": "pending",
    "title": "Example title",
}
PUBLIC_FIELDS = {
    "id", "title", "description", "requester", "approver", "status", "decisionBy", "public",
    "allowLateDecision", "createdBy", "createdAt", "updatedAt", "decidedBy", "decidedAt",
    "comment", "requestKey",
    # Appmixer's components' names of id and decidedAt (tests/test_appmixer.py)
    "taskId", "decisionMade",
    # Peoplelogic's and Plannr's fields (tests/test_task_fields.py)
    "priority", "order", "orderGroup", "parentId", "active", "completedAt", "completedBy",
    "notesCount", "assignees", "connectedTo", "customFields", "mappings", "statusHistory",
    # Several approvers, custom responses and forms (tests/test_approvers.py)
    "approvers", "decisionRule", "quorum", "options", "form", "allowSelfApproval", "option",
    "data",
    # What the service does while a task waits (tests/test_notifications.py)
    "notify", "reminders", "escalation", "nextReminderAt", "remindersSent", "escalatesAt",
    "escalatedAt", "delegatedFrom", "reassignments", "decidedBySystem",
}  # fmt: skip


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def test_create_answers_like_the_seed(api: Api) -> None:
    task = await api.create(**SEED_TASK)
    assert {k: task[k] for k in ("approver", "description", "requester", "status", "title")} == {
        k: SEED_TASK[k] for k in ("approver", "description", "requester", "status", "title")
    }
    assert task["decisionBy"] == "2020-01-01T19:00:00Z"  # the seed's form read as UTC
    assert task["public"] is True
    assert len(task["id"]) == 24
    assert len(task["approverSecret"]) == 64 and len(task["requesterSecret"]) == 64
    assert task["approverSecret"] != task["requesterSecret"]
    assert task["createdBy"] == "flows@example.com"
    assert set(task) == PUBLIC_FIELDS | {
        "approverSecret",
        "approverSecrets",
        "requesterSecret",
        "links",
    }


@pytest.mark.parametrize(
    ("given", "answered"),
    [
        ("2026-12-01T17:00:00Z", "2026-12-01T17:00:00Z"),
        ("2026-12-01T18:00:00+01:00", "2026-12-01T17:00:00Z"),
        ("2026-12-01T17:00:00", "2026-12-01T17:00:00Z"),
        ("2026-12-01 17:00:00", "2026-12-01T17:00:00Z"),
        ("2026-12-01T17:00:00.250Z", "2026-12-01T17:00:00.250Z"),
    ],
)
async def test_dates_are_read_as_iso_or_seed_form_and_answered_with_zone(
    api: Api, given: str, answered: str
) -> None:
    task = await api.create(decisionBy=given)
    assert task["decisionBy"] == answered
    fetched = (await api.get(f"/tasks/{task['id']}")).json()
    assert fetched["decisionBy"] == answered


async def test_no_deadline_when_decision_by_is_absent(api: Api) -> None:
    task = await api.create()
    assert task["decisionBy"] is None


async def test_get_task_never_shows_secrets(api: Api) -> None:
    task = await api.create()
    response = await api.get(f"/tasks/{task['id']}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC_FIELDS
    assert {k: v for k, v in task.items() if k in PUBLIC_FIELDS} == body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requester": "a@example.com", "approver": "b@example.com"}, "title"),
        ({"title": "t", "approver": "b@example.com"}, "requester"),
        ({"title": "t", "requester": "a@example.com"}, "approver"),
        ({"title": "t", "requester": "not-an-email", "approver": "b@example.com"}, "requester"),
        ({"title": "  ", "requester": "a@example.com", "approver": "b@example.com"}, "title"),
        (
            {"title": "t", "requester": "a@example.com", "approver": "b@example.com", "x": 1},
            "x",
        ),
        (
            {
                "title": "t",
                "requester": "a@example.com",
                "approver": "b@example.com",
                "decisionBy": "next friday",
            },
            "decisionBy",
        ),
        (
            {
                "title": "t",
                "requester": "a@example.com",
                "approver": "b@example.com",
                "decisionBy": "2026-13-45T99:00:00Z",
            },
            "decisionBy",
        ),
        (
            {
                "title": "t",
                "requester": "a@example.com",
                "approver": "b@example.com",
                "status": "approved",
            },
            "status",
        ),
        (
            {"title": "nul \x00 inside", "requester": "a@example.com", "approver": "b@x.com"},
            "title",
        ),
        ({"title": 5, "requester": "a@example.com", "approver": "b@example.com"}, "title"),
    ],
)
async def test_bad_create_is_a_422_naming_the_field_and_creates_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert field in [d["field"] for d in error["details"]]
    assert (await api.get("/tasks-count")).json() == {"count": 0}


async def test_malformed_json_is_a_400(api: Api) -> None:
    response = await api.post(
        "/tasks", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"


async def test_body_that_is_not_an_object_is_a_422(api: Api) -> None:
    response = await api.post("/tasks", json=["title"])
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


async def test_unknown_task_is_404_and_other_organizations_tasks_do_not_exist(
    api: Api, new_api: ApiFactory
) -> None:
    assert (await api.get("/tasks/000000000000000000000000")).status_code == 404
    task = await api.create()
    outsider = await new_api("flows@example.com", org="another-org-" + task["id"])
    response = await outsider.get(f"/tasks/{task['id']}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    for action in ("approve", "reject"):
        assert (await outsider.put(f"/tasks/{task['id']}/{action}")).status_code == 404
    assert (await outsider.put(f"/tasks/{task['id']}", json={"title": "x"})).status_code == 404


async def test_no_credentials_is_401(anonymous: Api) -> None:
    response = await anonymous.get("/tasks")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "unauthorized"
    bad = await anonymous.get("/tasks", headers={"Authorization": "Bearer pt_nope"})
    assert bad.status_code == 401
    assert (await anonymous.get("/tasks", params={"secret": "0" * 64})).status_code == 401
    assert (await anonymous.get("/tasks", params={"secret": "short"})).status_code == 401


# -- deciding -------------------------------------------------------------------


async def test_approver_secret_in_body_approves_with_comment(api: Api, anonymous: Api) -> None:
    task = await api.create()
    response = await anonymous.put(
        f"/tasks/{task['id']}/approve",
        json={"secret": task["approverSecret"], "comment": "Enjoy!"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "approved"
    assert body["decidedBy"] == "lead@example.com"
    assert body["comment"] == "Enjoy!"
    assert body["decidedAt"] is not None
    assert "approverSecret" not in body


async def test_approver_secret_in_query_rejects(api: Api, anonymous: Api) -> None:
    task = await api.create()
    response = await anonymous.put(
        f"/tasks/{task['id']}/reject", params={"secret": task["approverSecret"]}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"


async def test_the_approvers_own_token_decides(api: Api, new_api: ApiFactory) -> None:
    task = await api.create(approver="Lead@Example.com")
    lead = await new_api("lead@example.com")
    response = await lead.put(f"/tasks/{task['id']}/approve", json={"comment": "ok"})
    assert response.status_code == 200
    assert response.json()["decidedBy"] == "lead@example.com"


async def test_only_the_approver_may_decide(api: Api, new_api: ApiFactory, anonymous: Api) -> None:
    task = await api.create()
    # The creator's token is not the approver's.
    response = await api.put(f"/tasks/{task['id']}/approve")
    assert response.status_code == 403
    assert "lead@example.com" in error_of(response)["message"]
    # The requester secret only reads.
    response = await anonymous.put(
        f"/tasks/{task['id']}/approve", params={"secret": task["requesterSecret"]}
    )
    assert response.status_code == 403
    # Another approver's secret does not see the task.
    other = await api.create(approver="someone-else@example.com")
    response = await anonymous.put(
        f"/tasks/{task['id']}/approve", params={"secret": other["approverSecret"]}
    )
    assert response.status_code == 404
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"


async def test_second_decision_gets_409_with_the_task_as_it_stands(
    api: Api, anonymous: Api
) -> None:
    task = await api.create()
    secret = {"secret": task["approverSecret"]}
    first = await anonymous.put(f"/tasks/{task['id']}/reject", json={**secret, "comment": "no"})
    assert first.status_code == 200
    for action in ("approve", "reject"):
        late = await anonymous.put(f"/tasks/{task['id']}/{action}", json=secret)
        assert late.status_code == 409
        error = error_of(late)
        assert error["code"] == "already_decided"
        assert error["task"]["status"] == "rejected"
        assert error["task"]["comment"] == "no"
        assert "approverSecret" not in error["task"]


async def test_history_records_who_when_from_to(api: Api, anonymous: Api) -> None:
    task = await api.create()
    await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"], "comment": "yes"}
    )
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert [(h["from"], h["to"], h["changedBy"]) for h in history] == [
        (None, "pending", "flows@example.com"),
        ("pending", "approved", "lead@example.com"),
    ]
    assert history[1]["comment"] == "yes"
    assert all(h["changedAt"].endswith("Z") for h in history)


async def test_a_decision_after_the_deadline_is_refused_and_the_task_is_due(
    api: Api, anonymous: Api
) -> None:
    task = await api.create(decisionBy="2020-01-01 19:00:00")
    response = await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert response.status_code == 409
    error = error_of(response)
    # The decision finds it past its deadline, or (where the session's deadline
    # scheduler runs) the scheduler has turned it due first.
    assert error["code"] in ("deadline_passed", "already_decided")
    assert error["task"]["status"] == "due"
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "due"
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert [h["to"] for h in history] == ["pending", "due"]


async def test_late_decisions_when_the_task_allows_them(api: Api, anonymous: Api) -> None:
    task = await api.create(decisionBy="2020-01-01 19:00:00", allowLateDecision=True)
    response = await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "approved"


async def test_decide_validates_its_body(api: Api) -> None:
    task = await api.create()
    response = await api.put(f"/tasks/{task['id']}/approve", json={"coment": "typo"})
    assert response.status_code == 422
    assert "coment" in error_of(response)["message"]


# -- editing ----------------------------------------------------------------------


async def test_edit_changes_given_fields_only(api: Api) -> None:
    task = await api.create(description="before")
    response = await api.put(
        f"/tasks/{task['id']}", json={"title": "New title", "decisionBy": later(days=3)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "New title"
    assert body["description"] == "before"
    assert body["decisionBy"] != task["decisionBy"]
    assert body["updatedAt"] >= task["updatedAt"]
    assert "approverSecret" not in body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"approver": "nope"}, "approver"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"decisionBy": "soon"}, "decisionBy"),
        ({"status": "maybe"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"comment": "without a decision"}, "comment"),
    ],
)
async def test_bad_edit_is_a_422_and_changes_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    task = await api.create()
    response = await api.put(f"/tasks/{task['id']}", json=body)
    assert response.status_code == 422, response.text
    assert field in error_of(response)["message"]
    after = (await api.get(f"/tasks/{task['id']}")).json()
    assert after == {k: v for k, v in task.items() if k in PUBLIC_FIELDS}


async def test_a_decided_task_cannot_be_edited_back_to_pending(api: Api, anonymous: Api) -> None:
    task = await api.create()
    await anonymous.put(f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]})
    response = await api.put(f"/tasks/{task['id']}", json={"status": "pending", "title": "x"})
    assert response.status_code == 409
    assert error_of(response)["task"]["status"] == "approved"
    assert (await api.get(f"/tasks/{task['id']}")).json()["title"] == task["title"]


async def test_status_by_edit_is_a_decision_with_the_same_rules(
    api: Api, new_api: ApiFactory
) -> None:
    task = await api.create()
    refused = await api.put(f"/tasks/{task['id']}", json={"status": "approved"})
    assert refused.status_code == 403
    lead = await new_api("lead@example.com")
    response = await lead.put(
        f"/tasks/{task['id']}", json={"status": "approved", "comment": "via edit"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["comment"] == "via edit"
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history[-1]["to"] == "approved"


async def test_secrets_cannot_edit_or_create(api: Api, anonymous: Api) -> None:
    task = await api.create()
    secret = {"secret": task["approverSecret"]}
    response = await anonymous.put(f"/tasks/{task['id']}", params=secret, json={"title": "x"})
    assert response.status_code == 403
    response = await anonymous.post(
        "/tasks",
        params=secret,
        json={"title": "t", "requester": "a@example.com", "approver": "b@example.com"},
    )
    assert response.status_code == 403


async def test_secret_reads_its_holders_task(api: Api, anonymous: Api) -> None:
    task = await api.create()
    for key in ("approverSecret", "requesterSecret"):
        response = await anonymous.get(f"/tasks/{task['id']}", params={"secret": task[key]})
        assert response.status_code == 200
        assert response.json()["id"] == task["id"]


async def test_a_request_key_makes_create_idempotent(api: Api, new_api: ApiFactory) -> None:
    first = await api.post(
        "/tasks",
        json={
            "title": "t",
            "requester": "a@example.com",
            "approver": "b@example.com",
            "requestKey": "run-42:approval",
        },
    )
    assert first.status_code == 201
    again = await api.post(
        "/tasks",
        json={
            "title": "t",
            "requester": "a@example.com",
            "approver": "b@example.com",
            "requestKey": "run-42:approval",
        },
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["approverSecret"] == first.json()["approverSecret"]
    assert (await api.get("/tasks-count")).json()["count"] == 1
    # Keys are per organization.
    other = await new_api("flows@example.com", org="keys-" + first.json()["id"])
    elsewhere = await other.post(
        "/tasks",
        json={
            "title": "t",
            "requester": "a@example.com",
            "approver": "b@example.com",
            "requestKey": "run-42:approval",
        },
    )
    assert elsewhere.status_code == 201


async def test_concurrent_creates_with_one_key_make_one_task(api: Api) -> None:
    body = {
        "title": "t",
        "requester": "a@example.com",
        "approver": "b@example.com",
        "requestKey": "same",
    }
    answers = await asyncio.gather(*(api.post("/tasks", json=body) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
