"""Every request takes one path: Starlette's middleware, the app's exception handlers,
then a route of the app's own router (service/routing.py).

`ApiRoute` reads a route's arguments by a plan made once instead of FastAPI's
`solve_dependencies`; with a dependency override FastAPI solves them. Each scenario
runs through both on the same store, and must answer the same: status, the
headers a client reads, and the body (ids, times and secrets aside).
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peopletasks.domain import Domain
from peopletasks.domain.principals import authenticate_token, create_api_token
from peopletasks.service.app import build_domain, create_app
from peopletasks.service.auth import current_principal, get_domain
from peopletasks.service.routing import is_json
from tests.conftest import TEST_KEY, settings_for
from tests.support.asgi import call, http_scope
from tests.support.server import ServiceProcess, cli, read_answer, service_env

_VOLATILE = {
    "id",
    "createdAt",
    "updatedAt",
    "decidedAt",
    "decisionMade",
    "completedAt",
    "changedAt",
    "respondedAt",
}
_SECRET_KEYS = {
    "approverSecret",
    "approverSecrets",
    "requesterSecret",
    "links",
    "approve",
    "reject",
    "expiresAt",
}
_HEADERS = ("content-type", "location", "www-authenticate")

TASK = {"title": "Laptop", "approver": "lead@example.com", "requester": "me@example.com"}


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


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


@pytest.fixture(scope="module")
async def both(database_url: str, domain: Domain) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two clients on one store: the app as served, and the app where an override that
    changes nothing hands every route's parameters to FastAPI's `solve_dependencies`."""
    served = create_app(settings_for(database_url), domain=domain)
    by_fastapi = create_app(settings_for(database_url), domain=domain)
    by_fastapi.dependency_overrides[get_domain] = get_domain
    clients = [_client(served), _client(by_fastapi)]
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
    served, by_fastapi = seen
    assert served == by_fastapi


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
            await http.get(f"{path}/history", headers=_bearer(token)),
            await http.post(f"{path}/notes", json={"text": "n", "secret": approver}),
            await http.get(f"{path}/notes", params={"secret": approver, "limit": 1}),
        ]

    await _same(both, domain, scenario)


async def test_errors(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        task = (await http.post("/people-task/tasks", json=TASK, headers=_bearer(token))).json()
        path = f"/people-task/tasks/{task['id']}"
        json_type = {**_bearer(token), "content-type": "application/json"}
        return [
            await http.get("/people-task/tasks/nosuchtask", headers=_bearer(token)),  # 404
            await http.get(path),  # 401 + WWW-Authenticate
            await http.get(path, headers=_bearer("not-a-token")),  # 401
            await http.get(path, params={"secret": "0" * 64}),  # 401
            await http.get(path, params={"secret": "0" * 201}),  # 422: too long
            await http.get(f"/people-task/tasks/{'a' * 65}", headers=_bearer(token)),  # 422
            # requester may read, not decide: 403
            await http.put(f"{path}/approve", json={"secret": task["requesterSecret"]}),
            # create: invalid fields and bodies
            await http.post("/people-task/tasks", json={"title": "x"}, headers=_bearer(token)),
            await http.post(
                "/people-task/tasks", json={**TASK, "colour": "red"}, headers=_bearer(token)
            ),
            await http.post("/people-task/tasks", content=b"{not json", headers=json_type),
            await http.post("/people-task/tasks", content=b"[1, 2]", headers=json_type),
            await http.post("/people-task/tasks", content=b"", headers=json_type),
            await http.post(
                "/people-task/tasks",
                content=b'{"title": "x"}',
                headers={**_bearer(token), "content-type": "text/plain"},
            ),
            # JSON without a content type is not read as JSON (FastAPI's rule): 422
            await http.post(
                "/people-task/tasks",
                content=b'{"title": "x", "approver": "a@x.com", "requester": "b@x.com"}',
                headers=_bearer(token),
            ),
            await http.post(
                "/people-task/tasks",
                json=TASK,
                headers={**_bearer(token), "content-type": "application/vnd.api+json"},
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
                f"{path}/reject",
                content=b'{"comment": "no"}',
                params={"secret": task["approverSecret"]},
            ),
            await http.put(
                f"{path}/approve", content=b"", params={"secret": task["approverSecret"]}
            ),
        ]

    await _same(both, domain, scenario)


async def test_query_parameters(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        auth = _bearer(token)
        task = (await http.post("/people-task/tasks", json=TASK, headers=auth)).json()
        path = f"/people-task/tasks/{task['id']}"
        tasks = "/people-task/tasks"
        return [
            await http.get(tasks, headers=auth),
            await http.get(
                tasks,
                params=[("filter", "status:pending"), ("filter", "title:Laptop")],
                headers=auth,
            ),
            await http.get(tasks, params={"sort": "title:-1", "limit": "1"}, headers=auth),
            await http.get(tasks, params={"projection": "title,status"}, headers=auth),
            await http.get(tasks, params={"limit": "0"}, headers=auth),  # 422 limit
            await http.get(tasks, params={"limit": "x", "offset": "-1"}, headers=auth),
            await http.get(tasks, params={"role": "boss"}, headers=auth),  # 422 role
            await http.get(tasks, params={"filter": ""}, headers=auth),
            await http.get(tasks, params={"colour": "red"}, headers=auth),  # unknown
            await http.get(
                "/people-task/tasks-count", params={"filter": "status:pending"}, headers=auth
            ),
            await http.get(f"{path}/wait", params={"timeout": "0"}, headers=auth),
            await http.get(f"{path}/wait", params={"timeout": "61"}, headers=auth),
            await http.get(f"{path}/notes", params={"offset": "x"}, headers=auth),
            await http.get(f"{path}/links", headers=auth),
            await http.get(tasks, params={"secret": task["approverSecret"], "limit": "2"}),
        ]

    await _same(both, domain, scenario)


async def test_edits_and_webhooks(both: list[httpx.AsyncClient], domain: Domain) -> None:
    async def scenario(http: httpx.AsyncClient, token: str) -> list[httpx.Response]:
        auth = _bearer(token)
        task = (await http.post("/people-task/tasks", json=TASK, headers=auth)).json()
        path = f"/people-task/tasks/{task['id']}"
        hook = await http.post(
            "/people-task/webhooks",
            json={"taskId": task["id"], "url": "http://127.0.0.1:9/hook"},
            headers=auth,
        )
        hook_path = f"/people-task/webhooks/{hook.json()['id']}"
        return [
            await http.put(path, json={"title": "Laptop 2", "priority": "high"}, headers=auth),
            await http.put(path, json={"priority": "urgent"}, headers=auth),
            await http.put(path, content=b"", headers=auth),
            await http.post("/people-task/webhooks", json={"taskId": task["id"]}, headers=auth),
            await http.get(hook_path, headers=auth),
            await http.get(f"{hook_path}/deliveries", params={"limit": "5"}, headers=auth),
            await http.post(f"{hook_path}/deliveries/{'d' * 65}/resend", headers=auth),
            await http.post(f"{hook_path}/deliveries/nosuch/resend", headers=auth),
            await http.delete(hook_path, headers=auth),
            await http.get(hook_path, headers=auth),
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


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        "application/jsonx",
        "text/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application",
    ],
)
def test_a_body_is_json_when_fastapi_reads_it_as_json(content_type: str | None) -> None:
    """`is_json` holds to the rule FastAPI's own handler applies."""
    import email.message

    expected = False
    if content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        if message.get_content_maintype() == "application":
            sub = message.get_content_subtype()
            expected = sub == "json" or sub.endswith("+json")
    assert is_json(content_type) is expected


# -- one path for every request -----------------------------------------------------


def _sample_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nosuch", path)


async def test_a_middleware_runs_for_every_endpoint_and_page(
    database_url: str, domain: Domain
) -> None:
    app = create_app(settings_for(database_url), domain=domain)

    class RequestId:
        """Numbers each answer in an `X-Request-Id` header."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app
            self.count = 0

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            self.count += 1
            number = str(self.count).encode()

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-request-id", number)]
                await send(message)

            await self.app(scope, receive, sending)

    app.add_middleware(RequestId)
    token = await create_api_token(domain, "flows@example.com", organization="org-middleware")
    async with _client(app) as http:
        task = (await http.post("/people-task/tasks", json=TASK, headers=_bearer(token))).json()
        operations = [
            (method.upper(), path.replace("{id}", task["id"]))
            for path, item in (await http.get("/openapi.json")).json()["paths"].items()
            for method in item
        ]
        assert len(operations) == 25  # 24 of the API and /healthz
        operations = [(method, _sample_path(path)) for method, path in operations]
        operations += [
            ("GET", "/people-task/act/not-a-token"),
            ("HEAD", "/people-task/act/not-a-token"),
            ("POST", "/people-task/act/not-a-token"),
            ("GET", "/people-task/act/not-a-token/done"),
            ("GET", "/people-task/dashboard"),
            ("HEAD", "/people-task/dashboard?secret=not-a-secret"),
            ("POST", "/people-task/dashboard"),
            ("GET", "/people-task/act/not-a-token/reassign"),
            ("POST", "/people-task/act/not-a-token/reassign"),
            ("GET", "/people-task/act/not-a-token/passed"),
            ("GET", "/no/such/path"),
            ("GET", "/openapi.json"),
        ]
        for method, path in operations:
            for headers in ({}, _bearer(token)):
                kwargs: dict[str, Any] = {"headers": headers}
                if method in ("POST", "PUT"):
                    kwargs["json"] = {}
                if path.endswith("/wait"):
                    kwargs["params"] = {"timeout": "0"}
                response = await http.request(method, path, **kwargs)
                assert response.headers.get("x-request-id"), (method, path, response.status_code)
                assert response.status_code < 500, (method, path, response.text)


async def test_dependency_overrides_apply_to_the_busiest_routes_too(
    database_url: str, domain: Domain, tmp_path: Path
) -> None:
    """The store (`get_domain`) and the caller (`current_principal`) can be replaced for
    every route, reading, creating and deciding included."""
    other_url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    from peopletasks.store import migrate

    migrate(other_url)
    other = build_domain(settings_for(other_url))
    try:
        app = create_app(settings_for(database_url), domain=domain)
        other_token = await create_api_token(other, "flows@example.com", organization="o")
        async with _client(app) as http:
            # A token of the other store is unknown to this one ...
            created = await http.post("/people-task/tasks", json=TASK, headers=_bearer(other_token))
            assert created.status_code == 401
            # ... until the store is overridden: create, read and decide go there.
            app.dependency_overrides[get_domain] = lambda: other
            created = await http.post("/people-task/tasks", json=TASK, headers=_bearer(other_token))
            assert created.status_code == 201, created.text
            task = created.json()
            path = f"/people-task/tasks/{task['id']}"
            assert (await http.get(path, headers=_bearer(other_token))).status_code == 200
            approved = await http.put(
                f"{path}/approve", json={"secret": task["approverSecret"], "comment": "ok"}
            )
            assert approved.status_code == 200, approved.text
            app.dependency_overrides.clear()
            assert (await http.get(path, headers=_bearer(other_token))).status_code == 401

            # The caller overridden: no credentials needed.
            own_token = await create_api_token(domain, "ops@example.com", organization="o2")
            ops = await authenticate_token(domain, own_token)
            app.dependency_overrides[current_principal] = lambda: ops
            created = await http.post("/people-task/tasks", json=TASK)
            assert created.status_code == 201, created.text
            assert created.json()["createdBy"] == "ops@example.com"
            read = await http.get(f"/people-task/tasks/{created.json()['id']}")
            assert read.status_code == 200
    finally:
        await other.db.dispose()


# -- every request gets an answer, whatever its body ----------------------------------


_JSON = (b"content-type", b"application/json")


@pytest.mark.parametrize(
    ("headers", "messages", "statuses"),
    [
        # Content-Length: 0: create misses its body, approve needs none (no such task)
        ([(b"content-length", b"0")], [{"type": "http.request", "body": b""}], (422, 404)),
        # no length at all: nothing to wait for
        ([], [], (422, 404)),
        # not JSON
        (
            [_JSON, (b"content-length", b"3")],
            [{"type": "http.request", "body": b"{x}"}],
            (400, 400),
        ),
        # JSON without a content type: FastAPI's rule, not read as JSON
        ([(b"content-length", b"2")], [{"type": "http.request", "body": b"{}"}], (422, 422)),
        # in chunks
        (
            [_JSON, (b"transfer-encoding", b"chunked")],
            [
                {"type": "http.request", "body": b"{", "more_body": True},
                {"type": "http.request", "body": b"}"},
            ],
            (422, 404),
        ),
    ],
)
async def test_a_create_is_answered_whatever_its_body(
    database_url: str,
    domain: Domain,
    headers: list[tuple[bytes, bytes]],
    messages: list[Message],
    statuses: tuple[int, int],
) -> None:
    app = create_app(settings_for(database_url), domain=domain)
    token = await create_api_token(domain, "flows@example.com", organization="org-bodies")
    auth = (b"authorization", f"Bearer {token}".encode())
    requests = (("POST", "/people-task/tasks"), ("PUT", "/people-task/tasks/nosuch/approve"))
    for (method, path), status in zip(requests, statuses, strict=True):
        answer = await call(app, http_scope(method, path, [auth, *headers]), messages)
        assert answer.status == status, (method, answer.body)


async def test_a_client_that_leaves_mid_body_ends_its_request(
    database_url: str, domain: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody to answer: the request ends at once, and nothing is logged as an error."""
    app = create_app(settings_for(database_url), domain=domain)
    token = await create_api_token(domain, "flows@example.com", organization="org-gone")
    scope = http_scope(
        "POST",
        "/people-task/tasks",
        [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
    )
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"title": "x', "more_body": True},
        {"type": "http.disconnect"},
    ]
    await call(app, scope, messages)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_thousands_of_empty_posts_each_get_their_answer(tmp_path: Path) -> None:
    """Over a real `peopletasks serve`: 3,000 `POST /tasks` with `Content-Length: 0`, on
    keep-alive connections and on connections of their own, each answered (422)."""
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "ops@example.com", env=env).splitlines()[-1]
    request = (
        f"POST /people-task/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with ServiceProcess(env, "--no-access-log") as service:
        answered = 0
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
                for _ in range(500):
                    sock.sendall(request)
                    assert read_answer(sock).startswith(b"HTTP/1.1 422 ")
                    answered += 1
        for _ in range(1000):
            with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
                sock.sendall(request)
                assert read_answer(sock).startswith(b"HTTP/1.1 422 ")
                answered += 1
        assert answered == 3000
        assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
