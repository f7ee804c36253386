"""What an approval proves: that this person, and nobody else, decided this request,
as it was asked. Each test plays someone who wants to approve in another's name, or
read another's requests (issue 14), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from peopletasks.domain import Domain
from peopletasks.domain.decisions import expire_due_tasks
from peopletasks.domain.principals import Role, dashboard_token, rotate_secret
from peopletasks.errors import ValidationFailed
from peopletasks.timeutil import utcnow
from tests.conftest import Api, ApiFactory, error_of, new_database_url, service_on
from tests.support.receiver import Receiver, eventually

CFO = "cfo@example.com"


@pytest.fixture
async def alice(new_api: ApiFactory) -> Api:
    """Creates the real requests."""
    return await new_api("alice@example.com")


@pytest.fixture
async def mallory(new_api: ApiFactory) -> Api:
    """A user of the same organization who wants the CFO's approvals."""
    return await new_api("mallory@example.com")


@pytest.fixture
async def cfo(new_api: ApiFactory) -> Api:
    return await new_api(CFO)


async def test_a_task_secret_cannot_be_minted_for_someone_elses_task(
    alice: Api, mallory: Api, anonymous: Api
) -> None:
    real = await alice.create(title="Budget 2027", approver=CFO)
    dummy = await mallory.create(title="dummy", approver=CFO, requester="mallory@example.com")
    minted = {"secret": dummy["approverSecret"]}
    # The dummy's approver secret is the dummy's: it neither reads nor decides the real task.
    assert (await anonymous.get(f"/tasks/{real['id']}", params=minted)).status_code == 404
    approve = await anonymous.put(f"/tasks/{real['id']}/approve", json=minted)
    assert approve.status_code == 404
    listed = await anonymous.get("/tasks", params=minted)
    assert [t["id"] for t in listed.json()] == [dummy["id"]]
    task = (await alice.get(f"/tasks/{real['id']}")).json()
    assert task["status"] == "pending"
    assert task["decidedBy"] is None


async def test_a_token_sees_and_changes_only_its_users_tasks(
    alice: Api, mallory: Api, cfo: Api
) -> None:
    real = await alice.create(title="Budget 2027", approver=CFO)
    path = f"/tasks/{real['id']}"
    assert (await mallory.get(path)).status_code == 404
    assert [t["id"] for t in (await mallory.get("/tasks")).json()] == []
    assert (await mallory.get("/tasks-count")).json() == {"count": 0}
    assert (await mallory.put(path, json={"approver": "mallory@example.com"})).status_code == 404
    assert (await mallory.put(f"{path}/approve")).status_code == 404
    assert (await mallory.get(f"{path}/history")).status_code == 404
    assert (await mallory.post(f"{path}/notes", json={"text": "hi"})).status_code == 404
    hook = await mallory.post("/webhooks", json={"taskId": real["id"], "url": "http://x.test/"})
    assert hook.status_code == 422
    assert error_of(hook)["details"][0]["field"] == "taskId"
    # The approver reads and decides it, but does not edit its terms.
    assert (await cfo.get(path)).status_code == 200
    assert (await cfo.put(path, json={"title": "Budget 2028"})).status_code == 403
    assert (await alice.get(path)).json()["title"] == "Budget 2027"


async def test_an_admin_token_sees_the_organization_but_decides_only_as_approver(
    alice: Api, new_api: ApiFactory, domain: Domain
) -> None:
    real = await alice.create(title="Budget 2027", approver=CFO)
    admin = await new_api("ops@example.com", admin=True)
    assert [t["id"] for t in (await admin.get("/tasks")).json()] == [real["id"]]
    edited = await admin.put(f"/tasks/{real['id']}", json={"priority": "high"})
    assert edited.status_code == 200, edited.text
    refused = await admin.put(f"/tasks/{real['id']}/approve")
    assert refused.status_code == 403
    assert "cfo@example.com" in error_of(refused)["message"]


async def test_every_edit_is_in_the_history_and_a_decided_tasks_terms_are_final(
    alice: Api, cfo: Api
) -> None:
    task = await alice.create(title="Budget 2027", approver=CFO, description="v1")
    path = f"/tasks/{task['id']}"
    edited = await alice.put(path, json={"title": "Budget 2027 (revised)", "description": "v1"})
    assert edited.status_code == 200, edited.text
    assert (await cfo.put(f"{path}/approve", json={"comment": "ok"})).status_code == 200
    for change in (
        {"title": "Budget 2027 (final)"},
        {"approver": "alice@example.com"},
        {"decisionBy": "2030-01-01T00:00:00Z"},
        {"customFields": [{"key": "amount", "type": "number", "value": 9}]},
    ):
        refused = await alice.put(path, json=change)
        assert refused.status_code == 409, refused.text
        assert error_of(refused)["code"] == "terms_final"
    # Bookkeeping beside the terms still moves, and notes may be added.
    assert (await alice.put(path, json={"priority": "low"})).status_code == 200
    assert (await alice.post(f"{path}/notes", json={"text": "paid"})).status_code == 201
    history = (await alice.get(f"{path}/history")).json()
    assert [h["event"] for h in history] == ["created", "edited", "approved", "edited"]
    first_edit = history[1]
    assert first_edit["changedBy"] == "alice@example.com"
    # Only what changed: the description was sent as it was.
    assert first_edit["changes"] == {
        "title": {"from": "Budget 2027", "to": "Budget 2027 (revised)"}
    }
    assert history[3]["changes"] == {"priority": {"from": None, "to": "low"}}
    final = (await alice.get(path)).json()
    assert (final["title"], final["approver"], final["status"]) == (
        "Budget 2027 (revised)",
        CFO,
        "approved",
    )


async def test_a_status_edit_is_a_decision_with_its_rules(alice: Api, cfo: Api) -> None:
    task = await alice.create(approver=CFO)
    path = f"/tasks/{task['id']}"
    # Not the approver: 403, whatever the state.
    assert (await alice.put(path, json={"status": "approved"})).status_code == 403
    decided = await cfo.put(path, json={"status": "approved", "comment": "yes"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["comment"] == "yes"
    # Deciding a decided task again is a conflict, not a silent 200 that drops the comment.
    again = await cfo.put(path, json={"status": "approved", "comment": "x"})
    assert again.status_code == 409
    assert error_of(again)["code"] == "already_decided"
    assert (await alice.put(path, json={"status": "approved"})).status_code == 403
    assert (await cfo.get(path)).json()["comment"] == "yes"


async def test_changing_the_approver_voids_the_old_approvers_secret(
    alice: Api, anonymous: Api
) -> None:
    task = await alice.create(approver=CFO)
    old = {"secret": task["approverSecret"]}
    assert (await anonymous.get(f"/tasks/{task['id']}", params=old)).status_code == 200
    moved = await alice.put(f"/tasks/{task['id']}", json={"approver": "ceo@example.com"})
    assert moved.status_code == 200
    assert (await anonymous.put(f"/tasks/{task['id']}/approve", json=old)).status_code == 404
    assert (await alice.get(f"/tasks/{task['id']}")).json()["status"] == "pending"


async def test_webhooks_are_their_registrants(
    alice: Api, mallory: Api, new_api: ApiFactory
) -> None:
    with Receiver() as receiver:
        task = await alice.create()
        hook = await alice.post("/webhooks", json={"taskId": task["id"], "url": receiver.url("/")})
        assert hook.status_code == 201, hook.text
        path = f"/webhooks/{hook.json()['id']}"
        assert (await mallory.get(path)).status_code == 404
        assert (await mallory.get(f"{path}/deliveries")).status_code == 404
        assert (await mallory.delete(path)).status_code == 404
        admin = await new_api("ops@example.com", admin=True)
        assert (await admin.get(path)).status_code == 200
        assert (await alice.delete(path)).status_code == 204


async def test_a_dashboard_token_shows_a_persons_tasks_and_nobody_elses(
    alice: Api, anonymous: Api, domain: Domain
) -> None:
    mine = await alice.create(title="mine to decide", approver=CFO)
    asked = await alice.create(title="asked by me", requester=CFO, approver="ceo@example.com")
    other = await alice.create(title="not mine", approver="ceo@example.com")
    org_id = await _principal_org(alice, domain)
    token = dashboard_token(domain, org_id, CFO, utcnow() + timedelta(days=1))
    shown = {t["id"] for t in (await anonymous.get("/tasks", params={"secret": token})).json()}
    assert shown == {mine["id"], asked["id"]}
    assert (
        await anonymous.get(f"/tasks/{other['id']}", params={"secret": token})
    ).status_code == 404
    decided = await anonymous.put(f"/tasks/{mine['id']}/approve", json={"secret": token})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decidedBy"] == CFO
    # As the requester, it reads but does not decide.
    refused = await anonymous.put(f"/tasks/{asked['id']}/approve", json={"secret": token})
    assert refused.status_code == 403
    expired = dashboard_token(domain, org_id, CFO, utcnow() - timedelta(seconds=1))
    assert (await anonymous.get("/tasks", params={"secret": expired})).status_code == 401
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await anonymous.get("/tasks", params={"secret": forged})).status_code == 401


async def _principal_org(api: Api, domain: Domain) -> int:
    from peopletasks.domain.principals import authenticate_token

    assert api.token is not None
    return (await authenticate_token(domain, api.token)).org_id


async def test_an_expired_link_stays_expired_when_its_task_turns_due(
    alice: Api, domain: Domain
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    task = await alice.create(approver=CFO, decisionBy=past, allowLateDecision=True)
    link = urlsplit(task["links"]["approve"]).path
    assert (await alice.http.get(link)).status_code == 410
    await expire_due_tasks(domain)
    assert (await alice.get(f"/tasks/{task['id']}")).json()["status"] == "due"
    page = await alice.http.get(link)
    assert page.status_code == 410
    assert "expired" in page.text


async def test_the_done_page_of_an_undecided_task_sends_back_to_the_form(alice: Api) -> None:
    task = await alice.create(approver=CFO)
    link = urlsplit(task["links"]["approve"]).path
    done = await alice.http.get(f"{link}/done")
    assert done.status_code == 303
    assert done.headers["location"] == link
    assert "recorded" not in done.text


@pytest.mark.parametrize("value", [10**308, 2**64, -(2**64)], ids=["309 digits", "2^64", "-2^64"])
async def test_whole_numbers_beyond_64_bits_are_refused(alice: Api, value: int) -> None:
    body = {
        "title": "n",
        "requester": "r@example.com",
        "approver": CFO,
        "customFields": [{"key": "n", "type": "number", "value": value}],
    }
    response = await alice.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"][0]["field"].startswith("customFields")


@pytest.mark.parametrize(
    "address",
    ["x,evil@evil.com", "<script>@a.com", "a@a.com;b@b.com", "Ann <ann@a.com>", '"a b"@a.com'],
)
@pytest.mark.parametrize("role", ["approver", "requester"])
async def test_addresses_a_mailer_cannot_send_to_are_refused(
    alice: Api, address: str, role: str
) -> None:
    body = {"title": "t", "requester": "r@example.com", "approver": CFO, role: address}
    response = await alice.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"][0]["field"] == role


async def test_person_wide_secrets_are_off_unless_asked_for(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, domain: Domain
) -> None:
    with pytest.raises(ValidationFailed, match="person-wide secrets are off"):
        await rotate_secret(domain, CFO, Role.APPROVER)
    url = new_database_url(request, backend, tmp_path)
    async with service_on(url, person_secrets=True) as (on, api):
        first = await api.create(approver=CFO)
        second = await api.create(approver=CFO)
        # Appmixer's semantics: one secret per person and role, for all their tasks.
        assert first["approverSecret"] == second["approverSecret"]
        secret = {"secret": first["approverSecret"]}
        listed = await api.http.get("/people-task/tasks", params=secret)
        assert {t["id"] for t in listed.json()} == {first["id"], second["id"]}
        new = await rotate_secret(on, CFO, Role.APPROVER, organization="own-store")
        assert new != first["approverSecret"]
        assert (await api.http.get("/people-task/tasks", params=secret)).status_code == 401
        listed = await api.http.get("/people-task/tasks", params={"secret": new})
        assert listed.status_code == 200
        assert (await api.create(approver=CFO))["approverSecret"] == new


@pytest.mark.usefixtures("workers")
async def test_history_and_webhooks_name_the_real_decider(alice: Api, cfo: Api) -> None:
    with Receiver() as receiver:
        task = await alice.create(approver=CFO)
        hook = await alice.post("/webhooks", json={"taskId": task["id"], "url": receiver.url("/")})
        assert hook.status_code == 201
        assert (await cfo.put(f"/tasks/{task['id']}/approve")).status_code == 200
        received = await eventually(lambda: receiver.at("/") or None)
        assert received[0].json()["decidedBy"] == CFO
        history = (await alice.get(f"/tasks/{task['id']}/history")).json()
        assert history[-1]["changedBy"] == CFO
