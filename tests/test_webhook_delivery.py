"""Webhook delivery from the outbox: signed, retried, logged, never blocked by one receiver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from peopletasks.domain import Domain, Status
from peopletasks.domain.decisions import decide_task
from peopletasks.domain.deliveries import list_deliveries
from peopletasks.domain.inputs import TaskCreate, WebhookCreate
from peopletasks.domain.principals import authenticate_token, create_api_token
from peopletasks.domain.tasks import create_task
from peopletasks.domain.webhooks import register_webhook
from peopletasks.service import create_app
from peopletasks.service.app import build_domain
from peopletasks.webhooks.dispatcher import Dispatcher, make_sender
from peopletasks.webhooks.signatures import verify
from peopletasks.webhooks.targets import target_check
from tests.conftest import Api, error_of, new_database_url, settings_for
from tests.support.receiver import Answer, Receiver, eventually
from tests.test_task_fields import EVERY_FIELD, SHOWN

pytestmark = pytest.mark.usefixtures("workers")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def hooked_task(api: Api, url: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    task = await api.create(**fields)
    response = await api.post("/webhooks", json={"url": url, "taskId": task["id"]})
    assert response.status_code == 201, response.text
    return task, response.json()


async def deliveries(api: Api, hook_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/webhooks/{hook_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_decision_arrives_signed_per_standard_webhooks(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task, hook = await hooked_task(api, receiver.url("/signed"))
    assert hook["secret"].startswith("whsec_")
    await anonymous.put(
        f"/tasks/{task['id']}/approve", json={"secret": task["approverSecret"], "comment": "ok"}
    )
    (request,) = await eventually(lambda: receiver.at("/signed"))
    assert request.headers["content-type"] == "application/json"
    payload = Webhook(hook["secret"]).verify(request.body, request.headers)
    verify(hook["secret"], request.headers, request.body)  # and with ours
    assert payload["type"] == "task.approved"
    assert payload["id"] == task["id"]
    assert payload["status"] == "approved"
    assert payload["comment"] == "ok"
    assert "approverSecret" not in payload and "requesterSecret" not in payload
    assert request.headers["webhook-id"].startswith("msg_")
    # A receiver with another secret, or a tampered body, is refused by the library.
    with pytest.raises(Exception):  # noqa: B017, PT011 - the library's own error type
        Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)
    with pytest.raises(Exception):  # noqa: B017, PT011
        Webhook(hook["secret"]).verify(request.body.replace(b"ok", b"no"), request.headers)
    # The webhook secret is shown once: not in reads.
    assert "secret" not in (await api.get(f"/webhooks/{hook['id']}")).json()
    logged = await eventually(lambda: _delivered(api, hook["id"]), timeout=5)
    assert logged[0]["messageId"] == request.headers["webhook-id"]
    assert logged[0]["attemptLog"][0]["statusCode"] == 200


async def test_the_event_carries_the_task_fields_and_no_secrets(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task, _ = await hooked_task(api, receiver.url("/fields"), **EVERY_FIELD)
    await anonymous.put(f"/tasks/{task['id']}/reject", params={"secret": task["approverSecret"]})
    (request,) = await eventually(lambda: receiver.at("/fields"))
    payload = request.json()
    assert payload["type"] == "task.rejected"
    assert {k: payload[k] for k in SHOWN} == SHOWN
    assert payload["completedBy"] == "lead@example.com"
    assert [h["to"] for h in payload["statusHistory"]] == ["pending", "rejected"]
    assert "approverSecret" not in payload and "requesterSecret" not in payload


async def _delivered(api: Api, hook_id: str) -> list[dict[str, Any]] | None:
    found = await deliveries(api, hook_id)
    return found if found and all(d["status"] == "delivered" for d in found) else None


async def test_rejection_fires_too_and_each_webhook_gets_its_own_delivery(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task, _ = await hooked_task(api, receiver.url("/one"))
    await api.post("/webhooks", json={"url": receiver.url("/two"), "taskId": task["id"]})
    await anonymous.put(f"/tasks/{task['id']}/reject", params={"secret": task["approverSecret"]})
    await eventually(lambda: receiver.at("/one") and receiver.at("/two"))
    one, two = receiver.at("/one")[0], receiver.at("/two")[0]
    assert one.json()["type"] == two.json()["type"] == "task.rejected"
    assert one.headers["webhook-id"] == two.headers["webhook-id"]  # the same event


async def test_redirects_are_not_followed(api: Api, anonymous: Api) -> None:
    def moved(path: str, n: int) -> Answer:
        if path == "/moved":
            return Answer(302, {"Location": "/elsewhere"})
        return Answer(200)

    with Receiver(moved) as receiver:
        task, hook = await hooked_task(api, receiver.url("/moved"))
        await anonymous.put(
            f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]}
        )
        logged = await eventually(lambda: _attempted(api, hook["id"]), timeout=10)
        assert logged[0]["attemptLog"][0]["statusCode"] == 302
        assert logged[0]["status"] == "pending"  # to be retried, not followed
        assert receiver.at("/elsewhere") == []


async def _attempted(api: Api, hook_id: str) -> list[dict[str, Any]] | None:
    found = await deliveries(api, hook_id)
    return found if found and found[0]["attemptLog"] else None


async def test_resend_sends_the_same_message_again(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task, hook = await hooked_task(api, receiver.url("/again"))
    await anonymous.put(f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]})
    logged = await eventually(lambda: _delivered(api, hook["id"]))
    response = await api.post(f"/webhooks/{hook['id']}/deliveries/{logged[0]['id']}/resend")
    assert response.status_code == 200, response.text
    first, second = await eventually(
        lambda: receiver.at("/again") if len(receiver.at("/again")) >= 2 else None
    )
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    missing = await api.post(f"/webhooks/{hook['id']}/deliveries/nope/resend")
    assert missing.status_code == 404


async def test_a_deadline_turns_the_task_due_within_a_second_and_fires(
    api: Api, receiver: Receiver
) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    task, _ = await hooked_task(api, receiver.url("/due"), decisionBy=deadline.isoformat())
    (request,) = await eventually(lambda: receiver.at("/due"), timeout=10)
    payload = request.json()
    assert payload["type"] == "task.due"
    assert payload["status"] == "due"
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history[-1]["from"] == "pending"
    assert history[-1]["to"] == "due"
    expired_at = datetime.fromisoformat(history[-1]["changedAt"])
    assert (
        timedelta(0)
        <= expired_at - datetime.fromisoformat(task["decisionBy"])
        < timedelta(seconds=1)
    )
    refused = await api.put(f"/tasks/{task['id']}/approve")
    assert refused.status_code in (403, 409)


async def test_deliveries_list_validates_and_hides_other_organizations(
    api: Api, new_api: Any, receiver: Receiver
) -> None:
    _, hook = await hooked_task(api, receiver.url("/x"))
    assert (
        await api.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 0})
    ).status_code == 422
    stranger = await new_api("s@example.com", org="strangers-" + hook["id"])
    assert (await stranger.get(f"/webhooks/{hook['id']}/deliveries")).status_code == 404


async def test_a_url_with_non_ascii_path_and_query_is_stored_encoded_and_delivered(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    task, hook = await hooked_task(api, receiver.url("/café/naïve?q=ü&name=Zoë"))
    path = "/caf%C3%A9/na%C3%AFve?q=%C3%BC&name=Zo%C3%AB"
    encoded = receiver.url(path)
    assert hook["url"] == encoded
    assert (await api.get(f"/webhooks/{hook['id']}")).json()["url"] == encoded
    await anonymous.put(f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]})
    (request,) = await eventually(
        lambda: receiver.at("/caf%C3%A9/na%C3%AFve?q=%C3%BC&name=Zo%C3%AB")
    )
    assert request.json()["type"] == "task.approved"
    logged = await eventually(lambda: _delivered(api, hook["id"]))
    assert logged[0]["attempts"] == 1


async def test_a_prefect_api_url_is_stored_encoded(api: Api) -> None:
    task = await api.create()
    run = str(uuid.uuid4())
    response = await api.post(
        "/webhooks",
        json={
            "taskId": task["id"],
            "prefect": {"flowRunId": run, "apiUrl": "http://Prefect.test/äpi/"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == f"http://prefect.test/%C3%A4pi/flow_runs/{run}/resume"


async def test_an_api_key_that_cannot_be_a_header_fails_once(
    api: Api, anonymous: Api, receiver: Receiver
) -> None:
    """Not Latin-1 text, so it cannot be written into an HTTP/1.1 header: the delivery
    fails at once instead of being retried for three days, and nothing is sent."""
    task = await api.create()
    prefect = {"flowRunId": str(uuid.uuid4()), "apiUrl": receiver.url("/key"), "apiKey": "ключ"}
    response = await api.post("/webhooks", json={"taskId": task["id"], "prefect": prefect})
    assert response.status_code == 201, response.text
    hook = response.json()
    await anonymous.put(f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]})

    async def failed() -> list[dict[str, Any]] | None:
        found = await deliveries(api, hook["id"])
        return found if found and found[0]["status"] == "failed" else None

    (delivery,) = await eventually(failed)
    assert delivery["attempts"] == 1
    assert "cannot be sent: header authorization is not Latin-1 text" in delivery["lastError"]
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
    ],
)
async def test_private_targets_are_refused_at_registration(
    api: Api, database_url: str, domain: Domain, url: str
) -> None:
    strict = create_app(settings_for(database_url, allow_private_webhooks=False), domain=domain)
    transport = httpx.ASGITransport(app=strict)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        guarded = Api(client, api.token, api.email)
        task = await api.create()
        response = await guarded.post("/webhooks", json={"url": url, "taskId": task["id"]})
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["details"][0]["field"] == "url"
        assert "PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS" in error["message"]
        prefect = await guarded.post(
            "/webhooks",
            json={
                "taskId": task["id"],
                "prefect": {"flowRunId": str(uuid.uuid4()), "apiUrl": url},
            },
        )
        assert prefect.status_code == 422
        assert error_of(prefect)["details"][0]["field"] == "prefect.apiUrl"
    assert (await api.get("/tasks-count")).json()["count"] == 1


async def test_private_targets_are_refused_at_delivery_too(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Registered while allowed (or resolving elsewhere then): the connection is refused."""
    url = new_database_url(request, backend, tmp_path)
    own = build_domain(settings_for(url))
    client = make_sender(allow_private=False)
    dispatcher = Dispatcher(own, client, poll_seconds=0.1)
    running = asyncio.create_task(dispatcher.run())
    try:
        token = await create_api_token(own, "x@example.com")
        user = await authenticate_token(own, token)
        task = await create_task(
            own, user, TaskCreate(title="t", requester="r@example.com", approver="x@example.com")
        )
        allow_all = target_check(allow_private=True)
        hook = await register_webhook(
            own, user, WebhookCreate(taskId=task["id"], url=receiver.url("/private")), allow_all
        )
        await decide_task(own, user, task["id"], Status.APPROVED)

        async def refused() -> list[dict[str, Any]] | None:
            found = await list_deliveries(own, user, hook["id"])
            return found if found and found[0]["attemptLog"] else None

        logged = await eventually(refused, timeout=10)
        assert "refused" in logged[0]["attemptLog"][0]["error"]
        assert logged[0]["attemptLog"][0]["statusCode"] is None
        assert receiver.received == []
    finally:
        running.cancel()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)
        await client.aclose()
        await own.db.dispose()
