"""Registering, reading and deleting webhooks (delivery is tested elsewhere)."""

from __future__ import annotations

import pytest

from tests.conftest import Api, ApiFactory, error_of

URL = "https://hooks.example.com/flows/551945f2?correlationId=ee325876"


async def test_register_get_delete(api: Api, anonymous: Api) -> None:
    task = await api.create()
    response = await api.post("/webhooks", json={"url": URL, "taskId": task["id"]})
    assert response.status_code == 201, response.text
    hook = response.json()
    assert hook["url"] == URL and hook["taskId"] == task["id"] and hook["status"] == "pending"
    secret = hook.pop("secret")
    assert secret.startswith("whsec_")
    assert (await api.get(f"/webhooks/{hook['id']}")).json() == hook
    await anonymous.put(f"/tasks/{task['id']}/approve", params={"secret": task["approverSecret"]})
    assert (await api.get(f"/webhooks/{hook['id']}")).json()["status"] == "approved"
    assert (await api.delete(f"/webhooks/{hook['id']}")).status_code == 204
    assert (await api.get(f"/webhooks/{hook['id']}")).status_code == 404
    assert (await api.delete(f"/webhooks/{hook['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "http://example.com:99999/"}, "url"),
        ({"url": "http://exa¡mple.test/café"}, "url"),  # a host with no IDNA form
        ({}, "url"),
        ({"url": URL, "taskId": "000000000000000000000000"}, "taskId"),
        ({"url": URL, "events": ["approved"]}, "events"),
    ],
)
async def test_bad_registration_is_a_422_naming_the_field(
    api: Api, body: dict[str, str], field: str
) -> None:
    task = await api.create()
    response = await api.post("/webhooks", json={"taskId": task["id"], **body})
    assert response.status_code == 422, response.text
    assert field in error_of(response)["message"]


async def test_webhooks_of_other_organizations_do_not_exist(api: Api, new_api: ApiFactory) -> None:
    task = await api.create()
    hook = (await api.post("/webhooks", json={"url": URL, "taskId": task["id"]})).json()
    stranger = await new_api("x@example.com", org="hooks-" + task["id"])
    assert (await stranger.get(f"/webhooks/{hook['id']}")).status_code == 404
    assert (await stranger.delete(f"/webhooks/{hook['id']}")).status_code == 404
    response = await stranger.post("/webhooks", json={"url": URL, "taskId": task["id"]})
    assert response.status_code == 422
    assert (await api.get(f"/webhooks/{hook['id']}")).status_code == 200


async def test_secrets_cannot_manage_webhooks(api: Api, anonymous: Api) -> None:
    task = await api.create()
    response = await anonymous.post(
        "/webhooks",
        params={"secret": task["approverSecret"]},
        json={"url": URL, "taskId": task["id"]},
    )
    assert response.status_code == 403
