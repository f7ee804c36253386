"""The access log of a real `peopletasks serve` never shows a secret or a link token,
however the client encoded it (service/logging.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from peopletasks.service.logging import logged_target
from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, closed_within, service_env


def test_secrets_and_tokens_never_reach_the_access_log(tmp_path: Path) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", TEST_KEY)
    marker = "f00dfeed" * 8
    targets = [
        f"/people-task/tasks?secret={marker}",
        f"/people-task/tasks?%73ecret={marker}",
        f"/people-task/tasks?secret%3D{marker}",
        f"/people-task/tasks?SECRET={marker}",
        f"/people-task/tasks?Secret={marker}&limit=1",
        f"/people-task/tasks?token={marker}",
        f"/people-task/tasks?filter=status:pending;secret={marker}",
        f"/people-task/act/{marker}",
        f"/people-task/%61ct/{marker}",
        f"/people-task//act/{marker}",
        f"/people-task/./act/{marker}",
        f"/people-task/ACT/{marker}",
        f"/people-task%2Fact%2F{marker}",
        f"/people-task/act/{marker}/done?late=1",
        f"/people-task/act/{marker[:10]}%2F{marker[10:]}",
        f"/people-task/dashboard?taskId=abc&secret={marker}&action=approve",
    ]
    with ServiceProcess(env, cwd=tmp_path) as service:
        for target in targets:  # as written: a client library would normalise some
            with socket.create_connection(("127.0.0.1", service.port)) as sock:
                sock.sendall(
                    f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                assert closed_within(sock, 10)[1].startswith(b"HTTP/1.1 ")
        deadline = time.monotonic() + 10
        while service.log.read_text().count('"GET /people-task') < len(targets):
            assert time.monotonic() < deadline, service.log.read_text()
            time.sleep(0.05)
    log = service.log.read_text()
    assert marker not in log
    assert marker[:10] not in log and marker[10:] not in log
    assert log.count("***") >= len(targets)
    assert "taskId=abc" in log and "limit=1" in log


def test_the_service_logs_a_request_as_sent_with_secrets_masked() -> None:
    """What the service's own log lines (an unexpected error) show of a request."""
    assert logged_target({"raw_path": b"/people-task/%61ct/abc/done", "query_string": b""}) == (
        "/people-task/act/***/done"
    )
    assert logged_target(
        {"raw_path": b"/people-task/tasks/ab%00cd", "query_string": b"SECRET=x&limit=2"}
    ) == ("/people-task/tasks/ab%00cd?SECRET=***&limit=2")
    # Without the raw path (servers other than uvicorn), the path is quoted: no raw NUL.
    assert logged_target({"path": "/people-task/tasks/ab\x00cd", "query_string": b""}) == (
        "/people-task/tasks/ab%00cd"
    )
