"""Run the real `peopletasks` command: the service as a process on a free port."""

from __future__ import annotations

import os
import re
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

    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        cwd: Path | None = None,
        python: str | None = None,
    ) -> None:
        """`args` follow `peopletasks serve --port PORT`. With `python`, the process
        runs that code instead (`python -c`, its port in `sys.argv[1]`)."""
        self.args = args
        self.python = python
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Links in answers point at this process unless the caller says otherwise.
        self.env = {"PEOPLETASKS_PUBLIC_URL": self.url, **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"peopletasks-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        with self.log.open("wb") as log:
            command = [str(BIN), "serve", "--port", str(self.port), *self.args]
            if self.python is not None:
                command = [sys.executable, "-c", self.python, str(self.port), *self.args]
            self.process = subprocess.Popen(
                command,
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


def read_answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """The head of one whole HTTP/1.1 answer (it has a Content-Length) read off `sock`;
    nothing of a next one."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-answer")
        body += chunk
    if len(body) != length:
        raise AssertionError(f"more than one answer: {body!r}")
    return head


def closed_within(sock: socket.socket, timeout: float) -> tuple[float, bytes]:
    """Seconds until the peer closes `sock` (at most `timeout`), and what it sent."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
