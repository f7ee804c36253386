"""Run the real `peopletasks` command: the service as a process on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent / "peopletasks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(database_url: str, secret_key: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PEOPLETASKS_DATABASE_URL=database_url,
        PEOPLETASKS_SECRET_KEY=secret_key,
        PEOPLETASKS_ENVIRONMENT="test",
        PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS="true",
        **extra,
    )
    return env


def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    """Run `peopletasks ARGS`; its stdout (raises with stderr on failure)."""
    done = subprocess.run(
        [str(BIN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"peopletasks {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


class ServiceProcess:
    """`peopletasks serve` in a subprocess; `url` once `start()` returns."""

    def __init__(self, env: dict[str, str], *args: str, cwd: Path | None = None) -> None:
        self.args = args
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Links in answers point at this process unless the caller says otherwise.
        self.env = {"PEOPLETASKS_PUBLIC_URL": self.url, **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"peopletasks-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN), "serve", "--port", str(self.port), *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"no answer on /healthz in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
