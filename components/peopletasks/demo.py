"""`peopletasks demo`: the whole approval loop on one machine.

Starts the People Task service (SQLite) and the local inbox, runs a Prefect
flow that asks for a vacation approval by e-mail and waits (pause mode), prints
where to read the mail, and prints the decision when someone clicks. With
`--auto-approve` it plays the approver through the e-mailed link (GET the
page, POST its form), so it runs unattended.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html import unescape
from pathlib import Path
from typing import Any

import httpx

TITLE = "Vacation 1-5 December"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s")


def _approval_mail(inbox: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in httpx.get(f"{inbox}/api/messages").json():
            if message["subject"].startswith("Approval needed"):
                return dict(httpx.get(f"{inbox}/api/messages/{message['id']}").json())
        time.sleep(0.2)
    raise RuntimeError("no approval mail arrived")


def play_approver(inbox: str, service: str) -> None:
    """Open the Approve link from the mail, then submit the page's form, as a person would."""
    mail = _approval_mail(inbox)
    approve = next(link for link in mail["links"] if "/people-task/act/" in link)
    page = httpx.get(approve)
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    if page.status_code != 200 or token is None:
        raise RuntimeError(f"the approval page did not load ({page.status_code})")
    print(f"[approver] opened {approve.split('/act/')[0]}/act/… and clicks Approve")
    httpx.post(
        approve,
        data={
            "form_token": unescape(token.group(1)),
            "decision": "approve",
            "comment": "Enjoy your holiday! (auto-approved by the demo)",
        },
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )


def run_demo(*, auto_approve: bool, keep: bool = False) -> int:
    home = Path(tempfile.mkdtemp(prefix="peopletasks-demo-"))
    service_port, smtp_port, web_port = _free_port(), _free_port(), _free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    inbox_url = f"http://127.0.0.1:{web_port}"
    env = {
        **os.environ,
        "PEOPLETASKS_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'demo.db'}",
        "PEOPLETASKS_SECRET_KEY": secrets.token_hex(32),
        "PEOPLETASKS_PUBLIC_URL": service_url,
        "PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS": "true",
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Prefect's own temporary server takes ~20 s to start here, more on a busy
        # machine; its default patience (20 s) is not always enough.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": os.environ.get(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"
        ),
    }
    command = [sys.executable, "-m", "peopletasks.cli"]
    processes: list[subprocess.Popen[bytes]] = []
    # A terminated demo still stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        print("starting the People Task service and the local inbox …")
        service = subprocess.Popen(
            [*command, "serve", "--port", str(service_port), "--no-access-log"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(service)
        inbox = subprocess.Popen(
            [*command, "inbox", "--smtp-port", str(smtp_port), "--web-port", str(web_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(inbox)
        _wait_http(f"{service_url}/healthz", service, "the service")
        _wait_http(f"{inbox_url}/api/messages", inbox, "the inbox")
        token = subprocess.run(
            [*command, "token", "create", "--email", "flows@example.com"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[-1]
        os.environ.update(
            {
                **{k: v for k, v in env.items() if k.startswith("PREFECT_")},
                "PEOPLETASKS_API_URL": service_url,
                "PEOPLETASKS_API_TOKEN": token,
                "PEOPLETASKS_SMTP_HOST": "127.0.0.1",
                "PEOPLETASKS_SMTP_PORT": str(smtp_port),
                "PEOPLETASKS_SMTP_FROM": "approvals@example.com",
            }
        )
        print(f"service: {service_url}/docs    inbox: {inbox_url}")
        print("running the vacation_request flow (Prefect starts a local server: ~20 s) …")
        if auto_approve:
            approver = threading.Thread(
                target=play_approver, args=(inbox_url, service_url), daemon=True
            )
            approver.start()
        else:
            threading.Thread(target=_announce_mail, args=(inbox_url,), daemon=True).start()
        from peopletasks.flows import vacation_request

        decision = vacation_request("ann@example.com", "1-5 December")
        print(
            f"decision: {decision.status} by {decision.decided_by}"
            + (f" — “{decision.comment}”" if decision.comment else "")
        )
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if not keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def _announce_mail(inbox: str) -> None:
    try:
        mail = _approval_mail(inbox, timeout=600)
    except RuntimeError:
        return
    print(
        f"\nThe approval mail is in the inbox: open {inbox}/messages/{mail['id']}\n"
        "and click Approve or Reject. The flow is paused until you do.\n",
        flush=True,
    )
