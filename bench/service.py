"""Load the People Task service (SQLite) and a bare FastAPI app with wrk; compare.

    .venv/bin/python bench/service.py [--duration 10] [--connections 32] [--tasks 100000]

One run: fills a fresh SQLite store in a temp directory with `--tasks` realistic
tasks (written in-process with the project's own tables and domain), starts
`peopletasks serve` and a bare FastAPI app (uvicorn, uvloop + httptools, no
access log) whose one route returns a task-sized JSON, then runs
`wrk -t1 -c<connections> -d<duration>s --latency` against each operation after a
warm-up, and prints requests/s, p50, p99, the ratio to the bare app's run just
before it (bare runs again before create, approve and respond) and whether each
target is met. "respond" is one approver's response on a five-approver `all` task
(the pool made through the API; the fifth response decides the task). Benchmarks are not tests: it exits 0 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

BENCH_USER = "bench@example.com"
POOL_APPROVER = "approve-bench@example.com"
APPROVERS = 1000
REQUESTERS = 50
STATUS_MIX = (("pending", 0.6), ("approved", 0.2), ("rejected", 0.2))
LIST_QUERY = "filter=status:pending&sort=decisionBy:1&limit=100"
COUNT_QUERY = "filter=status:pending"


# -- processes ----------------------------------------------------------------


class Processes:
    """Every process the bench starts, each in a session of its own; stopped at the end."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._running.append(proc)
        return proc

    def run(self, argv: Sequence[str]) -> str:
        """Run to completion; its output (stopped with the others if interrupted)."""
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._running.append(proc)
        try:
            out, _ = proc.communicate()
        finally:
            self.stop(proc)
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{text}")
        return text

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)  # its own session: the process and its children
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc in self._running:
            self._running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}):\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: no 200 within {timeout:.0f}s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the store ------------------------------------------------------------------


@dataclass
class Person:
    """An approver whose lists the bench reads: with their dashboard token (the tasks they
    approve or request), or as an API-token user."""

    email: str
    dashboard: str
    token: str
    tasks: int
    pending: int

    def describe(self) -> str:
        return f"{self.email}: {self.tasks} tasks, {self.pending} pending"


@dataclass
class Store:
    url: str
    key: str
    token: str = ""  #: the bench user's, who created every task
    org_id: int = 0
    task_ids: list[str] = field(default_factory=list)  #: a sample, for GET task
    busiest: Person | None = None  #: the approver with the most tasks
    median: Person | None = None  #: the approver with the median number of tasks
    fill_seconds: float = 0.0


def _ms(value: datetime) -> datetime:
    """To the millisecond, as the service stores times."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _public_id(at: datetime) -> str:
    """Like the service's ids: 4 bytes of (creation) time, 8 random bytes."""
    return f"{int(at.timestamp()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


DESCRIPTIONS = (
    "Please review the attached request and approve or reject it before the deadline.",
    "Quarterly budget adjustment for the platform team; details in the linked sheet.",
    "New vendor onboarding: security questionnaire done, contract attached for sign-off.",
    "Access request to the production database for the on-call rotation (read-only).",
    "",
)
SUBJECTS = ("Purchase request", "Access request", "Expense report", "Contract", "Time off")


def task_rows(
    rng: random.Random,
    count: int,
    *,
    org_id: int,
    approvers: Sequence[str],
    requesters: Sequence[str],
    now: datetime,
    statuses: Sequence[tuple[str, float]] = STATUS_MIX,
) -> list[dict[str, Any]]:
    """`count` tasks created over the past year (oldest first) by the bench user.

    Approvers are skewed (a few managers approve a lot); pending tasks have
    deadlines over the coming year (5% none), decided ones were decided in time.
    """
    from peopletasks.domain.views import status_entry

    year = timedelta(days=365)
    weights = [1 / (rank + 10) for rank in range(len(approvers))]
    chosen = rng.choices(approvers, weights=weights, k=count)
    names = [name for name, _ in statuses]
    picked = rng.choices(names, weights=[share for _, share in statuses], k=count)
    created = sorted(_ms(now - year * rng.random()) for _ in range(count))
    rows = []
    for i in range(count):
        status, at = picked[i], created[i]
        deadline: datetime | None
        decided_at = None
        if status == "pending":
            deadline = _ms(now + timedelta(hours=1) + year * rng.random())
        else:
            decided_at = min(now, _ms(at + timedelta(hours=1 + 240 * rng.random())))
            deadline = _ms(decided_at + timedelta(days=30 * rng.random()))
        if rng.random() < 0.05:
            deadline = None
        rows.append(
            {
                "id": _public_id(at),
                "org_id": org_id,
                "title": f"{rng.choice(SUBJECTS)} #{rng.randrange(1, 99999)}",
                "description": rng.choice(DESCRIPTIONS),
                "requester": rng.choice(requesters),
                "approver": chosen[i],
                "status": status,
                "decision_by": deadline,
                "allow_late_decision": rng.random() < 0.1,
                "public": True,
                "decision_rule": "any",
                "active": True,
                "created_by": BENCH_USER,
                "created_at": at,
                "updated_at": decided_at or at,
                "decided_by": chosen[i] if decided_at else None,
                "decided_at": decided_at,
                "comment": "ok" if decided_at and rng.random() < 0.3 else None,
                # As the service keeps it on the row (created, then decided).
                "status_history": [
                    status_entry(None, "pending", BENCH_USER, at),
                    *(
                        [status_entry("pending", status, chosen[i], decided_at)]
                        if decided_at
                        else []
                    ),
                ],
            }
        )
    return rows


async def insert_tasks(store: Store, rows: list[dict[str, Any]], batch: int = 5000) -> None:
    """Bulk-insert tasks (their status history is on the row) in one transaction."""
    from peopletasks.service.app import build_domain
    from peopletasks.settings import Settings
    from peopletasks.store.tables import tasks

    domain = build_domain(Settings(database_url=store.url, secret_key=[store.key]))
    try:
        async with domain.db.write() as conn:
            for start in range(0, len(rows), batch):
                await conn.execute(tasks.insert(), rows[start : start + batch])
    finally:
        await domain.db.dispose()


async def fill(store: Store, count: int, seed: int) -> None:
    """Migrate, make the bench user's token, the people and `count` tasks."""
    from sqlalchemy import case, func, select

    from peopletasks.domain.principals import (
        authenticate_token,
        create_api_token,
        dashboard_token,
    )
    from peopletasks.service.app import build_domain
    from peopletasks.settings import Settings
    from peopletasks.store import migrate
    from peopletasks.store.tables import tasks

    started = time.perf_counter()
    migrate(store.url)
    rng = random.Random(seed)
    approvers = [f"approver{i:04d}@example.com" for i in range(APPROVERS)]
    requesters = [f"requester{i:02d}@example.com" for i in range(REQUESTERS)]
    domain = build_domain(Settings(database_url=store.url, secret_key=[store.key]))
    try:
        store.token = await create_api_token(domain, BENCH_USER, organization="default")
        store.org_id = (await authenticate_token(domain, store.token)).org_id
    finally:
        await domain.db.dispose()
    rows = task_rows(
        rng,
        count,
        org_id=store.org_id,
        approvers=approvers,
        requesters=requesters,
        now=datetime.now(UTC),
    )
    await insert_tasks(store, rows)
    store.fill_seconds = time.perf_counter() - started
    store.task_ids = [row["id"] for row in rng.sample(rows, min(10_000, len(rows)))]

    domain = build_domain(Settings(database_url=store.url, secret_key=[store.key]))
    try:
        async with domain.db.write() as conn:
            pending = func.sum(case((tasks.c.status == "pending", 1), else_=0))
            ranked = (
                await conn.execute(
                    select(tasks.c.approver, func.count(), pending)
                    .group_by(tasks.c.approver)
                    .order_by(func.count().desc(), tasks.c.approver)
                )
            ).all()
        until = datetime.now(UTC) + timedelta(days=1)
        people = [
            Person(
                email,
                dashboard_token(domain, store.org_id, email, until),
                await create_api_token(domain, email),
                int(total),
                int(waiting),
            )
            for email, total, waiting in (ranked[0], ranked[len(ranked) // 2])
        ]
        store.busiest, store.median = people
    finally:
        await domain.db.dispose()


async def add_pool(store: Store, count: int, seed: int) -> list[str]:
    """`count` pending tasks for POOL_APPROVER (deadline in a month): each as "id secret"
    (its approver secret), in creation order."""
    from peopletasks.domain.principals import Role, task_secret
    from peopletasks.service.app import build_domain
    from peopletasks.settings import Settings

    rows = task_rows(
        random.Random(seed),
        count,
        org_id=store.org_id,
        approvers=[POOL_APPROVER],
        requesters=[f"requester{i:02d}@example.com" for i in range(REQUESTERS)],
        now=datetime.now(UTC),
        statuses=(("pending", 1.0),),
    )
    for row in rows:
        row["decision_by"] = _ms(datetime.now(UTC) + timedelta(days=30))
    await insert_tasks(store, rows)
    domain = build_domain(Settings(database_url=store.url, secret_key=[store.key]))
    try:
        return [
            f"{row['id']} {task_secret(domain, row['id'], Role.APPROVER, POOL_APPROVER)}"
            for row in rows
        ]
    finally:
        await domain.db.dispose()


async def add_response_pool(base: str, token: str, responses: int) -> list[str]:
    """Pending `all` tasks of five approvers, made through the API, enough for
    `responses` responses: each response as "id secret" (that approver's secret), the
    five of a task one after another (they arrive together, as concurrent responders)."""
    headers = {"Authorization": f"Bearer {token}"}
    approvers = [f"partner{i}@example.com" for i in range(5)]
    body = {
        "title": "Five partners approve",
        "requester": "requester00@example.com",
        "approvers": approvers,
        "decisionRule": "all",
        "decisionBy": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    lines: list[str] = []
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def one() -> None:
            async with gate:
                answer = await client.post("/people-task/tasks", json=body)
            answer.raise_for_status()
            created = answer.json()
            lines.extend(f"{created['id']} {created['approverSecrets'][a]}" for a in approvers)

        await asyncio.gather(*(one() for _ in range(math.ceil(responses / 5))))
    return lines


# -- wrk -----------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str
    output: str
    server_cpu: float = 0.0  #: the server's CPU use over the run, 1.0 = one core
    other_cpu: float = 0.0  #: CPU used by everything but the server, wrk and the bench (and stolen)

    @property
    def answered(self) -> bool:
        """Did any request finish within the run? (wrk's latencies are 0 otherwise)"""
        return self.requests > 0

    @property
    def ok_per_second(self) -> float:
        """Requests/s that got a 2xx answer (non-2xx are not counted)."""
        return (self.requests - self.non_2xx) / self.seconds

    @classmethod
    def parse(cls, name: str, output: str) -> Result:
        def find(pattern: str) -> re.Match[str]:
            match = re.search(pattern, output, re.MULTILINE)
            if match is None:
                raise RuntimeError(f"{name}: cannot read {pattern!r} in wrk's output:\n{output}")
            return match

        total = find(r"^\s*(\d+) requests in ([\d.]+\w+)")
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        errors = re.search(r"Socket errors: (.+)$", output, re.MULTILINE)
        return cls(
            name=name,
            requests=int(total.group(1)),
            seconds=_millis(total.group(2)) / 1000,
            p50_ms=_millis(find(r"^\s*50%\s+(\S+)").group(1)),
            p99_ms=_millis(find(r"^\s*99%\s+(\S+)").group(1)),
            non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
            socket_errors=errors.group(1).strip() if errors else "",
            output=output,
        )


@dataclass
class Load:
    """One wrk load: URL, optional script with its arguments, optional headers."""

    name: str
    url: str
    script: str | None = None
    script_args: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    warmup_args: tuple[str, ...] | None = None  #: script arguments for the warm-up, if different
    server_pid: int = 0  #: whose CPU use to report
    connections: int | None = None  #: wrk connections, if not --connections

    def argv(
        self, seconds: float, connections: int, timeout: float, *, warmup: bool = False
    ) -> list[str]:
        argv = [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout:g}s"]
        argv.append("--latency")
        for header in self.headers:
            argv += ["-H", header]
        if self.script:
            argv += ["-s", str(LUA / self.script)]
        argv.append(self.url)
        args = self.warmup_args if warmup and self.warmup_args is not None else self.script_args
        if args:
            argv += ["--", *args]
        return argv


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds a process (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _machine_busy() -> float:
    """CPU seconds the machine's processes used, all cores, plus time stolen by the host.

    Interrupt time is left out: loopback traffic (ours) is mostly accounted there.
    """
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + steal) / _TICK


def _own_cpu() -> float:
    """CPU seconds of this process and its finished children (wrk)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def wait_idle(pid: int, quiet: float, timeout: float = 120) -> tuple[float, float]:
    """Wait until the server has finished what earlier loads left queued (it keeps working
    on requests whose clients went away), then up to `quiet` seconds more until the rest
    of the machine uses less than a quarter of a core. The seconds waited for each."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = _process_cpu(pid)
        time.sleep(0.5)
        if _process_cpu(pid) - before < 0.05 * 0.5:
            break
    drained = time.monotonic() - started
    while time.monotonic() - started - drained < quiet:
        before = (_machine_busy(), _process_cpu(pid), _own_cpu())
        time.sleep(1.0)
        busy, server, ours = (
            b - a
            for a, b in zip(before, (_machine_busy(), _process_cpu(pid), _own_cpu()), strict=True)
        )
        if busy - server - ours < 0.25:
            break
    return drained, time.monotonic() - started - drained


def measure(procs: Processes, load: Load, args: argparse.Namespace) -> Result:
    drained, calmed = wait_idle(load.server_pid, args.quiet)
    note = f" (waited {drained:.0f}s for the server to go idle)" if drained > 1 else ""
    if calmed >= args.quiet > 0:
        note += f" (the machine stayed busy with other work for {calmed:.0f}s: going on)"
    elif calmed > 1.5:
        note += f" (waited {calmed:.0f}s for other work on the machine to calm down)"
    print(f"  {load.name}: warm-up {args.warmup:g}s, then {args.duration:g}s ...{note}", flush=True)
    connections = load.connections or args.connections
    if args.warmup > 0:
        procs.run(load.argv(args.warmup, connections, args.timeout, warmup=True))
    start = (time.monotonic(), _machine_busy(), _process_cpu(load.server_pid), _own_cpu())
    output = procs.run(load.argv(args.duration, connections, args.timeout))
    # (what is still queued in the server when wrk stops is not in wrk's numbers: see wait_idle)
    end = (time.monotonic(), _machine_busy(), _process_cpu(load.server_pid), _own_cpu())
    wall, busy, server, ours = (b - a for a, b in zip(start, end, strict=True))
    result = Result.parse(load.name, output)
    result.server_cpu = server / wall
    result.other_cpu = max(0.0, busy - server - ours) / wall
    if args.verbose:
        print(output)
    return result


# -- the bare app ----------------------------------------------------------------


def serve_bare(port: int, payload_file: Path) -> None:
    """A FastAPI app whose one GET route returns a fixed task-sized JSON."""
    import uvicorn
    from fastapi import FastAPI

    payload: dict[str, Any] = json.loads(payload_file.read_text())
    app = FastAPI()

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: str) -> dict[str, Any]:
        return payload

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


# -- report --------------------------------------------------------------------


@dataclass
class Target:
    text: str
    met: bool | None  #: None: no target


RESPOND = "respond (1 of 5, rule all)"


def target_for(name: str, result: Result, bare: Result) -> Target:
    ratio = result.ok_per_second / bare.ok_per_second
    floors = {"GET task": 0.6, "create": 0.3, "approve": 0.3, RESPOND: 0.25}
    if name in floors:
        return Target(f">= {floors[name]:g} x bare", ratio >= floors[name])
    if name.startswith("list") and name.endswith("1 client"):
        # A list's latency: one client asking at a time. Under 32 connections p99 is
        # mostly queueing (about 32 x the time one list takes), shown for throughput.
        return Target("p99 <= 25 ms", result.answered and result.p99_ms <= 25.0)
    return Target("-", None)


def is_bare(result: Result) -> bool:
    return result.name.startswith("bare GET")


def print_table(results: list[Result]) -> int:
    """Each operation is compared with the bare app's run just before it (the machine's
    speed drifts between runs: the bare app alone has measured 3,500-5,100 req/s)."""
    bare = results[0]
    header = ("operation", "req/s", "p50 ms", "p99 ms", "non-2xx", "x bare", "target", "met?")
    header += ("server CPU", "others' CPU")
    rows: list[tuple[str, ...]] = []
    missed = 0
    for result in results:
        if is_bare(result):
            bare = result
        target = target_for(result.name, result, bare)
        met = "-" if target.met is None else ("yes" if target.met else "MISSED")
        missed += target.met is False
        rows.append(
            (
                result.name,
                f"{result.ok_per_second:,.0f}"
                if result.ok_per_second >= 10
                else f"{result.ok_per_second:.1f}",
                f"{result.p50_ms:.2f}" if result.answered else "none",
                f"{result.p99_ms:.2f}" if result.answered else "none",
                str(result.non_2xx),
                f"{result.ok_per_second / bare.ok_per_second:.2f}",
                target.text,
                met,
                f"{result.server_cpu:.0%}",
                f"{result.other_cpu:.0%}",
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        left = {0, 6, 7}
        return "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    for result in results:
        if result.socket_errors:
            print(f"{result.name}: wrk socket errors: {result.socket_errors}")
    print(
        "server CPU: the served process over the run (100% = one core). others' CPU: the rest "
        "of the machine\n(not the server, wrk or this script; hypervisor steal included)."
    )
    disturbed = [r.name for r in results if r.other_cpu > 0.15]
    if disturbed:
        print(f"WARNING: the machine was busy with other work during: {', '.join(disturbed)}")
    return missed


def machine() -> str:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for text in info:
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy")
    )
    return (
        f"machine: nproc {os.cpu_count()}, {cpu or platform.machine()}, {platform.system()} "
        f"{platform.release()}\n"
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {versions}\n"
        f"{wrk_version.strip()}"
    )


def app_version() -> str:
    """Where the peopletasks package comes from, and its git commit (+ local changes)."""
    import peopletasks

    package = Path(peopletasks.__file__).resolve().parent

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=package, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return str(package)
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    return f"{package} (git {commit}{dirty})"


# -- the run -------------------------------------------------------------------


def bench(args: argparse.Namespace, workdir: Path, procs: Processes) -> None:
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"app: {app_version()}")
    store = Store(url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}", key=secrets.token_urlsafe(32))
    print(f"filling {args.tasks:,} tasks ...", flush=True)
    asyncio.run(fill(store, args.tasks, args.seed))
    assert store.busiest is not None and store.median is not None
    busiest, median = store.busiest, store.median
    print(
        f"filled in {store.fill_seconds:.1f}s ({args.tasks / store.fill_seconds:,.0f} tasks/s, "
        f"bulk insert, with history and people)",
        flush=True,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("PEOPLETASKS_")}
    env |= {"PEOPLETASKS_DATABASE_URL": store.url, "PEOPLETASKS_SECRET_KEY": store.key}
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.source), env.get("PYTHONPATH")]))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    peopletasks = Path(sys.executable).with_name("peopletasks")
    service = procs.start(
        [str(peopletasks), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env,
        log=workdir / "service.log",
    )
    wait_healthy(f"{base}/healthz", service, workdir / "service.log")

    # The bare app answers what GET /tasks/{id} answers, byte for byte the same shape.
    answer = httpx.get(
        f"{base}/people-task/tasks/{store.task_ids[0]}",
        headers={"Authorization": f"Bearer {store.token}"},
    )
    answer.raise_for_status()
    payload = workdir / "task.json"
    payload.write_bytes(answer.content)
    bare_port = free_port()
    here = str(Path(__file__).resolve())
    bare = procs.start(
        [sys.executable, here, "--serve-bare", str(bare_port), str(payload)],
        env=env,
        log=workdir / "bare.log",
    )
    wait_healthy(f"http://127.0.0.1:{bare_port}/tasks/x", bare, workdir / "bare.log")

    ids_file = workdir / "task-ids.txt"
    ids_file.write_text("\n".join(store.task_ids) + "\n")
    tasks_url = f"{base}/people-task/tasks"

    def bearer(token: str) -> tuple[str]:
        return (f"Authorization: Bearer {token}",)

    people = (APPROVERS, REQUESTERS)
    bare_url = f"http://127.0.0.1:{bare_port}/tasks/{store.task_ids[0]}"
    loads = [
        Load("bare GET", bare_url),
        Load("GET task", tasks_url, "get_task.lua", (str(ids_file),), bearer(store.token)),
        Load("list (dashboard, busiest)", f"{tasks_url}?secret={busiest.dashboard}&{LIST_QUERY}"),
        Load("list (dashboard, median)", f"{tasks_url}?secret={median.dashboard}&{LIST_QUERY}"),
        Load("list (token, creator)", f"{tasks_url}?{LIST_QUERY}", headers=bearer(store.token)),
        Load("list (token, median)", f"{tasks_url}?{LIST_QUERY}", headers=bearer(median.token)),
        Load(
            "list (dashboard, busiest), 1 client",
            f"{tasks_url}?secret={busiest.dashboard}&{LIST_QUERY}",
            connections=1,
        ),
        Load(
            "list (token, creator), 1 client",
            f"{tasks_url}?{LIST_QUERY}",
            headers=bearer(store.token),
            connections=1,
        ),
        Load(
            "count (dashboard, busiest)",
            f"{base}/people-task/tasks-count?secret={busiest.dashboard}&{COUNT_QUERY}",
        ),
        Load("bare GET (before create)", bare_url),
        Load(
            "create",
            tasks_url,
            "create.lua",
            (*map(str, people), "run"),
            bearer(store.token),
            warmup_args=(*map(str, people), "warmup"),
        ),
    ]
    for load in loads:
        load.server_pid = bare.pid if load.url == bare_url else service.pid
    print(
        f"settings: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency "
        f"--timeout {args.timeout:g}s, warm-up {args.warmup:g}s per load\n"
        f"store: SQLite, {args.tasks:,} tasks by {BENCH_USER} (the 'creator'), {APPROVERS} "
        f"approvers (skewed), {REQUESTERS} requesters, "
        + ", ".join(f"{share:.0%} {name}" for name, share in STATUS_MIX)
        + f", deadlines over a year\nbusiest approver {busiest.describe()}\n"
        f"median approver {median.describe()} (its dashboard token, and an API token of its own)",
        flush=True,
    )
    results = [measure(procs, load, args) for load in loads]

    # Approve: each request a distinct pending task. Reads bound what a write can do,
    # so size the pool from the GET task rate, with a margin.
    expected = results[1].ok_per_second
    measured_share = math.ceil(args.duration * expected * 1.5)
    warmup_share = math.ceil(args.warmup * expected * 1.5)
    print(f"  adding {measured_share + warmup_share:,} pending tasks to approve ...", flush=True)
    pool = asyncio.run(add_pool(store, measured_share + warmup_share, args.seed + 1))
    pool_files = (workdir / "approve-warmup.txt", workdir / "approve.txt")
    pool_files[0].write_text("\n".join(pool[:warmup_share]) + "\n")
    pool_files[1].write_text("\n".join(pool[warmup_share:]) + "\n")
    approve = Load(
        "approve",
        tasks_url,
        "approve.lua",
        (str(pool_files[1]),),
        warmup_args=(str(pool_files[0]),),
        server_pid=service.pid,
    )
    before = Load("bare GET (before approve)", bare_url, server_pid=bare.pid)
    results.append(measure(procs, before, args))
    results.append(measure(procs, approve, args))
    if results[-1].requests > measured_share:
        print(f"  approve: the pool of {measured_share:,} ran out: the rest got 409")

    # One approver's response on a five-approver `all` task (four of five leave it
    # pending; the fifth decides it): the same approve endpoint, a distinct approver each.
    print(f"  adding tasks for {measured_share + warmup_share:,} responses ...", flush=True)
    responses = asyncio.run(add_response_pool(base, store.token, measured_share + warmup_share))
    response_files = (workdir / "respond-warmup.txt", workdir / "respond.txt")
    cut = math.ceil(warmup_share / 5) * 5
    response_files[0].write_text("\n".join(responses[:cut]) + "\n")
    response_files[1].write_text("\n".join(responses[cut:]) + "\n")
    respond = Load(
        RESPOND,
        tasks_url,
        "approve.lua",
        (str(response_files[1]),),
        warmup_args=(str(response_files[0]),),
        server_pid=service.pid,
    )
    results.append(
        measure(procs, Load("bare GET (before respond)", bare_url, server_pid=bare.pid), args)
    )
    results.append(measure(procs, respond, args))

    print()
    missed = print_table(results)
    print()
    print(
        f"req/s counts 2xx answers only; p50/p99 are wrk's over all answers. Fill: "
        f"{store.fill_seconds:.1f}s for {args.tasks:,} tasks. Approve pool: {measured_share:,} "
        f"tasks (+{warmup_share:,} for the warm-up)."
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"targets MISSED: {missed}" if missed else "all targets met")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10, help="seconds per load (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the store (100000)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per load (2)")
    parser.add_argument("--timeout", type=float, default=30, help="wrk request timeout, s (30)")
    parser.add_argument(
        "--quiet",
        type=float,
        default=30,
        help="before each load, wait up to this many seconds for other work on the machine "
        "to calm down (30; 0: don't)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the fill (1)")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument(
        "--source",
        type=Path,
        help="load the peopletasks package from this directory (e.g. components/ of a "
        "`git worktree` of another commit) instead of the installed one",
    )
    parser.add_argument(
        "--serve-bare", nargs=2, metavar=("PORT", "PAYLOAD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return 0
    if not Path(WRK).exists():
        print(f"wrk not found ({WRK})", file=sys.stderr)
        return 2

    if args.source:
        args.source = args.source.resolve()
        sys.path.insert(0, str(args.source))
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="peopletasks-bench-"))
    with _signals_as_interrupt():
        try:
            bench(args, workdir, procs)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP all stop the run through the same clean-up
    (SIGINT too when the shell started us with it ignored, as `cmd &` does)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
