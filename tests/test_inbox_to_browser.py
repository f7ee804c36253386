"""The whole inbox path: the approval mail arrives in the local inbox (`peopletasks inbox`),
a person opens its Approve link in Chromium, comments, clicks, and the task is decided."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest

from peopletasks.mail.render import render_approval_request
from peopletasks.mail.send import SmtpConfig, send_message
from tests.support.server import BIN, ServiceProcess, free_port
from tests.test_pages_browser import browser, create, live, task_now  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[int, str]]:
    smtp_port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [str(BIN), "inbox", "--smtp-port", str(smtp_port), "--web-port", str(web_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    web = f"http://127.0.0.1:{web_port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{web}/api/messages", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("peopletasks inbox did not start")
            time.sleep(0.05)
        yield smtp_port, web
    finally:
        process.terminate()
        process.wait(10)


def received(web: str, subject: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in httpx.get(f"{web}/api/messages").json():
            if message["subject"] == subject:
                return dict(httpx.get(f"{web}/api/messages/{message['id']}").json())
        time.sleep(0.05)
    raise AssertionError(f"no mail {subject!r} within {timeout}s")


def test_from_the_inbox_to_a_decision(
    live: tuple[ServiceProcess, str],  # noqa: F811
    browser: Any,  # noqa: F811
    inbox: tuple[int, str],
) -> None:
    smtp_port, web = inbox
    task = create(live, title="Laptop purchase")
    public = {k: v for k, v in task.items() if k not in ("approverSecret", "requesterSecret")}
    message = render_approval_request(
        public,
        approve_url=task["links"]["approve"],
        reject_url=task["links"]["reject"],
        sender="approvals@example.com",
        to=task["approver"],
    )
    config = SmtpConfig(host="127.0.0.1", port=smtp_port, sender="approvals@example.com")
    # A plain thread: send_message is for code without an event loop.
    sender = threading.Thread(target=send_message, args=(config, message))
    sender.start()
    sender.join(30)
    mail = received(web, "Approval needed: Laptop purchase")
    assert task["links"]["approve"] in mail["links"]
    assert task["links"]["reject"] in mail["links"]
    assert task["links"]["approve"] in mail["text"]
    # Both parts, parsed from the raw message as a mail client would.
    raw = httpx.get(f"{web}/messages/{mail['id']}.eml").content
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed.get_body(("plain",)) is not None
    assert parsed.get_body(("html",)) is not None
    page = browser.new_page()
    page.goto(task["links"]["approve"])
    page.get_by_label("Comment").fill("Go ahead")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/done")
    after = task_now(live, task["id"])
    assert (after["status"], after["comment"]) == ("approved", "Go ahead")
    page.close()
