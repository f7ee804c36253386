"""What a request says is checked before it is acted on: bodies that are not JSON (400),
JSON without its content type, query parameters a path does not declare and control
characters in ids or parameters (422); nothing changes (service/routing.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, Api, error_of
from tests.support.server import ServiceProcess, cli, service_env

TASK = {"title": "Laptop", "approver": "lead@example.com", "requester": "me@example.com"}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"title": "caf\xe9"}', "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "depth"),
        (b'{"title": "x",}', "not valid JSON"),
    ],
)
async def test_a_body_that_is_not_json_is_400_invalid_request(
    api: Api, content: bytes, why: str
) -> None:
    task = await api.create()
    for method, path in [
        ("POST", "/tasks"),
        ("PUT", f"/tasks/{task['id']}"),
        ("PUT", f"/tasks/{task['id']}/approve"),
        ("POST", f"/tasks/{task['id']}/notes"),
        ("POST", "/webhooks"),
    ]:
        answer = await api.request(
            method, path, content=content, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, (path, answer.text)
        error = error_of(answer)
        assert error["code"] == "invalid_request"
        assert why in error["message"]
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"


async def test_json_without_a_content_type_is_refused_everywhere(api: Api) -> None:
    task = await api.create()
    for method, path in [
        ("POST", "/tasks"),
        ("PUT", f"/tasks/{task['id']}"),
        ("PUT", f"/tasks/{task['id']}/reject"),
        ("POST", f"/tasks/{task['id']}/notes"),
    ]:
        answer = await api.request(method, path, content=b'{"text": "hi"}')
        assert answer.status_code == 422, (path, answer.text)
        assert "Content-Type: application/json" in error_of(answer)["message"]
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"


async def test_unknown_query_parameters_are_refused_on_every_route(api: Api) -> None:
    task = await api.create()
    secret = task["approverSecret"]
    for method, path, params in [
        ("GET", f"/tasks/{task['id']}", {}),
        ("POST", "/tasks", {}),
        ("PUT", f"/tasks/{task['id']}/approve", {"secret": secret}),
        ("PUT", f"/tasks/{task['id']}/reject", {"secret": secret}),
        ("GET", f"/tasks/{task['id']}/history", {}),
        ("GET", f"/tasks/{task['id']}/links", {}),
        ("GET", "/tasks", {}),
        ("GET", "/webhooks/nosuch", {}),
    ]:
        kwargs: dict[str, Any] = {"params": {**params, "secrt": "x"}}
        if method != "GET":
            kwargs["json"] = TASK if path == "/tasks" else {}
        answer = await api.request(method, path, **kwargs)
        assert answer.status_code == 422, (path, answer.text)
        error = error_of(answer)
        assert error["message"].startswith("secrt: unknown query parameter; known: ")
        assert error["details"] == [{"field": "secrt", "message": "unknown query parameter"}]
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"
    assert len((await api.get("/tasks")).json()) == 1


_NUL_ROUTES = [
    ("GET", "/tasks/{id}"),
    ("PUT", "/tasks/{id}"),
    ("PUT", "/tasks/{id}/approve"),
    ("PUT", "/tasks/{id}/reject"),
    ("GET", "/tasks/{id}/history"),
    ("GET", "/tasks/{id}/wait"),
    ("GET", "/tasks/{id}/notes"),
    ("POST", "/tasks/{id}/notes"),
    ("GET", "/tasks/{id}/links"),
    ("GET", "/webhooks/{id}"),
    ("DELETE", "/webhooks/{id}"),
    ("GET", "/webhooks/{id}/deliveries"),
    ("POST", "/webhooks/{id}/deliveries/{id}/resend"),
]


@pytest.mark.parametrize("bad", ["ab%00cd", "ab%01", "%7f", "a%0Ab"])
async def test_a_control_character_in_an_id_is_422(api: Api, bad: str) -> None:
    for method, template in _NUL_ROUTES:
        answer = await api.request(
            method, template.replace("{id}", bad), json={"text": "x"} if method != "GET" else None
        )
        assert answer.status_code == 422, (method, template, answer.text)
        assert error_of(answer)["message"].endswith("must not contain control characters")


async def test_a_control_character_in_a_query_parameter_is_422(api: Api) -> None:
    for params in ({"pattern": "a\x00b"}, {"filter": "title:a\x00"}, {"secret": "\x00"}):
        answer = await api.get("/tasks", params=params)
        assert answer.status_code == 422, answer.text
        field = next(iter(params))
        assert error_of(answer)["details"] == [
            {"field": field, "message": "must not contain control characters"}
        ]


# -- over a real `peopletasks serve` -----------------------------------------------------


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    """`peopletasks serve` on this backend's store, and an API token."""
    env = service_env(database_url, TEST_KEY)
    token = cli(
        "token", "create", "--email", "ops@example.com", "--org", f"o-{time.time_ns()}", env=env
    )
    with ServiceProcess(env, cwd=tmp_path) as service:
        yield service, token.splitlines()[-1]


def test_a_nul_in_an_id_is_422_and_never_reaches_the_log(
    served: tuple[ServiceProcess, str],
) -> None:
    service, token = served
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=service.url, headers=auth, timeout=10) as http:
        for method, template in _NUL_ROUTES:
            answer = http.request(method, "/people-task" + template.replace("{id}", "ab%00cd"))
            assert answer.status_code == 422, (template, answer.text)
        assert http.get("/people-task/tasks", params={"pattern": "\x00"}).status_code == 422
        assert http.get("/healthz").status_code == 200
    service.stop()
    log = service.log.read_bytes()
    assert b"ab%00cd" in log  # the access log shows the path as sent
    assert b"\x00" not in log
    assert b"Traceback" not in log
