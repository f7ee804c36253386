"""A request's body is bounded (service/limits.py), and the caller is known before it
is looked at: a large or slow body costs the service nothing it has not agreed to."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message

from peopletasks.domain import Domain
from peopletasks.domain.principals import create_api_token
from peopletasks.service.app import create_app
from peopletasks.settings import Settings
from tests.conftest import TEST_KEY, Api, error_of, settings_for
from tests.support.asgi import call, chunks, http_scope
from tests.support.server import ServiceProcess, closed_within, service_env

LIMIT = 4096
_JSON = (b"content-type", b"application/json")
_CHUNKED = (b"transfer-encoding", b"chunked")


@pytest.fixture(scope="module")
async def small(database_url: str, domain: Domain) -> Any:
    """The app with a body limit of 4 KiB."""
    return create_app(settings_for(database_url, max_body_bytes=LIMIT), domain=domain)


def test_the_body_limit_is_one_mebibyte_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_body_bytes == 1024 * 1024
    monkeypatch.setenv("PEOPLETASKS_MAX_BODY_BYTES", "2048")
    assert Settings().max_body_bytes == 2048


async def test_a_declared_length_over_the_limit_is_413_before_the_caller(small: Any) -> None:
    for method, path in [
        ("POST", "/people-task/tasks"),
        ("PUT", "/people-task/tasks/x/approve"),
        ("POST", "/people-task/tasks/x/notes"),
        ("POST", "/people-task/webhooks"),
        ("POST", "/people-task/act/not-a-token"),
    ]:
        scope = http_scope(method, path, [_JSON, (b"content-length", b"200000000")])
        answer = await call(small, scope, [])  # nothing of the body sent yet
        assert answer.status == 413, (path, answer.body)
        assert answer.headers["connection"] == "close"
        assert b'"payload_too_large"' in answer.body


async def test_a_chunked_body_over_the_limit_is_413_and_creates_nothing(
    small: Any, domain: Domain
) -> None:
    token = await create_api_token(domain, "flows@example.com", organization="org-chunks")
    auth = (b"authorization", f"Bearer {token}".encode())
    scope = http_scope("POST", "/people-task/tasks", [auth, _JSON, _CHUNKED])
    answer = await call(small, scope, chunks(LIMIT + 1))
    assert answer.status == 413, answer.body
    # Under the limit, in chunks: read whole.
    padded = (
        b'{"title": "Laptop", "approver": "lead@example.com", "requester": "me@example.com"'
        + b" " * (LIMIT - 200)
        + b"}"
    )
    messages: list[Message] = [
        {"type": "http.request", "body": padded[:100], "more_body": True},
        {"type": "http.request", "body": padded[100:]},
    ]
    scope = http_scope("POST", "/people-task/tasks", [auth, _JSON, _CHUNKED])
    answer = await call(small, scope, messages)
    assert answer.status == 201, answer.body
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=small), base_url="http://service"
    ) as http:
        count = await http.get(
            "/people-task/tasks-count", headers={"Authorization": f"Bearer {token}"}
        )
    assert count.json() == {"count": 1}


async def test_the_caller_is_known_before_the_body_is_read(small: Any) -> None:
    """An unauthenticated create, sending its body slowly: 401 without waiting for it."""
    scope = http_scope("POST", "/people-task/tasks", [_JSON, _CHUNKED])
    answer = await call(small, scope, [{"type": "http.request", "body": b"{", "more_body": True}])
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_bad_note_without_credentials_is_401_with_them_422(
    api: Api, anonymous: Api
) -> None:
    task = await api.create()
    for body in ({"text": 5}, {}, {"text": "x", "secret": 7}, [1]):
        answer = await anonymous.post(f"/tasks/{task['id']}/notes", json=body)
        assert answer.status_code == 401, (body, answer.text)
    answer = await anonymous.post(
        f"/tasks/{task['id']}/notes",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 401
    answer = await api.post(f"/tasks/{task['id']}/notes", json={"text": 5})
    assert answer.status_code == 422
    assert error_of(answer)["details"][0]["field"] == "text"
    answer = await anonymous.post(
        f"/tasks/{task['id']}/notes", json={"text": 5, "secret": task["requesterSecret"]}
    )
    assert answer.status_code == 422


async def test_pages_keep_their_own_smaller_limit(api: Api, http: httpx.AsyncClient) -> None:
    """A form over the pages' 64 KiB (under the service's 1 MiB) is the page's 413."""
    task = await api.create()
    path = task["links"]["approve"].removeprefix("http://127.0.0.1:8000")
    answer = await http.post(
        path,
        content=b"comment=" + b"x" * (70 * 1024),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "pending"


def test_a_served_200_mb_post_is_answered_at_once_unread(tmp_path: Path) -> None:
    """Over a real `peopletasks serve`: a declared 200 MB body is 413 (connection closed)
    and an unauthenticated chunked one 401, each before anything of it is sent."""
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'big.db'}", TEST_KEY)
    with ServiceProcess(env, "--no-access-log", cwd=tmp_path) as service:
        address = ("127.0.0.1", service.port)
        with socket.create_connection(address) as sock:
            sock.sendall(
                b"POST /people-task/tasks HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{"
            )
            took, sent = closed_within(sock, 10)
            assert sent.startswith(b"HTTP/1.1 413 "), sent
            assert took < 5
        with socket.create_connection(address) as sock:
            sock.sendall(
                b"POST /people-task/tasks HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"400\r\n{" + b" " * 100
            )
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")
