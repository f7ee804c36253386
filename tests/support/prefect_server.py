"""A real `prefect server start` process: its own PREFECT_HOME, a free port, no UI.

The test session runs one (the `prefect_api` fixture); bench/resume.py runs one on a
throw-away PostgreSQL cluster. Its scheduler looks for due schedules every second (so a
deployment's cron schedule has its runs at once, not within a minute).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.server import free_port

PREFECT = Path(sys.executable).with_name("prefect")


def prefect_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any PREFECT_* setting of ours, with its own home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        **extra,
    )
    return env


class PrefectServer:
    """`prefect server start` on `database_url` (default: a SQLite file in its home)."""

    def __init__(self, directory: Path, *, database_url: str | None = None, **settings: str):
        self.directory = directory
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = directory / "prefect-server.log"
        values = {
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
            **settings,
        }
        if database_url is not None:
            values["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        self.env = prefect_env(directory / "server-home", **values)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> PrefectServer:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"prefect server not healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
