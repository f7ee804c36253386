"""The people's dashboard: a person's 100 pending tasks, rendered, beside the API list of
the same tasks.

    .venv/bin/python bench/dashboard.py [--tasks 100000] [--requests 500] [--rounds 5]

In process (no network, no server): each request is one call of the ASGI application,
as uvicorn makes it (bench/dispatch.py's `call`), with the app's own lifespan, on a
fresh SQLite store in a temp directory filled as bench/service.py fills it (`--tasks`
tasks over 1,000 approvers and 50 requesters), plus one person with exactly 100
pending tasks (and 50 decided ones, which the pending tab leaves out).

Measured per request, in milliseconds, p50 and p99 over `--rounds` rounds of
`--requests` each (operations in turn, after a warm-up):

- baseline: `GET /people-task/tasks?secret=<their dashboard token>&role=approver&
  filter=status:pending&sort=decisionBy:1&limit=100` (the API's JSON of the same 100);
- dashboard: `GET /people-task/dashboard?limit=100` with the dashboard cookie: the
  pending tab of their tasks as approver, sorted by deadline, with every tab's count,
  as HTML (each answer is checked to hold the 100 tasks);
- one task: `GET /people-task/dashboard?taskId=…` (history, notes, decision form).

Target: the dashboard's p99 <= 50 ms. A benchmark, not a test: it prints and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dispatch  # noqa: E402 - bench/dispatch.py: one ASGI call as uvicorn makes it
import service as service_bench  # noqa: E402 - bench/service.py: the store it fills

PERSON = "dashboard-bench@example.com"
KEY = "bench-signing-key-0123456789abcdef"
TARGET_P99_MS = 50.0


async def add_person(store: Any, seed: int) -> tuple[str, list[str]]:
    """PERSON with 100 pending tasks (and 50 decided): their dashboard token, the ids."""
    from peopletasks.domain.principals import dashboard_token
    from peopletasks.service.app import build_domain
    from peopletasks.settings import Settings

    rng = random.Random(seed)
    now = datetime.now(UTC)
    requesters = [f"requester{i:02d}@example.com" for i in range(service_bench.REQUESTERS)]
    rows = service_bench.task_rows(
        rng,
        100,
        org_id=store.org_id,
        approvers=[PERSON],
        requesters=requesters,
        now=now,
        statuses=(("pending", 1.0),),
    )
    rows += service_bench.task_rows(
        rng,
        50,
        org_id=store.org_id,
        approvers=[PERSON],
        requesters=requesters,
        now=now,
        statuses=(("approved", 0.5), ("rejected", 0.5)),
    )
    for row in rows[:100]:
        row["decision_by"] = service_bench._ms(now + timedelta(days=1 + 300 * rng.random()))
    await service_bench.insert_tasks(store, rows)
    domain = build_domain(Settings(database_url=store.url, secret_key=[store.key]))
    try:
        token = dashboard_token(domain, store.org_id, PERSON, now + timedelta(days=1))
    finally:
        await domain.db.dispose()
    return token, [row["id"] for row in rows[:100]]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, workdir: Path) -> None:
    from peopletasks.service import create_app
    from peopletasks.settings import Settings

    url = f"sqlite+aiosqlite:///{workdir / 'dashboard.db'}"
    store = service_bench.Store(url=url, key=KEY)
    print(f"filling {args.tasks:,} tasks ...", flush=True)
    await service_bench.fill(store, args.tasks, args.seed)
    token, ids = await add_person(store, args.seed + 1)
    print(f"filled in {store.fill_seconds:.1f} s; {PERSON}: 100 pending, 50 decided", flush=True)

    settings = Settings(
        database_url=url, secret_key=[KEY], environment="bench", background_workers=False
    )
    app = create_app(settings)
    cookie = [(b"cookie", f"pt_dashboard={token}".encode())]
    operations: dict[str, tuple[dispatch.Request, bytes]] = {
        "API list (baseline)": (
            (
                "GET",
                "/people-task/tasks",
                f"secret={token}&role=approver&filter=status:pending"
                "&sort=decisionBy:1&limit=100".encode(),
                dispatch.HOST,
                b"",
            ),
            b'"status":"pending"',
        ),
        "dashboard list": (
            ("GET", "/people-task/dashboard", b"limit=100", [*dispatch.HOST, *cookie], b""),
            b'<li class="card">',
        ),
        "dashboard, one task": (
            (
                "GET",
                "/people-task/dashboard",
                f"taskId={ids[0]}".encode(),
                [*dispatch.HOST, *cookie],
                b"",
            ),
            b'class="decision card"',
        ),
    }
    async with app.router.lifespan_context(app):
        for name, (request, marker) in operations.items():  # each answers what it should
            status, body = await dispatch.call(app, request)
            found = body.count(marker)
            expected = 1 if name == "dashboard, one task" else 100
            if status != 200 or found != expected:
                raise SystemExit(f"{name}: {status}, {found} x {marker!r}: {body[:300]!r}")
        samples: dict[str, list[float]] = {name: [] for name in operations}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for name, (request, _) in operations.items():
                times = []
                for _ in range(args.requests if round_ else 50):
                    started = time.perf_counter()
                    await dispatch.call(app, request)
                    times.append((time.perf_counter() - started) * 1000)
                if round_:
                    samples[name] += times
            gc.collect()

    print()
    print(f"{'request':<22} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}  target")
    for name, times in samples.items():
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        target = ""
        if name == "dashboard list":
            met = "met" if p99 <= TARGET_P99_MS else "MISSED"
            target = f"p99 <= {TARGET_P99_MS:.0f} ms: {met}"
        print(f"{name:<22} {p50:>8.2f} {p99:>8.2f} {statistics.mean(times):>8.2f}  {target}")
    base = percentile(samples["API list (baseline)"], 0.5)
    page = percentile(samples["dashboard list"], 0.5)
    print(f"\ndashboard list / API list, p50: {page / base:.2f}x")
    print(f"{len(samples['dashboard list']):,} requests each; {service_bench.machine()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500, help="per operation and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pt-dashboard-bench-") as workdir:
        asyncio.run(run(args, Path(workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
