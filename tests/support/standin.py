"""Run a stand-in (an ASGI app of a third-party API) over real HTTP, and other helpers
shared by the backend tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn


class Served:
    """`app` served by uvicorn on a free port of 127.0.0.1, in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self._socket])), daemon=True
        )

    def start(self, timeout: float = 15.0) -> Served:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._socket.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_thread(run: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `run()` in a thread (a flow that waits while the test decides)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def until(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Wait (in a sync test) until `condition()` is truthy; its value. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        threading.Event().wait(interval)


def flow_run_state(run_id: Any) -> str:
    """The state type of a flow run (PAUSED, RUNNING, COMPLETED ...), read from Prefect."""
    from prefect import get_client

    async def read() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            return str(run.state.type.value) if run.state else ""

    return asyncio.run(read())
