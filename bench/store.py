"""The store's cost inside the service, in process: create, approve and GET task on SQLite.

Calls the real ASGI app directly (no HTTP client, no sockets), so what changes in the
store shows instead of drowning in transport; one request at a time and 32 at once
(group commit). Prints microseconds per request (the median of `--rounds`).

    .venv/bin/python bench/store.py [--tasks 2000] [--rounds 5] [--source DIR]

`--source DIR` runs another copy of the package, to compare side by side (e.g.
`git archive HEAD components | tar -x -C /tmp/head`, then `--source /tmp/head/components`).
Not a test: no thresholds; compare runs made one after the other on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

EMAIL = "lead@example.com"


class Client:
    """A request straight into the ASGI app."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.auth = f"Bearer {token}".encode()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = orjson.dumps(body) if body is not None else b""
        headers = [(b"host", b"bench"), (b"authorization", self.auth)]
        if body is not None:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(raw)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("bench", 80),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, orjson.loads(b"".join(chunks)) if chunks else None


async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Microseconds per call of `one(i)` for i < count, `concurrency` at a time."""
    gc.collect()
    started = time.perf_counter()
    for base in range(0, count, concurrency):
        await asyncio.gather(*(one(i) for i in range(base, min(base + concurrency, count))))
    return (time.perf_counter() - started) / count * 1e6


async def one_round(
    client: Client, n: int, concurrency: int, results: dict[str, list[float]]
) -> None:
    """Create n tasks, GET each, approve each: microseconds per request into `results`."""
    ids: list[str] = []

    async def create(_i: int) -> None:
        body = {"title": "Vacation", "requester": "e@example.com", "approver": EMAIL}
        status, answer = await client.call("POST", "/people-task/tasks", body)
        assert status == 201, answer
        ids.append(answer["id"])

    async def get(i: int) -> None:
        status, answer = await client.call("GET", f"/people-task/tasks/{ids[i]}")
        assert status == 200, answer

    async def approve(i: int) -> None:
        status, answer = await client.call("PUT", f"/people-task/tasks/{ids[i]}/approve", {})
        assert status == 200, answer

    for name, one in (("create", create), ("GET task", get), ("approve", approve)):
        key = f"{name:<9} x{concurrency:<3}"
        results.setdefault(key, []).append(await timed(n, concurrency, one))


async def main(args: argparse.Namespace) -> None:
    from peopletasks.domain.principals import create_api_token
    from peopletasks.service import create_app
    from peopletasks.service.app import build_domain
    from peopletasks.settings import Settings
    from peopletasks.store import migrate

    folder = Path(tempfile.mkdtemp(prefix="peopletasks-bench-store-"))
    url = f"sqlite+aiosqlite:///{folder / 'store.db'}"
    migrate(url)
    settings = Settings(
        database_url=url,
        environment="test",
        secret_key=["bench-signing-key-0123456789abcdef"],
        background_workers=False,
    )
    domain = build_domain(settings)
    app = create_app(settings, domain=domain)
    token = await create_api_token(domain, EMAIL)
    client = Client(app, token)
    results: dict[str, list[float]] = {}
    try:
        for _round in range(args.rounds):
            for concurrency in (1, 32):
                await one_round(client, args.tasks, concurrency, results)
    finally:
        await domain.db.dispose()
    print(f"{'request':<15} {'us/request (median of ' + str(args.rounds) + ')':>28}  all rounds")
    for key, values in results.items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"{key:<15} {statistics.median(values):>28.0f}  {rounds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source", type=Path, default=None)
    arguments = parser.parse_args()
    if arguments.source:
        sys.path.insert(0, str(arguments.source.resolve()))
    asyncio.run(main(arguments))
