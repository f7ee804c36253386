"""The development inbox: real SMTP in, real HTTP out."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from peopletasks.mail import Branding, Mailer, SmtpConfig, render_approval_request
from peopletasks.mail.inbox import Inbox, serve_inbox

APPROVE = "https://tasks.example.com/people-task/act/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEf"
REJECT = "https://tasks.example.com/people-task/act/ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210_-ZyXwVu"
SANDBOX = (
    'sandbox="allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"'
)
TASK: dict[str, Any] = {
    "id": "65f1c0ffee0123456789abcd",
    "title": "Vacation 1-5 Dec",
    "description": "Dana asks for **5 days** off. <script>alert('x')</script>",
    "requester": "dana@acme.example",
    "approver": "lead@acme.example",
    "status": "pending",
    "decisionBy": "2026-12-01T17:00:00Z",
    "createdAt": "2026-11-27T09:15:00Z",
}


def approval_mail(to: str = "lead@acme.example", title: str = "Vacation 1-5 Dec") -> Any:
    return render_approval_request(
        {**TASK, "title": title},
        approve_url=APPROVE,
        reject_url=REJECT,
        branding=Branding(),
        sender="Acme Approvals <approvals@acme.example>",
        to=to,
        now=datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
    )


def config_for(inbox: Inbox, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": inbox.smtp_port,
        "tls": "none",
        "local_hostname": "worker.test",
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmtpConfig(**values)


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    running = Inbox(folder=tmp_path / "eml")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_a_sent_approval_mail_arrives_and_its_links_can_be_read(
    inbox: Inbox, tmp_path: Path
) -> None:
    message = approval_mail()
    async with Mailer(config_for(inbox)) as mailer:
        await mailer.send(message)
    stored = await inbox.wait_for(lambda m: m.message_id == message["Message-ID"], timeout=10)
    assert stored.links[:2] == [APPROVE, REJECT]

    async with httpx.AsyncClient(base_url=inbox.web_url, trust_env=False, timeout=10) as http:
        listing = await http.get("/api/messages")
        assert listing.status_code == 200
        [summary] = listing.json()
        assert summary["id"] == stored.id
        assert summary["subject"] == "Approval needed: Vacation 1-5 Dec"
        assert summary["from"] == "Acme Approvals <approvals@acme.example>"
        assert summary["to"] == "lead@acme.example"
        assert summary["message_id"] == message["Message-ID"]
        assert summary["date"] == "2026-11-28T17:00:00Z"

        detail = (await http.get(f"/api/messages/{stored.id}")).json()
        assert APPROVE in detail["links"] and REJECT in detail["links"]
        assert detail["links"].index(APPROVE) < detail["links"].index(REJECT)
        assert all(link.startswith("https://") for link in detail["links"])
        assert APPROVE in detail["text"] and REJECT in detail["text"]
        assert "<strong>5 days</strong>" in detail["html"]
        assert detail["envelope_to"] == ["lead@acme.example"]

        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Approval needed: Vacation 1-5 Dec" in page.text
        assert f'href="/messages/{stored.id}"' in page.text

        one = await http.get(f"/messages/{stored.id}")
        assert one.status_code == 200
        assert "Approval needed: Vacation 1-5 Dec" in one.text
        assert SANDBOX in one.text and "allow-scripts" not in one.text
        assert "script-src" not in one.headers["content-security-policy"]
        assert "default-src 'none'" in one.headers["content-security-policy"]
        # The srcdoc document inherits the policy; with frame-ancestors Chromium shows nothing.
        assert "frame-ancestors" not in one.headers["content-security-policy"]
        # The mail's HTML sits escaped in srcdoc; the page itself holds no script tag.
        srcdoc = re.search(r'srcdoc="([^"]*)"', one.text)
        assert srcdoc is not None and "&lt;table" in srcdoc.group(1)
        assert "<script" not in one.text.lower()

        raw = await http.get(f"/messages/{stored.id}.eml")
        assert raw.status_code == 200 and raw.content == stored.raw

        missing = await http.get("/api/messages/999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert (await http.get("/messages/999999")).status_code == 404

    [saved] = list((tmp_path / "eml").glob("*.eml"))
    parsed = email.message_from_bytes(saved.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message["Message-ID"]


async def test_the_list_is_newest_first_and_wait_for_sees_later_arrivals(inbox: Inbox) -> None:
    async with Mailer(config_for(inbox, username="anyone", password="anything")) as mailer:
        await mailer.send(approval_mail(title="First"))
        waiter = asyncio.create_task(
            inbox.wait_for(lambda m: m.subject.endswith("Third"), timeout=10)
        )
        await mailer.send_many([approval_mail(title="Second"), approval_mail(title="Third")])
        third = await waiter
    assert third.subject == "Approval needed: Third"
    async with httpx.AsyncClient(base_url=inbox.web_url, trust_env=False, timeout=10) as http:
        subjects = [m["subject"] for m in (await http.get("/api/messages")).json()]
        assert subjects == [f"Approval needed: {t}" for t in ("Third", "Second", "First")]
        page = (await http.get("/")).text
        assert page.index("Third") < page.index("Second") < page.index("First")
        assert (await http.delete("/api/messages")).status_code == 204
        assert (await http.get("/api/messages")).json() == []


async def test_wait_for_gives_up_at_its_deadline(inbox: Inbox) -> None:
    with pytest.raises(TimeoutError, match="no matching message"):
        await inbox.wait_for(lambda m: False, timeout=0.2)


async def test_serve_inbox_runs_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(serve_inbox(smtp_port=0, web_port=0))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    printed = ""
    while (found := re.search(r"web UI at (http://\S+?)/ ", printed)) is None:
        assert not task.done(), task.exception()
        assert loop.time() < deadline, f"serve_inbox printed no address: {printed!r}"
        printed += capsys.readouterr().out
        await asyncio.sleep(0.02)
    smtp_port = int(re.search(r"SMTP on 127\.0\.0\.1:(\d+)", printed).group(1))  # type: ignore[union-attr]
    web_url = found.group(1)

    async with Mailer(SmtpConfig(host="127.0.0.1", port=smtp_port, local_hostname="t")) as mailer:
        await mailer.send(approval_mail())
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=10) as http:
        while not (await http.get("/api/messages")).json():
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "received #1: 'Approval needed: Vacation 1-5 Dec'" in capsys.readouterr().out
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            await http.get(f"{web_url}/api/messages")
