"""Appmixer's own People Task components (RequestApproval, RequestApprovalEmail), call
for call (tests/support/appmixer.py), through the gateway docs/api.md describes, on
both stores: from the task's creation, through the mailed dashboard link, to the
webhook that fires the component's output port, once. And the seven things that
stopped them before (the README's "Appmixer compatibility")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.domain.dashboard import dashboard_link
from peopletasks.domain.principals import authenticate_token
from peopletasks.service.workers import BackgroundWorkers
from peopletasks.timeutil import utcnow
from tests.conftest import Api, ApiFactory, error_of, service_on, settings_for
from tests.support.appmixer import (
    OUTPUT_OPTIONS,
    ComponentError,
    Gateway,
    RequestApproval,
    RequestApprovalEmail,
)
from tests.support.dashboard import Visitor
from tests.support.receiver import Receiver, eventually


@pytest.fixture(scope="module", autouse=True)
async def background(database_url: str, domain: Domain) -> AsyncIterator[None]:
    """The service's dispatcher and deadline scheduler, for this module only (the
    session's `workers`, where already running, serve instead): modules that run later
    keep a store without a scheduler."""
    if domain.handoff is not None:
        yield
        return
    running = BackgroundWorkers(domain, settings_for(database_url))
    await running.start()
    try:
        yield
    finally:
        await running.stop()


TASK = {
    "title": "Vacation 1-5 Dec",
    "description": "Ann asks for five days off.",
    "requester": "Ann.Smith@Example.com",
    "approver": "Lead@Example.com",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def later(**delta: float) -> str:
    return (utcnow() + timedelta(**delta)).isoformat()


async def delivered_once(api: Api, receiver: Receiver, webhook_id: str, path: str) -> Any:
    """The one body the webhook received, once its one delivery is logged delivered."""
    log = await eventually(lambda: _delivered(api, webhook_id))
    assert len(log) == 1, log
    (request,) = receiver.at(path)
    assert request.headers["webhook-id"] == log[0]["messageId"]
    return request.json()


async def _delivered(api: Api, webhook_id: str) -> list[dict[str, Any]] | None:
    response = await api.get(f"/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    log = list(response.json())
    return log if log and all(d["status"] == "delivered" for d in log) else None


async def test_request_approval_email_from_creation_to_its_output_port(
    api: Api, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    component = RequestApprovalEmail(Gateway(http, api.token or ""), receiver.url("/flow"))
    await component.receive_task({**TASK, "decisionBy": later(days=3)})
    # It asked for the task, the webhook, and the dashboard, and mailed both people.
    assert [call for call, _ in component.gateway.calls] == ["POST", "POST", "GET"]
    approver_mail, requester_mail = component.mails
    assert (approver_mail.to, requester_mail.to) == ("Lead@Example.com", "Ann.Smith@Example.com")
    link = approver_mail.template_data["task_dashboard_confirm"]
    assert link.startswith("http://127.0.0.1:8000/people-task/dashboard?taskId=")
    task_id = parse_qs(urlsplit(link).query)["taskId"][0]
    assert (await api.get(f"/tasks/{task_id}")).json()["status"] == "pending"

    # The approver opens the mailed link, adds a comment and confirms.
    async with Visitor(http._transport) as browser:
        page = await browser.open(link)
        assert page.status_code == 200 and "Vacation 1-5 Dec" in page.text
        done = await browser.decide(page, None, comment="Enjoy")
        assert "Your decision is recorded" in done.text

    (webhook_id,) = component.state
    data = await delivered_once(api, receiver, webhook_id, "/flow")
    assert component.receive_webhook(data) == {"status": "success"}
    ((port, out),) = component.sent
    assert port == "approved"
    assert (out["taskId"], out["status"], out["comment"]) == (task_id, "approved", "Enjoy")
    assert out["decisionMade"] is not None and out["decisionMade"] == out["decidedAt"]
    assert (out["approver"], out["requester"]) == ("Lead@Example.com", "Ann.Smith@Example.com")
    assert set(OUTPUT_OPTIONS) <= set(out)

    # Stopping the flow deletes its registration, by the id it kept.
    await component.stop()
    assert (await api.get(f"/webhooks/{webhook_id}")).status_code == 404


async def test_request_approval_outputs_the_task_id_on_every_port(
    api: Api, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    component = RequestApproval(Gateway(http, api.token or ""), receiver.url("/ports"))
    await component.receive_task({**TASK, "decisionBy": later(days=3)})
    ((port, created),) = component.sent
    assert port == "created" and len(created["id"]) == 24
    assert created["approverSecret"] and created["decisionMade"] is None
    (webhook_id,) = component.state
    assert webhook_id != "undefined"
    rejected = await api.http.put(
        f"/people-task/tasks/{created['id']}/reject",
        json={"secret": created["approverSecret"], "comment": "No"},
    )
    assert rejected.status_code == 200
    data = await delivered_once(api, receiver, webhook_id, "/ports")
    component.receive_webhook(data)
    port, out = component.sent[-1]
    assert (port, out["id"], out["status"]) == ("rejected", created["id"], "rejected")
    assert set(OUTPUT_OPTIONS) <= set(out) and out["decisionMade"] is not None
    await component.stop()


async def test_a_task_already_due_when_the_component_registers_is_heard_once(
    api: Api, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Created past its deadline, the task turns due before the component registers its
    webhook: the registration hears `due`, once."""
    token = api.token or ""
    created = await api.create(**TASK, decisionBy=later(minutes=-1))
    await eventually(
        lambda: _status_is(api, created["id"], "due")
    )  # the deadline scheduler at work
    component = RequestApprovalEmail(Gateway(http, token), receiver.url("/late"))
    hook = await component.gateway.call_appmixer(
        "/plugins/appmixer/utils/tasks/webhooks",
        "POST",
        {"url": component.webhook_url, "taskId": created["taskId"]},
    )
    assert hook["status"] == "due"
    data = await delivered_once(api, receiver, hook["webhookId"], "/late")
    component.receive_webhook(data)
    ((port, out),) = component.sent
    assert (port, out["type"], out["taskId"]) == ("due", "task.due", created["id"])
    assert out["decisionMade"] is None


async def test_the_component_on_a_task_created_past_its_deadline_hears_due_once(
    api: Api, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """The same, as the component runs it: created and registered at once, whichever
    comes first (the scheduler or the registration), one delivery of `due`."""
    component = RequestApprovalEmail(Gateway(http, api.token or ""), receiver.url("/race"))
    await component.receive_task({**TASK, "decisionBy": later(seconds=-30)})
    (webhook_id,) = component.state
    data = await delivered_once(api, receiver, webhook_id, "/race")
    component.receive_webhook(data)
    assert [port for port, _ in component.sent] == ["due"]


async def _status_is(api: Api, task_id: str, status: str) -> bool:
    return bool((await api.get(f"/tasks/{task_id}")).json()["status"] == status)


async def test_a_webhook_registered_on_a_decided_task_hears_its_status_once(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task = await api.create()
    first = await api.post("/webhooks", json={"url": receiver.url("/first"), "taskId": task["id"]})
    decided = await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert decided.status_code == 200
    late = await api.post("/webhooks", json={"url": receiver.url("/late"), "taskId": task["id"]})
    assert late.status_code == 201 and late.json()["status"] == "approved"
    body = await delivered_once(api, receiver, late.json()["webhookId"], "/late")
    assert (body["type"], body["status"], body["taskId"]) == (
        "task.approved",
        "approved",
        task["id"],
    )
    # The webhook that was there when it happened heard it then, once; nothing more.
    await delivered_once(api, receiver, first.json()["id"], "/first")
    assert len(receiver.at("/late")) == 1


# -- the seven items, one by one ------------------------------------------------------


async def test_ids_under_appmixers_names(api: Api, anonymous: Api) -> None:
    """1, 4, 5: `taskId` in every view of a task, `decisionMade` beside `decidedAt`;
    2: `webhookId` beside the webhook's `id`."""
    task = await api.create()
    assert task["taskId"] == task["id"] and task["decisionMade"] is None
    decided = await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert decided.json()["decisionMade"] == decided.json()["decidedAt"] is not None
    listed = await api.get("/tasks", params={"projection": "taskId,decisionMade"})
    assert listed.json() == [
        {"id": task["id"], "taskId": task["id"], "decisionMade": decided.json()["decidedAt"]}
    ]
    found = await api.get("/tasks", params={"filter": f"taskId:{task['id']}"})
    assert [t["id"] for t in found.json()] == [task["id"]]
    hook = (
        await api.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "taskId": task["id"]})
    ).json()
    assert hook["webhookId"] == hook["id"]
    assert (await api.get(f"/webhooks/{hook['webhookId']}")).json()["webhookId"] == hook["id"]
    assert (await api.delete(f"/webhooks/{hook['webhookId']}")).status_code == 204
    schema = (await api.http.get("/openapi.json")).json()["components"]["schemas"]
    assert {"taskId", "decisionMade"} <= set(schema["TaskPublic"]["properties"])
    assert "webhookId" in schema["WebhookCreated"]["properties"]


async def test_the_dashboard_url(api: Api, anonymous: Api, tmp_path: Any) -> None:
    """3: where RequestApprovalEmail's links go; it takes a credential like every call."""
    answer = await api.get("/dashboard-url")
    assert answer.json() == {"dashboardUrl": "http://127.0.0.1:8000/people-task/dashboard"}
    refused = await anonymous.get("/dashboard-url")
    assert refused.status_code == 401 and error_of(refused)["code"] == "unauthorized"
    from peopletasks.store import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    migrate(url)
    configured = "https://tasks.example.com/approvals/dashboard"
    async with service_on(url, dashboard_url=configured) as (domain, own):
        assert (await own.get("/dashboard-url")).json() == {"dashboardUrl": configured}
        org_id = (await authenticate_token(domain, own.token or "")).org_id
        link = dashboard_link(domain, org_id, "Lead@Example.com", utcnow() + timedelta(days=1))
        assert link.startswith(f"{configured}?secret=pd_")
        # Served here at /people-task/dashboard (a gateway maps the path); the cookie is
        # kept to the path people's browsers see.
        async with Visitor(own.http._transport) as browser:
            await browser.open(f"/people-task/dashboard?{urlsplit(link).query}")
            assert "Path=/approvals/dashboard" in browser.landings[0].headers["set-cookie"]
            assert "Secure" in browser.landings[0].headers["set-cookie"]


async def test_addresses_are_kept_as_given_and_compared_without_case(
    api: Api, new_api: ApiFactory, anonymous: Api, http: httpx.AsyncClient, domain: Domain
) -> None:
    """7: shown as given everywhere; who may read and decide, filters, secrets, links and
    dashboard tokens compare them without regard to case."""
    task = await api.create(approver="Lead@Example.COM", requester=" Ann.Smith@Example.com ")
    assert (task["approver"], task["requester"]) == ("Lead@Example.COM", "Ann.Smith@Example.com")
    assert (await api.get(f"/tasks/{task['id']}")).json()["approver"] == "Lead@Example.COM"
    for value in ("lead@example.com", "LEAD@EXAMPLE.COM"):
        found = await api.get("/tasks", params={"filter": f"approver:{value}"})
        assert [t["approver"] for t in found.json()] == ["Lead@Example.COM"], value
    by_requester = await api.get("/tasks", params={"filter": "requester:ann.smith@example.com"})
    assert len(by_requester.json()) == 1
    # The approver's token (its user in lower case) reads it and decides it.
    lead = await new_api("LEAD@example.com")
    assert (await lead.get(f"/tasks/{task['id']}")).status_code == 200
    ann = await new_api("ann.smith@example.com")
    assert [t["id"] for t in (await ann.get("/tasks", params={"role": "requester"})).json()] == [
        task["id"]
    ]
    # A dashboard token for the address in any case shows it.
    org_id = (await authenticate_token(domain, api.token or "")).org_id
    async with Visitor(http._transport) as browser:
        page = await browser.open(
            dashboard_link(domain, org_id, "lead@EXAMPLE.com", utcnow() + timedelta(days=1))
        )
        assert "Requested by Ann.Smith@Example.com" in page.text
    # The signed links and the secret decide it.
    async with Visitor(http._transport) as browser:
        page = await browser.open(task["links"]["approve"].replace("http://127.0.0.1:8000", ""))
        assert page.status_code == 200 and "Lead@Example.COM" in page.text
    decided = await lead.put(f"/tasks/{task['id']}/approve", json={"comment": "ok"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["approver"] == "Lead@Example.COM"
    # Only the case changed: an edit of what is shown, recorded (and final once decided).
    other = await api.create(approver="lead@example.com")
    edited = await api.put(f"/tasks/{other['id']}", json={"approver": "LEAD@example.com"})
    assert edited.json()["approver"] == "LEAD@example.com"
    still = await anonymous.get(f"/tasks/{other['id']}", params={"secret": other["approverSecret"]})
    assert still.status_code == 200  # the same person: the secret still speaks for them
    history = (await api.get(f"/tasks/{other['id']}/history")).json()
    assert history[-1]["changes"] == {
        "approver": {"from": "lead@example.com", "to": "LEAD@example.com"}
    }


async def test_requester_and_approver_differing_only_in_case_are_one_person(
    api: Api, new_api: ApiFactory
) -> None:
    with_self = {"allowSelfApproval": True}  # one person: their own request
    task = await api.create(approver="Sam@Example.com", requester="sam@example.com", **with_self)
    sam = await new_api("sam@example.com")
    listed = await sam.get("/tasks")
    assert [t["id"] for t in listed.json()] == [task["id"]]


async def test_a_component_that_reads_ids_we_lacked_fails_as_it_would(
    api: Api, http: httpx.AsyncClient
) -> None:
    """The port is faithful: an answer without `taskId` stops RequestApprovalEmail before
    it registers anything (what 8 of 44 steps passing looked like)."""

    class Stripped(Gateway):
        async def call_appmixer(self, end_point: str, method: str, body: Any = None) -> Any:
            answer = await super().call_appmixer(end_point, method, body)
            if isinstance(answer, dict):
                answer.pop("taskId", None)
            return answer

    component = RequestApprovalEmail(Stripped(http, api.token or ""), "http://127.0.0.1:9/x")
    with pytest.raises(ComponentError, match="Missing task ID"):
        await component.receive_task({**TASK, "decisionBy": later(days=1)})
    assert component.state == {} and component.mails == []
