"""Reliability: what the service guarantees under crashes and races, on both stores.

    .venv/bin/python bench/reliability.py [--sqlite] [--postgres] [--tasks 600] [--kills 3]
                                          [--rounds 100] [--deciders 50]

Not a speed bench: it counts what was lost, doubled or decided twice, against real
`peopletasks serve` processes (tests/support/server.py), a real webhook receiver
(tests/support/receiver.py) and, for PostgreSQL, a throw-away cluster
(tests/support/postgres.py). Both stores unless `--sqlite` or `--postgres` picks one.

1. Kill test. A fresh store; `--tasks` tasks, each with a webhook to the receiver;
   then one approval per task (each with the task's own `approverSecret`),
   `--in-flight` at a time, while the service is SIGKILLed `--kills` times (the k-th
   kill once k/(kills+1) of the decisions are answered and some are in flight to its
   victim; the process restarted on the same store and port at once). SQLite: one
   replica. PostgreSQL: two, each decision sent to one of them (task i to replica
   i mod 2), killing them in turn. A client retries a decision there, with a pause
   doubling from 50 to 500 ms, until it is answered: when it could not connect (the
   process is down), and when the connection broke before an answer (the decision
   may or may not have committed: the retry answers 200 or, if it had, 409). When
   every decision is answered, it waits (`--drain-timeout`) until the receiver has a
   delivery of every decided task and the store holds no undelivered one, then
   counts:
   - acknowledged: decisions answered 200; lost: acknowledged but not approved in the
     store (must be 0); decided twice: tasks whose history holds two decisions (0);
     decided tasks with other than one webhook event in the store (0);
   - deliveries expected (tasks the store shows decided) / received (tasks with at
     least one delivery) / lost (decided, never delivered: must be 0) / repeated (a
     `webhook-id` received again: at-least-once delivery allows it) / duplicated
     (tasks delivered under two different webhook-ids: must be 0) / phantom
     (deliveries of a task the store does not show decided: must be 0).
2. Concurrent decisions. A fresh store; `--rounds` rounds, each a fresh task and
   `--deciders` concurrent decisions, approve and reject alternating (over two
   replicas on PostgreSQL, one on SQLite): winners per round (answers 200: exactly
   one every round), the others 409, and the task's history holds exactly one
   decision, the winner's (its comment names the winning decider).

Prints a table per store, figure beside what it must be; exits 1 if any guarantee
failed (the work directory with the service logs is then kept), 0 otherwise.
Every process, cluster and temp dir it started is stopped and removed at the end,
also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.postgres import PostgresCluster, postgres_available  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402
from tests.support.server import ServiceProcess, cli, service_env  # noqa: E402

from peopletasks.store.tables import (  # noqa: E402
    tasks,
    webhook_deliveries,
    webhook_events,
)

CREATOR = "reliability@example.com"
REQUESTER = "requester@example.com"
APPROVER = "approver@example.com"
DECISIONS = ("approved", "rejected")
#: A decision not answered within this long (retries included) counts as unanswered.
DECISION_DEADLINE = 180.0
#: Pause before a decision's retry, doubling while its replica stays down (pacing the
#: retries, as a client would; not a wait on the restart).
RETRY_PAUSE = (0.05, 0.5)
POLL = 0.25
HOOK_PATH = "/kill"


# -- what this run started, stopped whatever happens -----------------------------------


class Stack:
    """The services, receivers and cluster of one run; `close()` stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[ServiceProcess] = []
        self.receivers: list[Receiver] = []
        self.cluster: PostgresCluster | None = None

    def service(self, env: dict[str, str], name: str) -> ServiceProcess:
        """A started `peopletasks serve`, its log in the work directory."""
        service = ServiceProcess(env)
        service.log = self.workdir / f"{name}.log"
        self.services.append(service)
        return service.start()

    def receiver(self) -> Receiver:
        receiver = Receiver().start()
        self.receivers.append(receiver)  # once started: stopping waits for its loop
        return receiver

    def postgres(self) -> PostgresCluster:
        self.cluster = PostgresCluster()
        self.cluster.start()
        return self.cluster

    def stop_services(self) -> None:
        for service in self.services:
            service.stop()

    def close(self) -> None:
        self.stop_services()
        for receiver in self.receivers:
            receiver.stop()
        if self.cluster is not None:
            self.cluster.stop()


@dataclass
class Store:
    name: str
    replicas: int
    new_database: Callable[[str], str]
    """A URL of a fresh, empty store named after a label."""


# -- waiting on conditions -------------------------------------------------------------


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Wait until `condition()` holds, at most `timeout` seconds; the seconds it took."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} "
            f"(expected {status}): {response.text[:500]}"
        )
    return response.json()


async def in_parallel(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> None:
    """`job(i)` for i in range(count), `concurrency` at a time."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


def new_token(env: dict[str, str]) -> str:
    return cli("token", "create", "--email", CREATOR, env=env).strip().splitlines()[-1]


async def create_task(
    client: httpx.AsyncClient, base: str, token: str, title: str
) -> dict[str, Any]:
    created: dict[str, Any] = expect(
        await client.post(
            f"{base}/people-task/tasks",
            headers={"Authorization": f"Bearer {token}"},
            json={"title": title, "requester": REQUESTER, "approver": APPROVER},
        ),
        201,
    )
    return created


# -- the store as it stands ------------------------------------------------------------


@dataclass
class StoreState:
    status: dict[str, str]
    """Task id -> status."""
    decisions: dict[str, int]
    """Task id -> decisions in its status history."""
    events: dict[str, int]
    """Task id -> webhook events written for it."""
    deliveries: Counter[str]
    """Delivery status -> how many."""

    @property
    def decided(self) -> set[str]:
        return {task for task, status in self.status.items() if status in DECISIONS}

    @property
    def approved(self) -> set[str]:
        return {task for task, status in self.status.items() if status == "approved"}


async def read_store(url: str) -> StoreState:
    """Read the store directly (not through the service): tasks, events, deliveries."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(select(tasks.c.id, tasks.c.status, tasks.c.status_history))
            ).all()
            event_rows = (
                await conn.execute(
                    select(tasks.c.id, func.count(webhook_events.c.id))
                    .join(webhook_events, webhook_events.c.task_seq == tasks.c.seq)
                    .group_by(tasks.c.id)
                )
            ).all()
            delivery_rows = (
                await conn.execute(
                    select(webhook_deliveries.c.status, func.count()).group_by(
                        webhook_deliveries.c.status
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return StoreState(
        status={row.id: row.status for row in rows},
        decisions={
            row.id: sum(1 for entry in row.status_history or () if entry["to"] in DECISIONS)
            for row in rows
        },
        events={task_id: count for task_id, count in event_rows},
        deliveries=Counter({status: count for status, count in delivery_rows}),
    )


@dataclass
class Receipt:
    message_id: str
    """Its `webhook-id`."""
    at: float
    """`time.time()` when it arrived."""


def receipts(receiver: Receiver, path: str) -> dict[str, list[Receipt]]:
    """Task id -> each delivery received for it on `path`, in order."""
    by_task: dict[str, list[Receipt]] = {}
    for r in receiver.at(path):
        task_id = str(json.loads(r.body)["id"])
        by_task.setdefault(task_id, []).append(Receipt(r.headers["webhook-id"], r.at))
    return by_task


# -- 1. the kill test ------------------------------------------------------------------


@dataclass
class Kill:
    answered: int
    """Decisions answered when the kill came."""
    in_flight: int
    """Decisions sent to the killed process and not yet answered."""
    at: float
    """`time.time()` once the killed process is gone (the receiver stamps receipts on the
    same clock)."""
    restart_seconds: float = 0.0


@dataclass
class KillFigures:
    sent: int = 0
    acknowledged: set[str] = field(default_factory=set)
    conflict_after_lost_answer: int = 0
    """409 on a retry after a broken connection: the first attempt had committed."""
    refused: int = 0
    """Attempts that could not connect (the process was down)."""
    answers_lost: int = 0
    """Attempts whose connection broke before an answer."""
    server_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    unanswered: int = 0
    kills: list[Kill] = field(default_factory=list)
    drain_seconds: float = float("nan")
    drained: bool = False
    state: StoreState | None = None
    received: dict[str, list[Receipt]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        assert self.state is not None
        return len(self.acknowledged - self.state.approved)

    @property
    def decided_twice(self) -> int:
        assert self.state is not None
        return sum(1 for n in self.state.decisions.values() if n > 1)

    @property
    def lost_deliveries(self) -> int:
        assert self.state is not None
        return len(self.state.decided - self.received.keys())

    @property
    def repeated(self) -> int:
        return sum(len(got) - len({r.message_id for r in got}) for got in self.received.values())

    @property
    def repeats_before_kill(self) -> str:
        """Of the repeated webhook-ids: how many first arrived before a kill (the killed
        process had sent them but not yet written down that they were delivered), at
        most how long before it, and how long after the first they came again (at the
        restart on SQLite; once the dead replica's lease lapses on PostgreSQL)."""
        before: list[float] = []
        again: list[float] = []
        for got in self.received.values():
            for message_id, n in Counter(r.message_id for r in got).items():
                if n < 2:
                    continue
                times = sorted(r.at for r in got if r.message_id == message_id)
                after = [kill.at - times[0] for kill in self.kills if kill.at >= times[0]]
                if after:
                    before.append(min(after))
                again.append(times[1] - times[0])
        if not again:
            return "-"
        return (
            f"{len(before):,}: {max(before, default=0) * 1000:.0f} ms; "
            f"{min(again):.1f}-{max(again):.1f} s"
        )

    @property
    def duplicated(self) -> int:
        return sum(1 for got in self.received.values() if len({r.message_id for r in got}) > 1)

    @property
    def phantom(self) -> int:
        assert self.state is not None
        return len(self.received.keys() - self.state.decided)

    @property
    def kills_during_decisions(self) -> int:
        """Kills that cut off decisions in flight to the killed process."""
        return sum(1 for kill in self.kills if kill.in_flight > 0)


class Progress:
    """Decisions answered and in flight per replica; a change wakes those waiting on it."""

    def __init__(self, replicas: int) -> None:
        self.answered = 0
        self.in_flight = [0] * replicas
        self._changed = asyncio.Condition()

    async def sending(self, replica: int, delta: int) -> None:
        async with self._changed:
            self.in_flight[replica] += delta
            self._changed.notify_all()

    async def answer(self) -> None:
        async with self._changed:
            self.answered += 1
            self._changed.notify_all()

    async def until(self, condition: Callable[[Progress], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: condition(self))


async def kill_test(store: Store, stack: Stack, args: argparse.Namespace) -> KillFigures:
    figures = KillFigures(sent=args.tasks)
    started = time.monotonic()
    url = store.new_database("kill")
    env = service_env(url, secrets.token_hex(32))
    token = new_token(env)
    receiver = stack.receiver()
    replicas = [stack.service(env, f"kill-{n}") for n in range(store.replicas)]
    hook = receiver.url(HOOK_PATH)
    created: list[dict[str, Any]] = [{} for _ in range(args.tasks)]
    limits = httpx.Limits(max_connections=args.in_flight * 2)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def create(i: int) -> None:
            task = await create_task(client, replicas[0].url, token, f"kill {i}")
            expect(
                await client.post(
                    f"{replicas[0].url}/people-task/webhooks",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"url": hook, "taskId": task["id"]},
                ),
                201,
            )
            created[i] = task

        await in_parallel(args.tasks, args.in_flight, create)
        print(f"  {store.name}: {args.tasks} tasks with a webhook each; deciding", flush=True)

        progress = Progress(len(replicas))

        async def decide(i: int) -> None:
            task = created[i]
            replica = i % len(replicas)  # a client of that replica: it retries there
            deadline = time.monotonic() + DECISION_DEADLINE
            may_have_committed = False
            pause = RETRY_PAUSE[0]
            while True:
                await progress.sending(replica, +1)
                try:
                    response = await client.put(
                        f"{replicas[replica].url}/people-task/tasks/{task['id']}/approve",
                        json={"secret": task["approverSecret"], "comment": f"kill {i}"},
                    )
                except httpx.ConnectError:
                    figures.refused += 1  # nothing was sent: the process is down
                except httpx.TransportError:
                    figures.answers_lost += 1  # sent; it died before answering
                    may_have_committed = True
                else:
                    if response.status_code == 200:
                        figures.acknowledged.add(task["id"])
                        break
                    if response.status_code == 409 and may_have_committed:
                        figures.conflict_after_lost_answer += 1
                        break
                    if response.status_code < 500:
                        figures.unexpected.append(
                            f"task {i}: {response.status_code} {response.text[:200]}"
                        )
                        break
                    figures.server_errors += 1
                finally:
                    await progress.sending(replica, -1)
                if time.monotonic() > deadline:
                    figures.unanswered += 1
                    break
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_PAUSE[1])
            await progress.answer()

        async def killer() -> None:
            for k in range(1, args.kills + 1):
                victim = (k - 1) % len(replicas)
                threshold = k * args.tasks // (args.kills + 1)

                def due(p: Progress, share: int = threshold, victim: int = victim) -> bool:
                    """That share answered, with decisions in flight to the victim."""
                    done = p.answered >= args.tasks
                    return done or (p.answered >= share and p.in_flight[victim] > 0)

                await progress.until(due)
                if progress.answered >= args.tasks:
                    print(f"  {store.name}: every decision answered before kill {k}", flush=True)
                    return
                answered, in_flight = progress.answered, progress.in_flight[victim]
                service = replicas[victim]
                await asyncio.to_thread(service.stop, signal.SIGKILL)
                kill = Kill(answered, in_flight, time.time())  # dead and reaped by now
                began = time.monotonic()
                service.log = stack.workdir / f"kill-{victim}-after-kill-{k}.log"
                await asyncio.to_thread(service.start)
                kill.restart_seconds = time.monotonic() - began
                figures.kills.append(kill)
                print(
                    f"  {store.name}: SIGKILL {k} of replica {victim} at {kill.answered} answered, "
                    f"{kill.in_flight} in flight to it; healthy again in "
                    f"{kill.restart_seconds:.1f}s",
                    flush=True,
                )

        await asyncio.gather(in_parallel(args.tasks, args.in_flight, decide), killer())

    decided = (await read_store(url)).decided

    async def drained() -> bool:
        got = receipts(receiver, HOOK_PATH)
        if not decided <= got.keys():
            return False
        state = await read_store(url)
        return state.deliveries["pending"] == 0

    try:
        figures.drain_seconds = await until(drained, args.drain_timeout, "deliveries drained")
        figures.drained = True
    except TimeoutError as exc:
        print(f"  {store.name}: {exc}", flush=True)
    stack.stop_services()
    figures.state = await read_store(url)
    figures.received = receipts(receiver, HOOK_PATH)
    figures.seconds = time.monotonic() - started
    return figures


# -- 2. concurrent decisions -----------------------------------------------------------


@dataclass
class RaceFigures:
    rounds: int = 0
    one_winner: int = 0
    """Rounds with exactly one 200 and every other decider 409."""
    history_ok: int = 0
    """Rounds whose task's history holds exactly one decision, the winner's."""
    winners: Counter[int] = field(default_factory=Counter)
    """Winners per round -> how many rounds."""
    other_answers: Counter[int] = field(default_factory=Counter)
    """Status codes other than 200 / 409 -> how many."""
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def race_test(store: Store, stack: Stack, args: argparse.Namespace) -> RaceFigures:
    figures = RaceFigures()
    started = time.monotonic()
    url = store.new_database("race")
    env = service_env(url, secrets.token_hex(32))
    token = new_token(env)
    replicas = [stack.service(env, f"race-{n}") for n in range(store.replicas)]
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.deciders * 2)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for n in range(args.rounds):
            task = await create_task(client, replicas[n % len(replicas)].url, token, f"race {n}")

            async def decide(j: int, task: dict[str, Any] = task) -> int:
                action = ("approve", "reject")[j % 2]
                response = await client.put(
                    f"{replicas[j % len(replicas)].url}/people-task/tasks/{task['id']}/{action}",
                    json={"secret": task["approverSecret"], "comment": f"decider {j}"},
                )
                return response.status_code

            answers = await asyncio.gather(*(decide(j) for j in range(args.deciders)))
            winners = [j for j, status in enumerate(answers) if status == 200]
            figures.rounds += 1
            figures.winners[len(winners)] += 1
            figures.other_answers.update(s for s in answers if s not in (200, 409))
            if len(winners) == 1 and answers.count(409) == args.deciders - 1:
                figures.one_winner += 1
            else:
                figures.failures.append(f"round {n}: answers {Counter(answers)}")
            history = expect(
                await client.get(
                    f"{replicas[0].url}/people-task/tasks/{task['id']}/history", headers=auth
                ),
                200,
            )
            decisions = [entry for entry in history if entry["event"] in DECISIONS]
            if (
                len(winners) == 1
                and len(decisions) == 1
                and decisions[0]["event"] == DECISIONS[winners[0] % 2]
                and decisions[0]["comment"] == f"decider {winners[0]}"
            ):
                figures.history_ok += 1
            else:
                figures.failures.append(f"round {n}: history {decisions}, winners {winners}")
    stack.stop_services()
    figures.seconds = time.monotonic() - started
    return figures


# -- the report ------------------------------------------------------------------------


@dataclass
class Result:
    store: Store
    kill: KillFigures | None
    race: RaceFigures | None


@dataclass
class Row:
    label: str
    value: Callable[[Result], Any] | None = None
    must: str = ""
    holds: Callable[[Result], bool] | None = None
    """For a guarantee: whether it held in a result."""
    section: str = "kill"
    """"kill" or "race": the section the row needs."""


def _in_flight(r: Result) -> str:
    assert r.kill is not None
    return ", ".join(str(kill.in_flight) for kill in r.kill.kills) or "-"


def _restarts(r: Result) -> str:
    assert r.kill is not None
    return ", ".join(f"{kill.restart_seconds:.1f}" for kill in r.kill.kills) or "-"


def _state(r: Result) -> StoreState:
    assert r.kill is not None and r.kill.state is not None
    return r.kill.state


def _k(r: Result) -> KillFigures:
    assert r.kill is not None
    return r.kill


def _r(r: Result) -> RaceFigures:
    assert r.race is not None
    return r.race


def table_rows(args: argparse.Namespace) -> list[Row]:
    kills, rounds = args.kills, args.rounds
    return [
        Row(f"kill test: {args.tasks} decisions with webhooks, {kills} SIGKILLs", section="kill"),
        Row("  replicas (one killed each time)", lambda r: r.store.replicas, section="kill"),
        Row(
            "  kills with decisions in flight to the victim",
            lambda r: _k(r).kills_during_decisions,
            str(kills),
            lambda r: _k(r).kills_during_decisions == kills,
            "kill",
        ),
        Row("  decisions in flight to the killed process", _in_flight, section="kill"),
        Row("  killed -> healthy again (s)", _restarts, section="kill"),
        Row(
            "  attempts refused (down) / answer cut off / 5xx",
            lambda r: f"{_k(r).refused:,} / {_k(r).answers_lost:,} / {_k(r).server_errors:,}",
            section="kill",
        ),
        Row("  decisions sent", lambda r: _k(r).sent, section="kill"),
        Row("  acknowledged (200)", lambda r: len(_k(r).acknowledged), section="kill"),
        Row(
            "  committed, answer cut off (409 on retry)",
            lambda r: _k(r).conflict_after_lost_answer,
            section="kill",
        ),
        Row(
            "  unanswered / unexpected answers",
            lambda r: f"{_k(r).unanswered} / {len(_k(r).unexpected)}",
            "0 / 0",
            lambda r: _k(r).unanswered == 0 and not _k(r).unexpected,
            "kill",
        ),
        Row(
            "  decided in the store",
            lambda r: len(_state(r).decided),
            "= sent",
            lambda r: len(_state(r).decided) == _k(r).sent,
            "kill",
        ),
        Row(
            "  LOST (acknowledged, not approved in the store)",
            lambda r: _k(r).lost,
            "0",
            lambda r: _k(r).lost == 0,
            "kill",
        ),
        Row(
            "  decided twice (two decisions in history)",
            lambda r: _k(r).decided_twice,
            "0",
            lambda r: _k(r).decided_twice == 0,
            "kill",
        ),
        Row(
            "  decided tasks without exactly one event",
            lambda r: sum(1 for t in _state(r).decided if _state(r).events.get(t) != 1),
            "0",
            lambda r: all(_state(r).events.get(t) == 1 for t in _state(r).decided),
            "kill",
        ),
        Row(
            "  deliveries expected (decided tasks)",
            lambda r: len(_state(r).decided),
            section="kill",
        ),
        Row("  received (tasks with a delivery)", lambda r: len(_k(r).received), section="kill"),
        Row(
            "  LOST deliveries (decided, never received)",
            lambda r: _k(r).lost_deliveries,
            "0",
            lambda r: _k(r).drained and _k(r).lost_deliveries == 0,
            "kill",
        ),
        Row(
            "  repeated (a webhook-id received again)",
            lambda r: _k(r).repeated,
            "allowed",
            section="kill",
        ),
        Row(
            "    n: first seen <= _ before a kill; again _ on",
            lambda r: _k(r).repeats_before_kill,
            section="kill",
        ),
        Row(
            "  DUPLICATED (a task under a second webhook-id)",
            lambda r: _k(r).duplicated,
            "0",
            lambda r: _k(r).duplicated == 0,
            "kill",
        ),
        Row(
            "  phantom (delivered, not decided)",
            lambda r: _k(r).phantom,
            "0",
            lambda r: _k(r).phantom == 0,
            "kill",
        ),
        Row(
            "  undelivered in the store at the end",
            lambda r: sum(n for s, n in _state(r).deliveries.items() if s != "delivered"),
            "0",
            lambda r: all(s == "delivered" for s in _state(r).deliveries),
            "kill",
        ),
        Row(
            "  drained, after the last answer (s)",
            lambda r: f"{_k(r).drain_seconds:.1f}",
            section="kill",
        ),
        Row("  wall time (s)", lambda r: f"{_k(r).seconds:.1f}", section="kill"),
        Row(f"concurrent decisions: {rounds} rounds of {args.deciders} deciders", section="race"),
        Row("  replicas", lambda r: r.store.replicas, section="race"),
        Row("  rounds", lambda r: _r(r).rounds, section="race"),
        Row(
            "  rounds with exactly one winner, others 409",
            lambda r: _r(r).one_winner,
            str(rounds),
            lambda r: _r(r).one_winner == _r(r).rounds == rounds,
            "race",
        ),
        Row(
            "  winners in a round: rounds",
            lambda r: ", ".join(f"{w}: {n}" for w, n in sorted(_r(r).winners.items())),
            section="race",
        ),
        Row(
            "  answers other than 200 / 409",
            lambda r: sum(_r(r).other_answers.values()),
            "0",
            lambda r: not _r(r).other_answers,
            "race",
        ),
        Row(
            "  history holds one decision, the winner's",
            lambda r: _r(r).history_ok,
            str(rounds),
            lambda r: _r(r).history_ok == rounds,
            "race",
        ),
        Row("  wall time (s)", lambda r: f"{_r(r).seconds:.1f}", section="race"),
    ]


def render(results: list[Result], args: argparse.Namespace) -> tuple[str, list[str]]:
    """The table, and every guarantee that failed (store: row)."""
    header = ["figure", *(r.store.name for r in results), "must be"]
    lines: list[list[str]] = [header]
    failed: list[str] = []
    for row in table_rows(args):
        present = [r for r in results if getattr(r, row.section) is not None]
        if not present:
            continue
        cells = [row.label]
        for result in results:
            if row.value is None or getattr(result, row.section) is None:
                cells.append("")
                continue
            value = row.value(result)
            text = f"{value:,}" if isinstance(value, int) else str(value)
            if row.holds is not None and not row.holds(result):
                text += " FAILED"
                failed.append(f"{result.store.name}: {row.label.strip()}")
            cells.append(text)
        cells.append(row.must)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(widths[i + 1]) for i, cell in enumerate(line[1:-1])]
        out.append("  ".join([first, *rest, line[-1]]).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out), failed


# -- main ------------------------------------------------------------------------------


async def run_store(store: Store, stack: Stack, args: argparse.Namespace) -> Result:
    result = Result(store, None, None)
    print(f"{store.name}: kill test ...", flush=True)
    result.kill = await kill_test(store, stack, args)
    print(f"{store.name}: concurrent decisions ...", flush=True)
    result.race = await race_test(store, stack, args)
    return result


async def run(
    args: argparse.Namespace, workdir: Path, stacks: list[Stack]
) -> tuple[list[Result], list[str]]:
    """Both tests on each store; `stacks` gets what each store started, to be closed
    whatever happens (here, and again by the caller, should this be interrupted)."""
    results: list[Result] = []
    details: list[str] = []
    stores: list[tuple[str, int]] = []
    if args.sqlite:
        stores.append(("SQLite", 1))
    if args.postgres:
        stores.append(("PostgreSQL", 2))
    for name, replicas in stores:
        stack = Stack(workdir / name.lower())
        stack.workdir.mkdir()
        stacks.append(stack)
        try:
            if name == "SQLite":
                folder = stack.workdir

                def sqlite_url(label: str, folder: Path = folder) -> str:
                    return f"sqlite+aiosqlite:///{folder / label}.db"

                store = Store(name, replicas, sqlite_url)
            else:
                cluster = await asyncio.to_thread(stack.postgres)
                store = Store(name, replicas, cluster.create_database)
            result = await run_store(store, stack, args)
        finally:
            await asyncio.to_thread(stack.close)
        results.append(result)
        if result.kill is not None:
            details += [f"{name}: {line}" for line in result.kill.unexpected[:10]]
        if result.race is not None:
            details += [f"{name}: {line}" for line in result.race.failures[:10]]
    return results, details


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sqlite", action="store_true", help="SQLite only (default: both)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL only (default: both)")
    parser.add_argument("--tasks", type=int, default=600, help="kill test: tasks and decisions")
    parser.add_argument("--kills", type=int, default=3, help="kill test: SIGKILLs")
    parser.add_argument("--in-flight", type=int, default=32, help="kill test: decisions at once")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="kill test: seconds to wait for deliveries",
    )
    parser.add_argument("--rounds", type=int, default=100, help="concurrent decisions: rounds")
    parser.add_argument(
        "--deciders", type=int, default=50, help="concurrent decisions: deciders a round"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if not args.sqlite and not args.postgres:
        args.sqlite = args.postgres = True
    if args.tasks < args.kills + 1 or args.kills < 0 or args.rounds < 1 or args.deciders < 2:
        parser.error("need --tasks > --kills >= 0, --rounds >= 1, --deciders >= 2")
    if args.postgres and not postgres_available():
        parser.error("PostgreSQL binaries not found (install postgresql, or use --sqlite)")
    return args


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="peopletasks-reliability-"))
    keep = args.keep
    started = time.monotonic()
    stacks: list[Stack] = []
    try:
        with sigterm_as_interrupt():
            try:
                results, details = asyncio.run(run(args, workdir, stacks))
            finally:
                for stack in stacks:
                    stack.close()  # idempotent: already closed unless interrupted
        table, failed = render(results, args)
        print()
        print(table)
        print(f"\ntotal wall time {time.monotonic() - started:.0f}s")
        for line in details:
            print(line)
        if failed:
            keep = True
            print("\nFAILED:\n  " + "\n  ".join(failed))
            return 1
        print("\nevery guarantee held")
        return 0
    except KeyboardInterrupt:
        return 130
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
