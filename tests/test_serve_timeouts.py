"""`peopletasks serve` drops a connection that does not send its request header in
time (service/server.py), and kept-alive connections that stay idle."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, cli, closed_within, read_answer, service_env

#: The app as `serve` runs it, on h11 (what `serve` speaks where httptools is missing).
_ON_H11 = """
import sys, uvicorn
from peopletasks.service.server import protocol
from peopletasks.store import migrate
from peopletasks.settings import get_settings
migrate(get_settings().database_url)
uvicorn.run("peopletasks.cli:app_factory", factory=True, port=int(sys.argv[1]),
            http=protocol("h11", 1.0), timeout_keep_alive=2, access_log=False)
"""


@pytest.fixture(scope="module", params=["httptools", "h11"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    """`peopletasks serve --header-timeout 1 --keep-alive-timeout 2` (httptools), and
    the same protocol on h11; with an API token."""
    tmp = tmp_path_factory.mktemp("timeouts")
    env = service_env(f"sqlite+aiosqlite:///{tmp / 't.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "ops@example.com", env=env).splitlines()[-1]
    args = ("--header-timeout", "1", "--keep-alive-timeout", "2", "--no-access-log")
    python = _ON_H11 if request.param == "h11" else None
    with ServiceProcess(env, *args, cwd=tmp, python=python) as service:
        yield service, token


def test_a_connection_that_sends_nothing_or_half_a_header_is_dropped(
    served: tuple[ServiceProcess, str],
) -> None:
    address = ("127.0.0.1", served[0].port)
    with socket.create_connection(address) as silent, socket.create_connection(address) as half:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for sock in (silent, half):
            took, sent = closed_within(sock, 10)
            assert sent.startswith(b"HTTP/1.1 408 "), sent
            assert took < 5


def test_a_header_in_pieces_within_the_time_is_answered_then_idle_closed(
    served: tuple[ServiceProcess, str],
) -> None:
    address = ("127.0.0.1", served[0].port)
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.3)  # the client's own pace, not a synchronisation
        sock.sendall(b"Host: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        # Kept alive: a second request on it, then half of a third is dropped.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        took, sent = closed_within(sock, 10)
        assert sent.startswith(b"HTTP/1.1 408 ") and took < 5
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        # Idle after an answer: closed after the keep-alive timeout (2 s), silently.
        took, sent = closed_within(sock, 10)
        assert sent == b""
        assert 1.5 < took < 5


def test_a_slow_answer_is_not_a_slow_header(served: tuple[ServiceProcess, str]) -> None:
    """The header timeout counts until the header is in, not while the app works: a
    long poll of 1.5 s (the timeout is 1 s) is answered."""
    service, token = served
    created = httpx.post(
        f"{service.url}/people-task/tasks",
        json={"title": "Laptop", "approver": "lead@example.com", "requester": "me@example.com"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(
            f"GET /people-task/tasks/{created.json()['id']}/wait?timeout=1.5 HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        started = time.monotonic()
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - started > 1.2
