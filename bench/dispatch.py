"""In-process cost of the hot requests through the app, beside a bare FastAPI app.

    .venv/bin/python bench/dispatch.py [--requests 2000] [--rounds 7]

No network and no server: each request is one call of the ASGI application
(`await app(scope, receive, send)`), as uvicorn makes it, on a fresh SQLite store
in a temp directory (the app's own lifespan runs, as under `peopletasks serve`).
Measured per request, in microseconds:

- bare GET: a FastAPI app whose one route returns the same task-sized JSON as
  GET task (bench/service.py's bare app);
- GET task (`Authorization: Bearer`), create (`POST /people-task/tasks`, JSON,
  a different task each time), approve (`PUT .../approve?secret=`, no body, a
  different pending task each time).

Each round runs every operation `--requests` times, in turn (the machine's
speed drifts); the table shows the median and the best round, and the ratio
bare / operation of the medians (what bench/service.py's targets compare: GET
task >= 0.6, create and approve >= 0.3 over the network, where uvicorn's own
cost is added to both sides). `--source DIR` measures another copy of the
package (e.g. `git worktree add /tmp/before <commit>`, then
`--source /tmp/before/components`). A benchmark, not a test: it asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

Headers = list[tuple[bytes, bytes]]
Request = tuple[str, str, bytes, Headers, bytes]


def scope_of(method: str, path: str, query: bytes, headers: Headers) -> dict[str, Any]:
    """The scope uvicorn hands the application for this request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "state": {},
    }


async def call(app: Any, request: Request) -> tuple[int, bytes]:
    """One request through `app`: its status and body."""
    method, path, query, headers, body = request
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope_of(method, path, query, headers), receive, send)
    return status, b"".join(chunks)


async def timed(app: Any, requests: list[Request], expect: int) -> float:
    """Microseconds per request, over `requests` made one after the other."""
    started = time.perf_counter()
    for request in requests:
        status, body = await call(app, request)
        if status != expect:
            raise RuntimeError(f"{request[0]} {request[1]}: {status} {body[:300]!r}")
    return (time.perf_counter() - started) / len(requests) * 1e6


def bare_app(payload: dict[str, Any]) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: str) -> dict[str, Any]:
        return payload

    return app


HOST: Headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
JSON: Headers = [(b"content-type", b"application/json")]


def task_body(n: int) -> bytes:
    return orjson.dumps(
        {
            "title": f"Purchase request {n}",
            "requester": f"requester{n % 50:02d}@example.com",
            "approver": f"approver{n * 7 % 1000:04d}@example.com",
            "description": "Please review the request and approve or reject it before the "
            "deadline. Budget line, justification and the requester's notes are attached.",
            "decisionBy": "2030-06-01T17:00:00Z",
        }
    )


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    from peopletasks.domain.principals import create_api_token
    from peopletasks.service import create_app
    from peopletasks.settings import Settings
    from peopletasks.store import migrate

    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    migrate(url)
    settings = Settings(
        database_url=url,
        environment="test",
        secret_key=["bench-signing-key-0123456789abcdef"],
        background_workers=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        domain = app.state.domain
        token = await create_api_token(domain, "bench@example.com", organization="bench")
        bearer: Headers = [*HOST, (b"authorization", f"Bearer {token}".encode())]
        n = args.requests
        rounds = args.rounds
        tasks = "/people-task/tasks"

        # The tasks to read, and a pool of pending tasks of one approver to approve.
        print(f"creating {n + n * (rounds + 1):,} tasks ...", flush=True)
        ids: list[str] = []
        for i in range(n):
            status, body = await call(app, ("POST", tasks, b"", [*bearer, *JSON], task_body(i)))
            assert status == 201, body
            ids.append(orjson.loads(body)["id"])
        pool: list[tuple[str, str]] = []  # each task with its own approver secret
        one_approver = orjson.loads(task_body(0)) | {"approver": "pool@example.com"}
        for i in range(n * (rounds + 1)):
            one_approver["title"] = f"Pool {i}"
            request = ("POST", tasks, b"", [*bearer, *JSON], orjson.dumps(one_approver))
            status, body = await call(app, request)
            assert status == 201, body
            created = orjson.loads(body)
            pool.append((created["id"], created["approverSecret"]))
        status, payload = await call(app, ("GET", f"{tasks}/{ids[0]}", b"", bearer, b""))
        assert status == 200, payload
        bare = bare_app(orjson.loads(payload))

        def get_requests(_: int) -> list[Request]:
            return [("GET", f"{tasks}/{ids[i]}", b"", bearer, b"") for i in range(n)]

        def bare_requests(_: int) -> list[Request]:
            return [("GET", f"/tasks/{ids[i]}", b"", HOST, b"") for i in range(n)]

        def create_requests(r: int) -> list[Request]:
            return [
                ("POST", tasks, b"", [*bearer, *JSON], task_body(n * (r + 1) + i)) for i in range(n)
            ]

        def approve_requests(r: int) -> list[Request]:
            share = pool[r * n : (r + 1) * n]
            return [
                ("PUT", f"{tasks}/{i}/approve", f"secret={secret}".encode(), HOST, b"")
                for i, secret in share
            ]

        operations: list[tuple[str, Any, Callable[[int], list[Request]], int]] = [
            ("bare GET", bare, bare_requests, 200),
            ("GET task", app, get_requests, 200),
            ("create", app, create_requests, 201),
            ("approve", app, approve_requests, 200),
        ]
        figures: dict[str, list[float]] = {name: [] for name, *_ in operations}
        # Round 0 warms up (imports, caches, the planner) and is not counted.
        for r in range(rounds + 1):
            for name, target, make, expect in operations:
                requests = make(r)
                gc.collect()
                figure = await timed(target, requests, expect)
                if r:
                    figures[name].append(figure)
            if r:
                print(f"  round {r}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in figures.items()))

    bare_us = statistics.median(figures["bare GET"])
    print()
    print(f"{'operation':<10} {'median us':>10} {'best us':>8} {'x bare':>7}")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:<10} {median:>10.0f} {min(values):>8.0f} {bare_us / median:>7.2f}")
    print(
        f"\n{rounds} rounds of {n:,} requests per operation, in process (ASGI), SQLite; "
        f"x bare = bare GET's median / the operation's median"
    )


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with the service
        asyncio.run(main)
        return
    uvloop.run(main)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per operation and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", type=Path, help="import peopletasks from this folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.source:
        sys.path.insert(0, str(args.source.resolve()))
    import peopletasks

    print(f"peopletasks from {Path(peopletasks.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="peopletasks-dispatch-") as workdir:
        run(bench(args, Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
