"""The service's own mail under a burst: 10,000 reminders due in the same second.

    .venv/bin/python bench/notify.py [--reminders 10000] [--delay-ms 10] [--lead 75]
                                     [--connections N]

One run:

1. makes a throw-away certificate and starts the far side of bench/mail.py: an aiosmtpd
   server that requires STARTTLS and AUTH, behind a proxy that holds every chunk
   `--delay-ms` each way (a mail provider across the Internet); the server notes the
   time it answers each message's DATA with 250;
2. baseline: a bare `Mailer` with the same pool sends 1,000 pre-rendered reminders
   through the same proxy (what the link and the pool allow, without the service);
3. starts `peopletasks serve` (SQLite in a temp dir, PEOPLETASKS_SMTP_* pointing at the
   proxy, `--connections` or the service's default pool) and creates `--reminders`
   tasks over HTTP, each with the same deadline and `reminders: {"beforeDue":
   ["PT600S"]}`, so that every reminder falls due at the same instant, `--lead` seconds
   after the start (the tasks are created before it; no mail on create);
4. waits until the server has every reminder, then prints the rate (messages/s, from
   the first 250 to the last), the delay from the due time to each 250 (p50 / p99 /
   max), how many came later than the bound `i / rate + 1 s` for the i-th message
   (the backlog ahead of it at the measured rate, plus a second), lost and duplicated
   messages (by Message-ID, and the service's own log: every message `sent`), and the
   service's CPU while it sent;
5. stops everything and removes its temp dir (also on Ctrl-C). Targets: >= 60 msg/s,
   every delay <= backlog / rate + 1 s, 0 lost (MISSED otherwise; exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import mail as far_side  # bench/mail.py, beside this file

TARGET_RATE = 60.0
BEFORE_DUE = 600
BIN = Path(sys.executable).parent / "peopletasks"
KEY = "bench-notify-signing-key-0123456789abcdef"


class TimedHandler(far_side.CountingHandler):
    """Counts as bench/mail.py's handler does, and notes when each message got its 250."""

    answered: dict[str, list[float]] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        headers = BytesParser(policy=default).parsebytes(
            envelope.original_content or b"", headersonly=True
        )
        message_id = str(headers["Message-ID"])  # long ones are folded over two lines
        TimedHandler.answered.setdefault(message_id, []).append(time.time())
        return answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def baseline(port: int, connections: int, count: int = 1000) -> float:
    """Messages/s of a bare Mailer with this pool through the proxy (pre-rendered)."""
    from peopletasks.mail import Branding, Mailer
    from peopletasks.mail.render import render_reminder

    messages = []
    for i in range(count):
        task = {
            "id": f"{0xBA5E << 80 | i:024x}",
            "title": f"Purchase order #{i}",
            "requester": "buyer@bench.example",
            "approver": f"approver{i}@bench.example",
            "decisionBy": "2030-12-01T17:00:00Z",
            "createdAt": "2030-11-27T09:15:00Z",
        }
        messages.append(
            render_reminder(
                task,
                number=1,
                approve_url="https://t.example/people-task/act/" + "A" * 44,
                reject_url="https://t.example/people-task/act/" + "R" * 44,
                branding=Branding(),
                sender=far_side.SENDER,
                to=task["approver"],
            )
        )
    started = time.perf_counter()
    async with Mailer(far_side.mailer_config(port), connections=connections) as mailer:
        await mailer.send_many(messages)
    return count / (time.perf_counter() - started)


async def create_tasks(url: str, token: str, count: int, decision_by: str) -> float:
    """Create the tasks (32 at a time); the seconds it took."""
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(32)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                answer = await client.post(
                    "/people-task/tasks",
                    headers=auth,
                    json={
                        "title": f"Purchase order #{i}",
                        "requester": f"buyer{i % 50}@bench.example",
                        "approver": f"approver{i}@bench.example",
                        "decisionBy": decision_by,
                        "reminders": {"beforeDue": [f"PT{BEFORE_DUE}S"]},
                    },
                )
                if answer.status_code != 201:
                    raise RuntimeError(f"create answered {answer.status_code}: {answer.text}")

        await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="peopletasks-bench-notify-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="added each way (10)")
    parser.add_argument(
        "--lead", type=float, default=75.0, help="seconds from start to the due time (75)"
    )
    parser.add_argument(
        "--connections", type=int, default=None, help="SMTP pool (default: the service's)"
    )
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter
    with temp_dir() as tmp:
        cert, key = far_side.make_certificate(tmp)
        far_side.CountingHandler = TimedHandler  # type: ignore[misc]
        far = far_side.FarSide(cert, key, args.delay_ms / 1000)
        far.start()
        try:
            return run(args, far, tmp)
        finally:
            far.stop()


def run(args: argparse.Namespace, far: Any, tmp: Path) -> int:
    from peopletasks.settings import Settings

    connections = args.connections or Settings.model_fields["mail_connections"].default
    n = args.reminders
    print(
        f"bench/notify.py: {n} reminders due in the same second, aiosmtpd (STARTTLS + AUTH) "
        f"behind a proxy adding {args.delay_ms:g} ms each way; {connections} SMTP connections"
    )
    ceiling = asyncio.run(baseline(far.proxy_port, connections))
    print(
        f"  baseline: a bare Mailer ({connections} connections), 1,000 pre-rendered: "
        f"{ceiling:.1f} msg/s"
    )
    TimedHandler.answered.clear()

    database = tmp / "notify.db"
    port = free_port()
    env = {
        **os.environ,
        "PEOPLETASKS_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PEOPLETASKS_SECRET_KEY": KEY,
        "PEOPLETASKS_ENVIRONMENT": "bench",
        "PEOPLETASKS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PEOPLETASKS_SMTP_HOST": "127.0.0.1",
        "PEOPLETASKS_SMTP_PORT": str(far.proxy_port),
        "PEOPLETASKS_SMTP_TLS": "starttls",
        "PEOPLETASKS_SMTP_USERNAME": far_side.USERNAME,
        "PEOPLETASKS_SMTP_PASSWORD": far_side.PASSWORD,
        "PEOPLETASKS_SMTP_VALIDATE_CERTS": "false",
        "PEOPLETASKS_SMTP_FROM": far_side.SENDER,
        "PEOPLETASKS_MAIL_CONNECTIONS": str(connections),
    }
    token = subprocess.run(
        [str(BIN), "token", "create", "--email", "bench@example.com"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    log = (tmp / "service.log").open("wb")
    service = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--no-access-log"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}", service)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.lead)
        decision_by = (due + timedelta(seconds=BEFORE_DUE)).isoformat()
        seconds = asyncio.run(create_tasks(f"http://127.0.0.1:{port}", token, n, decision_by))
        left = (due - datetime.now(UTC)).total_seconds()
        print(f"  created {n} tasks in {seconds:.1f} s ({n / seconds:.0f}/s); due in {left:.1f} s")
        if left < 1:
            print("  the tasks were not all created before the due time: raise --lead")
            return 0
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        cpu_before = cpu_seconds(service.pid)
        deadline = time.monotonic() + n / 20 + 120
        while len(reminder_ids()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        cpu = cpu_seconds(service.pid) - cpu_before
        time.sleep(1.0)  # let the service write the last outcomes
        statuses = Counter(
            status
            for (status,) in sqlite3.connect(database).execute(
                "SELECT status FROM mail_messages WHERE kind = 'reminder'"
            )
        )
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(20)
        except subprocess.TimeoutExpired:
            service.kill()
        log.close()
    report(n, due.timestamp(), ceiling, cpu, statuses)
    if len(reminder_ids()) < n:
        print("  the service's log ends:")
        for line in (tmp / "service.log").read_text().splitlines()[-15:]:
            print("    " + line)
    return 0


def reminder_ids() -> dict[str, list[float]]:
    answered = dict(TimedHandler.answered)  # a copy: the far side adds to it meanwhile
    return {k: v for k, v in answered.items() if ".reminder." in k}


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the service exited")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("the service did not start")


def report(n: int, due: float, ceiling: float, cpu: float, statuses: Counter[str]) -> None:
    answered = reminder_ids()
    firsts = sorted(times[0] for times in answered.values())
    duplicated = sum(len(times) - 1 for times in answered.values())
    lost = n - len(answered)
    if len(firsts) < 2:
        print(f"  only {len(firsts)} reminders arrived: lost {lost}")
        return
    delays = [t - due for t in firsts]
    rate = (len(firsts) - 1) / (firsts[-1] - firsts[0])
    overall = len(firsts) / (firsts[-1] - due)
    late = [i for i, d in enumerate(delays) if d > i / rate + 1.0]
    excess = [d - i / rate for i, d in enumerate(delays)]
    worst = max(range(len(excess)), key=excess.__getitem__)
    print()
    print(f"  {'figure':<52} {'value':>12}   target")
    rows = [
        ("rate, first 250 to last (msg/s)", f"{rate:.1f}", f">= {TARGET_RATE:g}", rate >= TARGET_RATE),
        ("rate, due time to last 250 (msg/s)", f"{overall:.1f}", "", None),
        ("baseline: bare Mailer, same pool and link (msg/s)", f"{ceiling:.1f}", "", None),
        ("first reminder: due -> 250 (s)", f"{delays[0]:.3f}", "", None),
        ("delay due -> 250, p50 (s)", f"{statistics.median(delays):.2f}", "", None),
        ("delay due -> 250, p99 (s)", f"{percentile(delays, 99):.2f}", "", None),
        ("delay due -> 250, max (s)", f"{delays[-1]:.2f}", f"<= {n / rate + 1:.1f}", None),
        ("reminders later than i / rate + 1 s", f"{len(late)}", "0", not late),
        ("  the latest: message i, delay - i / rate (s)", f"{worst}, {excess[worst]:.2f}", "", None),
        ("lost (no 250 for its Message-ID)", f"{lost}", "0", lost == 0),
        ("sent twice (same Message-ID)", f"{duplicated}", "", None),
        ("service's log: sent / other", f"{statuses['sent']} / {sum(statuses.values()) - statuses['sent']}", "", None),
        ("service CPU while sending (s, % of the drain)", f"{cpu:.1f} ({100 * cpu / (firsts[-1] - due):.0f} %)", "", None),
    ]  # fmt: skip
    marks = [i for i in (0, 100, 300, 1000, 2000, 5000, len(delays) - 1) if i < len(delays)]
    rows.append(
        (
            "  delay - i / rate at i = " + ", ".join(str(i) for i in marks),
            " ".join(f"{excess[i]:.2f}" for i in marks),
            "",
            None,
        )
    )
    windows = Counter(int((t - due) // 5) for t in firsts)
    rows.append(
        (
            "  sent per 5 s from the due time",
            "",
            " ".join(str(windows[w]) for w in range(max(windows) + 1)),
            None,
        )
    )
    for name, value, target, met in rows:
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"  {name:<52} {value:>12}   {target} {verdict}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(0)
