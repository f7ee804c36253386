"""How fast a decided approval resumes its flow, against bare Prefect; 1,000 waits.

    .venv/bin/python bench/resume.py [--samples 20] [--baseline-samples 5] [--waiters 1000]
                                     [--suspend-samples 5] [--prefect-db postgresql|sqlite]

One run starts a real Prefect server (`prefect server start`, no UI; the tests' own
tests/support/prefect_server.py) on a throw-away PostgreSQL cluster
(tests/support/postgres.py; `--prefect-db sqlite` puts it on a SQLite file instead,
where 1,000 waits stall on "database is locked") and `peopletasks serve` (SQLite in a
temp directory; private webhook targets refused, the Prefect API named in
PEOPLETASKS_PREFECT_API_URL), then:

1. `--samples` times, one after another: an async flow calls `arequest_approval`
   (pause mode); once the task exists the bench approves it through the API and
   measures the time from the approve call's answer to the flow's next line.
2. `--baseline-samples` times: a flow calls bare `pause_flow_run()` (default poll
   interval, 10 s) and the bench calls `resume_flow_run` from the outside; same delay.
3. and 4. suspend mode, `--suspend-samples` times each: bench/suspend_flows.py's `ours`
   (`request_approval(wait="suspend")`, decided through the service's API, which
   resumes the run) and `bare` (`suspend_flow_run()`, resumed with `resume_flow_run`),
   alternating, under `flow.serve` and under a process worker, both polling every
   second: decision -> the run's Completed state.
5. `--waiters` async flows in this process wait in `arequest_approval` at once,
   sharing one Prefect API client (`AsyncClientContext`; `--client-per-run` for
   Prefect's default of one client per run); the bench reads the process's peak RSS and counts requests to Prefect's API over a
   `--window` second window, then approves them all and checks every flow finished.
6. Prints the targets and whether each is met (MISSED otherwise; exit code stays 0).

A smoke run (a minute or two): `--samples 5 --baseline-samples 2 --waiters 50`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEOPLETASKS = Path(sys.executable).with_name("peopletasks")
PREFECT = Path(sys.executable).with_name("prefect")
APPROVER = "approver@example.com"
REQUESTER = "requester@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the service ----------------------------------------------------------------


class Service:
    def __init__(self, workdir: Path, port: int, prefect_api: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "PEOPLETASKS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'tasks.db'}",
            "PEOPLETASKS_SECRET_KEY": secrets.token_urlsafe(32),
            # As in production: private targets refused, our own Prefect API named.
            "PEOPLETASKS_PREFECT_API_URL": prefect_api,
            "PEOPLETASKS_PUBLIC_URL": self.base,
        }
        self.port = port
        self.log = workdir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(PEOPLETASKS), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"service exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"service not healthy:\n{self.log.read_text()[-2000:]}")
        out = subprocess.run(
            [str(PEOPLETASKS), "token", "create", "--email", APPROVER],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.token = out.stdout.strip().splitlines()[-1].strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_prefect(workdir: Path, database: str) -> tuple[Any, Any]:
    """`prefect server start` (API only) on a throw-away PostgreSQL cluster or SQLite."""
    sys.path.insert(0, str(REPO))
    from tests.support.prefect_server import PrefectServer

    cluster: Any = None
    if database == "postgresql":
        from tests.support.postgres import PostgresCluster, postgres_available

        if not postgres_available():
            raise SystemExit(
                "PostgreSQL binaries not found (apt-get install postgresql, or set "
                "PEOPLETASKS_PG_BINDIR); or run with --prefect-db sqlite"
            )
        cluster = PostgresCluster(settings={"max_connections": "300"})
        cluster.start()
        url = cluster.create_database("prefect")
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'prefect.db'}"
    server = PrefectServer(
        workdir,
        database_url=url,
        PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE="20",
        PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW="40",
    )
    try:
        server.start()
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise
    return server, cluster


# -- the bench ------------------------------------------------------------------


async def wait_for_tasks(
    api: httpx.AsyncClient, pattern: str, count: int, timeout: float, partial: bool = False
) -> list[dict[str, Any]]:
    """Poll the list until `count` pending tasks with `pattern` in the title exist."""
    deadline = time.monotonic() + timeout
    while True:
        r = await api.get(
            "/people-task/tasks",
            params={"pattern": pattern, "filter": "status:pending", "limit": 1000},
        )
        r.raise_for_status()
        tasks = r.json()
        if len(tasks) >= count:
            return tasks
        if time.monotonic() > deadline:
            if partial:
                return tasks
            raise TimeoutError(f"{len(tasks)} of {count} tasks for {pattern!r}")
        await asyncio.sleep(0.02 if count == 1 else 0.5)


async def approve(api: httpx.AsyncClient, task_id: str) -> None:
    r = await api.put(f"/people-task/tasks/{task_id}/approve", json={})
    r.raise_for_status()


async def ours(
    api: httpx.AsyncClient, service: Any, samples: int, run: str, long_poll: list[float]
) -> list[float]:
    from prefect import flow

    from peopletasks import arequest_approval

    marks: dict[str, float] = {}

    @flow(name="bench-approval", persist_result=False)
    async def approval(title: str) -> bool:
        decision = await arequest_approval(title, APPROVER, REQUESTER, service=service)
        marks[title] = time.perf_counter()
        return decision.approved

    from peopletasks.backends.service import PeopleTaskClient

    answered: dict[str, float] = {}
    original_wait = PeopleTaskClient.wait

    async def timed_wait(self: Any, task_id: str, timeout: float = 25.0) -> dict[str, Any]:
        current = await original_wait(self, task_id, timeout)
        answered[task_id] = time.perf_counter()
        return current

    PeopleTaskClient.wait = timed_wait  # type: ignore[method-assign]
    delays = []
    for i in range(samples):
        title = f"{run}-ours-{i}"
        running = asyncio.create_task(approval(title))
        (task,) = await wait_for_tasks(api, title, 1, 60)
        await asyncio.sleep(0.3)  # let the flow settle into its wait (Paused, long poll)
        await approve(api, task["id"])
        returned = time.perf_counter()
        assert await asyncio.wait_for(running, 60) is True
        delays.append(marks[title] - returned)
        long_poll.append(answered[task["id"]] - returned)
    PeopleTaskClient.wait = original_wait  # type: ignore[method-assign]
    return delays


async def baseline(samples: int) -> list[float]:
    from prefect import flow, get_client, pause_flow_run
    from prefect.runtime import flow_run

    ids: asyncio.Queue[str] = asyncio.Queue()
    marks: dict[str, float] = {}

    @flow(name="bench-bare-pause", persist_result=False)
    async def bare() -> None:
        run_id = str(flow_run.id)
        await ids.put(run_id)
        await pause_flow_run(timeout=300)
        marks[run_id] = time.perf_counter()

    delays = []
    async with get_client() as client:
        for _ in range(samples):
            running = asyncio.create_task(bare())
            run_id = await asyncio.wait_for(ids.get(), 60)
            while True:
                state = (await client.read_flow_run(run_id)).state
                if state is not None and state.is_paused():
                    break
                await asyncio.sleep(0.05)
            await client.resume_flow_run(run_id)
            returned = time.perf_counter()
            await asyncio.wait_for(running, 60)
            delays.append(marks[run_id] - returned)
    return delays


async def many(
    api: httpx.AsyncClient,
    service: Any,
    waiters: int,
    window: float,
    run: str,
    api_url: str,
    create_timeout: float,
    shared_client: bool = True,
) -> dict[str, Any]:
    from prefect import flow

    from peopletasks import arequest_approval

    counted = {"prefect": 0}
    original_send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        if str(request.url).startswith(api_url):
            counted["prefect"] += 1
        return await original_send(self, request, **kw)

    httpx.AsyncClient.send = counting_send  # type: ignore[method-assign]

    @flow(name="bench-many", persist_result=False)
    async def approval(title: str) -> bool:
        decision = await arequest_approval(title, APPROVER, REQUESTER, service=service)
        return decision.approved

    prefix = f"{run}-many-"
    started = time.perf_counter()
    sharing = contextlib.AsyncExitStack()
    if shared_client:
        # Prefect's engine reuses the client of an active AsyncClientContext: one
        # API client (and TLS context, ~0.8 MB) for all runs instead of one per run.
        from prefect.context import AsyncClientContext

        await sharing.enter_async_context(AsyncClientContext.get_or_create())
    gathered = asyncio.gather(
        *(approval(f"{prefix}{i}") for i in range(waiters)), return_exceptions=True
    )
    try:
        tasks = await wait_for_tasks(api, prefix, waiters, create_timeout, partial=True)
        all_created = time.perf_counter() - started
        await asyncio.sleep(5)  # the last ones reach Paused and their long poll
        before = counted["prefect"]
        await asyncio.sleep(window)
        per_second = (counted["prefect"] - before) / window
        rss_peak, rss_current = rss_peak_mb(), rss_now_mb()
        approving = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def one(task_id: str) -> None:
            async with sem:
                await approve(api, task_id)

        await asyncio.gather(*(one(t["id"]) for t in tasks))
        try:
            results = await asyncio.wait_for(gathered, 600 if len(tasks) == waiters else 120)
        except TimeoutError:
            results = []
        finished = time.perf_counter() - approving
    finally:
        httpx.AsyncClient.send = original_send  # type: ignore[method-assign]
        if not gathered.done():
            gathered.cancel()
        await sharing.aclose()
    return {
        "waiting": len(tasks),
        "created_s": all_created,
        "per_second": per_second,
        "rss_peak": rss_peak,
        "rss_current": rss_current,
        "finished": sum(1 for r in results if r is True),
        "finish_s": finished,
    }


# -- suspend mode: decision -> run Completed, served and under a worker ------------------

POOL = "bench-approvals"


def start_flow_processes(workdir: Path) -> list[subprocess.Popen[bytes]]:
    """`flow.serve` of bench/suspend_flows.py and a process worker, both polling every
    second (PREFECT_RUNNER_POLL_FREQUENCY / PREFECT_WORKER_QUERY_SECONDS)."""
    env = {
        **os.environ,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(HERE),
    }
    started = []
    for name, command in (
        ("serve", [sys.executable, str(HERE / "suspend_flows.py"), "serve"]),
        ("worker", [str(PREFECT), "worker", "start", "--pool", POOL, "--type", "process"]),
    ):
        with (workdir / f"{name}.log").open("ab") as log:
            started.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return started


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def deploy_to_the_pool(svc: Service) -> None:
    """The block the flows use, the pool and its two deployments (entrypoints importable
    from bench/, which the worker has on its PYTHONPATH)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from peopletasks import PeopleTaskService

    await PeopleTaskService(url=svc.base, token=svc.token).save("bench", overwrite=True)
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
        for kind in ("ours", "bare"):
            flow_id = await client.create_flow_from_name(f"bench-suspend-{kind}")
            await client.create_deployment(
                flow_id=flow_id,
                name="worker",
                entrypoint=f"suspend_flows.{kind}",
                work_pool_name=POOL,
                pull_steps=[],
            )


async def wait_state(client: Any, run_id: Any, names: set[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.name in names:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} never reached {names}: {run.state!r}")
        await asyncio.sleep(0.05)


async def suspended_delays(
    api: httpx.AsyncClient, where: str, samples: int, run: str
) -> dict[str, list[float]]:
    """Decision -> run Completed, ours and bare, alternating, one run at a time.

    Each run is started, reaches Suspended, and its process is given a second to exit;
    then ours is decided through the service's API (the service resumes the run) and
    bare is resumed with `resume_flow_run`. The delay runs from that call's answer to
    the Completed state's timestamp (this machine's clock both).
    """
    from prefect import get_client
    from prefect.deployments import run_deployment

    delays: dict[str, list[float]] = {"ours": [], "bare": [], "ours in run": [], "bare in run": []}
    async with get_client() as client:
        deadline = time.monotonic() + 180
        for kind in ("ours", "bare"):  # the served process registers its deployments
            while True:
                try:
                    await client.read_deployment_by_name(f"bench-suspend-{kind}/{where}")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        for i in range(samples):
            for kind in ("ours", "bare"):
                title = f"{run}-{where}-{i}"
                flow_run = await run_deployment(
                    f"bench-suspend-{kind}/{where}",
                    parameters={"title": title} if kind == "ours" else {},
                    timeout=0,
                )
                await wait_state(client, flow_run.id, {"Suspended"}, 180)
                await asyncio.sleep(1.0)  # the flow-run process exits
                if kind == "ours":
                    (task,) = await wait_for_tasks(api, title, 1, 60)
                    await approve(api, task["id"])
                else:
                    await client.resume_flow_run(flow_run.id)
                decided = time.time()
                await wait_state(client, flow_run.id, {"Completed"}, 180)
                states = await client.read_flow_run_states(flow_run.id)
                completed = [s for s in states if s.name == "Completed"][-1].timestamp
                running = [s for s in states if s.name == "Running"][-1].timestamp
                delays[kind].append(completed.timestamp() - decided)
                # The part the flow's own code takes: its resumed run, Running -> Completed
                # (the rest is Prefect's: the poll picking it up, a new process starting).
                delays[f"{kind} in run"].append((completed - running).total_seconds())
    return delays


def line(name: str, value: str, target: str, met: bool) -> str:
    return f"  {name:<40} {value:>16}   {target:<14} {'met' if met else 'MISSED'}"


async def main_async(args: argparse.Namespace, svc: Service) -> None:
    from prefect.settings import PREFECT_API_URL

    from peopletasks import PeopleTaskService

    api_url = str(PREFECT_API_URL.value())
    service = PeopleTaskService(url=svc.base, token=svc.token)
    run = f"rb{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {svc.token}"}
    async with httpx.AsyncClient(base_url=svc.base, headers=headers, timeout=60) as api:
        print(f"1. ours (pause mode), {args.samples} samples ...", flush=True)
        long_poll: list[float] = []
        d_ours = await ours(api, service, args.samples, run, long_poll)
        o50, o99 = pct(d_ours, 50), pct(d_ours, 99)
        print(
            f"   p50 {o50:.3f} s  p99 {o99:.3f} s  (min {min(d_ours):.3f}, max {max(d_ours):.3f})"
        )
        print(
            f"   of which the service's long poll answering: p50 {pct(long_poll, 50):.3f} s, "
            f"p99 {pct(long_poll, 99):.3f} s; the rest is the flow leaving Paused in Prefect"
        )

        print(f"2. bare pause_flow_run + resume_flow_run, {args.baseline_samples} samples ...")
        d_bare = await baseline(args.baseline_samples)
        b50, b99 = pct(d_bare, 50), pct(d_bare, 99)
        ratio = b50 / o50 if o50 > 0 else float("inf")
        print(f"   p50 {b50:.3f} s  p99 {b99:.3f} s  (mean {statistics.mean(d_bare):.3f})")
        print(f"   ratio of p50s (bare / ours): {ratio:.1f}x", flush=True)

        suspend: dict[str, dict[str, list[float]]] = {}
        if args.suspend_samples:
            await deploy_to_the_pool(svc)
            processes = start_flow_processes(Path(args.workdir))
            try:
                for number, where in ((3, "serve"), (4, "worker")):
                    print(
                        f"{number}. suspend mode under {'flow.serve' if where == 'serve' else 'a process worker'}"
                        f" (1 s poll), ours and bare suspend_flow_run + resume_flow_run "
                        f"alternating, {args.suspend_samples} samples each ...",
                        flush=True,
                    )
                    suspend[where] = await suspended_delays(api, where, args.suspend_samples, run)
                    for kind in ("ours", "bare"):
                        values, in_run = suspend[where][kind], suspend[where][f"{kind} in run"]
                        print(
                            f"   {kind:<4} decision -> Completed p50 {pct(values, 50):.2f} s "
                            f"(min {min(values):.2f}, max {max(values):.2f}); of which the "
                            f"resumed run Running -> Completed p50 {pct(in_run, 50):.2f} s",
                            flush=True,
                        )
            finally:
                stop_processes(processes)

        print(f"5. {args.waiters} waits at once in pause mode ...", flush=True)
        m = await many(
            api,
            service,
            args.waiters,
            args.window,
            run,
            api_url,
            args.create_timeout,
            shared_client=not args.client_per_run,
        )
        if m["waiting"] < args.waiters:
            print(
                f"   only {m['waiting']} of {args.waiters} tasks existed after "
                f"{args.create_timeout:.0f} s; measured with those waiting"
            )
        print(
            f"   {m['waiting']} tasks waiting after {m['created_s']:.1f} s; "
            f"Prefect API requests/s while waiting ({args.window:.0f} s window): "
            f"{m['per_second']:.1f}; RSS peak {m['rss_peak']:.0f} MB "
            f"(current {m['rss_current']:.0f} MB)"
        )
        n = m["waiting"]
        print(
            f"   approved the {n} waiting: {m['finished']} of {args.waiters} flows finished approved "
            f"in {m['finish_s']:.1f} s"
        )

    print()
    print(f"  {'target':<40} {'measured':>16}   {'goal':<14} result")
    print(line("resume delay p50", f"{o50:.3f} s", "<= 0.3 s", o50 <= 0.3))
    print(line("resume delay p99", f"{o99:.3f} s", "<= 1 s", o99 <= 1.0))
    print(line("faster than bare pause (p50)", f"{ratio:.1f}x", ">= 20x", ratio >= 20))
    for where, measured in suspend.items():
        ours50, bare50 = pct(measured["ours"], 50), pct(measured["bare"], 50)
        print(
            line(
                f"suspend, {where}: ours p50 (bare p50)",
                f"{ours50:.2f} ({bare50:.2f}) s",
                "<= bare + 0.3",
                ours50 <= bare50 + 0.3,
            )
        )
    w, n = args.waiters, m["waiting"]
    print(line(f"{n} waits: peak RSS", f"{m['rss_peak']:.0f} MB", "< 500 MB", m["rss_peak"] < 500))
    print(
        line(
            f"{n} waits: Prefect API req/s",
            f"{m['per_second']:.1f}",
            "< 100/s",
            m["per_second"] < 100,
        )
    )
    print(line(f"{w} waits: all finished", f"{m['finished']}/{w}", f"{w}/{w}", m["finished"] == w))
    if n < 1000:
        print(f"  NOTE: measured at {n} concurrent waits, not 1,000.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--baseline-samples", type=int, default=5)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument(
        "--suspend-samples",
        type=int,
        default=5,
        help="suspend-mode samples per kind under flow.serve and under a worker (0: skip)",
    )
    parser.add_argument(
        "--client-per-run",
        action="store_true",
        help="let each of the waiting runs open its own Prefect API client (Prefect's "
        "default outside a shared AsyncClientContext; ~0.8 MB each)",
    )
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=None, help="the service's (default: free)")
    parser.add_argument(
        "--prefect-db",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the Prefect server's database (default: a throw-away PostgreSQL cluster)",
    )
    parser.add_argument(
        "--create-timeout", type=float, default=900.0, help="seconds for the waits to start"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="peopletasks-resume-"))
    args.workdir = str(workdir)
    svc: Service | None = None
    prefect_server: Any = None
    cluster: Any = None
    try:
        print(f"starting prefect server start on {args.prefect_db} ...", flush=True)
        prefect_server, cluster = start_prefect(workdir, args.prefect_db)
        svc = Service(workdir, args.port or free_port(), prefect_server.api_url)
        svc.start()
        # Before this process first imports prefect: its settings come from here.
        os.environ["PREFECT_API_URL"] = prefect_server.api_url
        os.environ["PREFECT_HOME"] = str(workdir / "prefect")
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
        # With one shared API client (16 connections), a thousand runs starting at
        # once queue for it longer than the default minute.
        os.environ.setdefault("PREFECT_API_REQUEST_TIMEOUT", "900")
        asyncio.run(main_async(args, svc))
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        if svc is not None:
            svc.stop()
        if prefect_server is not None:
            prefect_server.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
