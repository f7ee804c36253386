"""The fast lane (service/fastlane.py) answers exactly as the FastAPI routes do.

Each scenario runs twice against the same store: once through the app as served
(hot requests take the lane) and once through an app without the lane (FastAPI's
routes answer everything). Status, the headers a client reads, and the body
(ids, times and secrets aside) must be the same.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.domain.principals import create_api_token
from peopletasks.service.app import create_app
from peopletasks.service.fastlane import FastLane
from tests.conftest import settings_for

_VOLATILE = {"id", "createdAt", "updatedAt", "decidedAt", "completedAt", "changedAt"}
_SECRET_KEYS = {"approverSecret", "requesterSecret", "links"}
_HEADERS = ("content-type", "location", "www-authenticate")


def _normal(value: Any, ids: dict[str, str]) -> Any:
    """The body with ids, times and secrets replaced by stable placeholders."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _SECRET_KEYS:
                out[key] = f"<{key}:{type(item).__name__}>"
            elif key in _VOLATILE and isinstance(item, str):
                out[key] = "<id>" if key == "id" else "<time>"
            else:
                out[key] = _normal(item, ids)
        return out
    if isinstance(value, list):
        return [_normal(item, ids) for item in value]
    if isinstance(value, str):
        for real, placeholder in ids.items():
            value = value.replace(real, placeholder)
        return value
    return value


def _seen(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    headers = {name: response.headers.get(name) for name in _HEADERS}
    if headers["location"]:
        headers["location"] = re.sub(r"[0-9a-f]{24}$", "<id>", headers["location"])
    body = _normal(response.json(), ids) if response.content else None
    return {"status": response.status_code, "headers": headers, "body": body}


Scenario = Callable[[httpx.AsyncClient, str], Awaitable[list[httpx.Response]]]


@pytest.fixture(scope="module")
async def both(database_url: str, domain: Domain) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two clients on one store: the served app, and the app without its fast lane."""
    clients = []
    for lane in (True, False):
        app = create_app(settings_for(database_url), domain=domain, fast_lane=lane)
        clients.append(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")
        )
    yield clients
    for client in clients:
        await client.aclose()


async def _same(both: list[httpx.AsyncClient], domain: Domain, scenario: Scenario) -> None:
    seen = []
    for client in both:
        token = await create_api_token(
            domain, "flows@example.com", organization=f"org-{uuid.uuid4().hex[:10]}"
        )
        responses = await scenario(client, token)
        ids: dict[str, str] = {}
        for response in responses:
            if response.content and isinstance(body := response.json(), dict) and "id" in body:
                ids.setdefault(body["id"], "<id>")
        seen.append([_seen(response, ids) for response in responses])
    served, plain = seen
    assert served == plain


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TASK = {"title": "Laptop", "approver": "lead@example.com", "requester": "me@example.com"}


async def test_create_read_and_decide(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        created = await http.post("/people-task/tasks", json=TASK, headers=_bearer(token))
        task = created.json()
        path = f"/people-task/tasks/{task['id']}"
        approver = task["approverSecret"]
        return [
            created,
            await http.get(path, headers=_bearer(token)),
            await http.get(path, params={"secret": task["requesterSecret"]}),
            await http.get(path, params={"secret": approver}),
            await http.put(f"{path}/approve", json={"secret": approver, "comment": "ok"}),
            await http.put(f"{path}/reject", params={"secret": approver}),  # 409, the task
            await http.get(path, headers=_bearer(token)),
        ]

    await _same(both, domain, scenario)


async def test_errors(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        task = (await http.post("/people-task/tasks", json=TASK, headers=_bearer(token))).json()
        path = f"/people-task/tasks/{task['id']}"
        return [
            await http.get("/people-task/tasks/nosuchtask", headers=_bearer(token)),  # 404
            await http.get(path),  # 401 + WWW-Authenticate
            await http.get(path, headers=_bearer("not-a-token")),  # 401
            await http.get(path, params={"secret": "0" * 64}),  # 401
            await http.get(path, params={"secret": task["approverSecret"], "x": "1"}),
            await http.get(f"/people-task/tasks/{'a' * 65}", headers=_bearer(token)),  # 422
            # requester may read, not decide: 403
            await http.put(f"{path}/approve", json={"secret": task["requesterSecret"]}),
            # create: invalid fields and bodies are FastAPI's 422 / 400
            await http.post("/people-task/tasks", json={"title": "x"}, headers=_bearer(token)),
            await http.post(
                "/people-task/tasks", json={**TASK, "colour": "red"}, headers=_bearer(token)
            ),
            await http.post(
                "/people-task/tasks",
                content=b"{not json",
                headers={**_bearer(token), "content-type": "application/json"},
            ),
            await http.post(
                "/people-task/tasks",
                content=b'{"title": "x"}',
                headers={**_bearer(token), "content-type": "text/plain"},
            ),
            # a task secret may not create: 403
            await http.post(
                "/people-task/tasks", json=TASK, params={"secret": task["approverSecret"]}
            ),
            # decide: a bad comment is a 422 naming it; an empty body with a token works
            await http.put(
                f"{path}/approve", json={"secret": task["approverSecret"], "comment": 5}
            ),
            await http.put(f"{path}/approve", json=[1]),
            await http.put(f"{path}/approve", content=b"", headers=_bearer(token)),  # 403
            await http.put(f"{path}/approve", content=b"null", params={"secret": "x"}),
            await http.put(
                f"{path}/approve",
                content=b"",
                params={"secret": task["approverSecret"]},
            ),
        ]

    await _same(both, domain, scenario)


async def test_request_keys_and_deadlines(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        keyed = {**TASK, "requestKey": "run-1", "decisionBy": "2020-01-01 10:00:00"}
        first = await http.post("/people-task/tasks", json=keyed, headers=_bearer(token))
        again = await http.post("/people-task/tasks", json=keyed, headers=_bearer(token))
        path = f"/people-task/tasks/{first.json()['id']}"
        secret = first.json()["approverSecret"]
        return [
            first,  # 201
            again,  # 200, the same task
            await http.put(f"{path}/approve", params={"secret": secret}),  # 409: deadline passed
            await http.get(path, headers=_bearer(token)),  # due
        ]

    await _same(both, domain, scenario)


async def test_plain_hot_requests_never_reach_the_routes(database_url: str, domain: Domain) -> None:
    """The lane answers them itself; what it declines goes on to FastAPI."""
    app = create_app(settings_for(database_url), domain=domain)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as http:
        lane = app.fast_lane
        assert isinstance(lane, FastLane)
        reached: list[str] = []
        routes = lane.app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            reached.append(f"{scope['method']} {scope['path']}")
            await routes(scope, receive, send)

        lane.app = counting
        token = await create_api_token(domain, "flows@example.com", organization="org-lane")
        created = await http.post("/people-task/tasks", json=TASK, headers=_bearer(token))
        task = created.json()
        path = f"/people-task/tasks/{task['id']}"
        assert (await http.get(path, headers=_bearer(token))).status_code == 200
        answer = await http.put(f"{path}/approve", json={"secret": task["approverSecret"]})
        assert answer.status_code == 200
        assert reached == []
        declined = await http.post("/people-task/tasks", json={"title": 1}, headers=_bearer(token))
        assert declined.status_code == 422
        assert await http.get(f"{path}/history", headers=_bearer(token))
        assert reached == ["POST /people-task/tasks", f"GET {path}/history"]
