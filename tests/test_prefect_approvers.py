"""The Prefect side of several approvers, custom responses, forms and the service's own
mail: a real Prefect server, the real service (and a real SMTP server), real responses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from prefect import flow
from pydantic import BaseModel, Field

from peopletasks import Decision, arequest_approval, arequest_approval_email, request_approval
from peopletasks.mail import SmtpConfig
from tests.conftest import TEST_KEY
from tests.support.server import ServiceProcess, cli, free_port, service_env
from tests.support.smtp import Inbox, Mail
from tests.test_prefect_approval import Live, in_thread


class Budget(BaseModel):
    line: Literal["Q1", "Q2"] = Field(title="Budget line")
    amount: int = Field(ge=1, le=10_000)


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with Inbox() as smtp:
        yield smtp


@pytest.fixture(scope="module")
def live(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory, inbox: Inbox
) -> Iterator[Live]:
    """A service that sends its own mail (PEOPLETASKS_SMTP_HOST)."""
    directory: Path = tmp_path_factory.mktemp("prefect-approvers")
    env = {**service_env(f"sqlite+aiosqlite:///{directory / 'p.db'}", TEST_KEY), **inbox.env()}
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        yield Live(service, token)


def respond(live: Live, email: str, task_id: str, **body: object) -> httpx.Response:
    token = cli("token", "create", "--email", email, env=live.service.env).splitlines()[-1]
    return httpx.put(
        f"{live.service.url}/people-task/tasks/{task_id}/respond",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
    )


def test_everyone_responds_with_the_requests_options_and_form(live: Live) -> None:
    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title,
            ["lead@example.com", "cfo@example.com"],
            "ann@example.com",
            rule="all",
            options=[
                {"key": "go", "label": "Go ahead", "outcome": "approved"},
                {"key": "changes", "label": "Send back for changes", "outcome": "rejected"},
            ],
            form=Budget,
            wait="poll",
            poll_interval=0.2,
            service=live.block,
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("two approve a budget")))
    task = live.wait_for_task("two approve a budget")
    assert [a["email"] for a in task["approvers"]] == ["lead@example.com", "cfo@example.com"]
    assert task["form"]["properties"]["line"]["enum"] == ["Q1", "Q2"]
    refused = respond(live, "lead@example.com", task["id"], option="go", data=_budget("Q3", 5))
    assert refused.status_code == 422 and "data.line" in refused.text
    first = respond(live, "lead@example.com", task["id"], option="go", data=_budget("Q1", 500))
    assert first.status_code == 200 and first.json()["status"] == "pending"
    last = respond(live, "cfo@example.com", task["id"], option="go", data=_budget("Q2", 900))
    assert last.status_code == 200 and last.json()["status"] == "approved"
    thread.join(60)
    decision = outcome["result"]
    assert decision.approved and decision.option == "go"
    assert decision.data == Budget(line="Q2", amount=900)  # the deciding response, typed
    assert [(r["email"], r["data"]) for r in decision.responses] == [
        ("lead@example.com", _budget("Q1", 500)),
        ("cfo@example.com", _budget("Q2", 900)),
    ]


def _budget(line: str, amount: int) -> dict[str, object]:
    return {"line": line, "amount": amount}


def test_the_service_mails_when_it_can_and_the_flow_does_not(live: Live, inbox: Inbox) -> None:
    """`request_approval_email` asks the service to mail; with SMTP it does (each approver
    their own links), and the flow's own mailer (here unreachable) is never used."""
    nowhere = SmtpConfig(host="127.0.0.1", port=free_port(), tls="none")

    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval_email(
            title,
            ["lead@example.com", "cfo@example.com"],
            "ann@example.com",
            rule="any",
            mail=nowhere,
            reminders={"every": 3600},
            wait="poll",
            poll_interval=0.2,
            service=live.block,
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("mailed by the service")))
    task = live.wait_for_task("mailed by the service")
    mails = approval_mails(inbox, task["id"], 2)
    assert sorted(m.to[0] for m in mails) == ["cfo@example.com", "lead@example.com"]
    assert task["notify"] == ["email"] and task["reminders"]["every"] == 3600
    assert respond(live, "cfo@example.com", task["id"], option="reject").status_code == 200
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"].status == "rejected"
    assert outcome["result"].decided_by == "cfo@example.com"


def approval_mails(inbox: Inbox, task_id: str, count: int) -> list[Mail]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = inbox.mails(task_id, kind="approval")
        if len(found) >= count:
            return found
        time.sleep(0.05)  # polling the inbox, with a deadline
    raise AssertionError(f"the service sent no {count} approval mails within 30 s")


def test_other_task_systems_refuse_what_they_cannot_do_before_creating() -> None:
    for asked in (
        {"approver": ["a@example.com", "b@example.com"]},
        {"approver": "a@example.com", "form": Budget},
        {"approver": "a@example.com", "reminders": {"every": "P1D"}},
    ):
        with pytest.raises(TypeError, match="only our People Task service"):
            request_approval("x", requester="r@example.com", backend="peoplelogic", **asked)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quorum"):
        request_approval("x", ["a@example.com", "b@example.com"], "r@example.com", rule="quorum")


def test_a_sequential_request_needs_the_services_mail(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Later turns come after the flow process may be gone: without the service's SMTP a
    sequential request says so, naming its task, and nobody is mailed by halves."""
    directory: Path = tmp_path_factory.mktemp("prefect-sequential")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'p.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service, Inbox() as smtp:
        bare = Live(service, token)

        @flow
        async def ask() -> Decision:
            return await arequest_approval_email(
                "in turn, without the service's mail",
                ["lead@example.com", "cfo@example.com"],
                "ann@example.com",
                rule="sequential",
                mail=SmtpConfig(host="127.0.0.1", port=smtp.port, tls="none"),
                wait="poll",
                service=bare.block,
            )

        with pytest.raises(ValueError, match="PEOPLETASKS_SMTP_HOST") as refused:
            asyncio.run(ask())
        task = bare.wait_for_task("in turn, without the service's mail")
        assert task["id"] in str(refused.value) and task["notify"] == []
        assert smtp.mails(task["id"]) == []


def test_a_paused_run_waits_for_all_three_approvers(live: Live) -> None:
    """wait="pause": two approvals of three leave the run waiting; the third decides it."""
    three = ["lead@example.com", "cfo@example.com", "legal@example.com"]

    @flow
    async def ask(title: str) -> Decision:
        return await arequest_approval(
            title, three, "ann@example.com", rule="all", service=live.block
        )

    thread, outcome = in_thread(lambda: asyncio.run(ask("three approve, paused")))
    task = live.wait_for_task("three approve, paused")
    for approver in three[:2]:
        assert respond(live, approver, task["id"], option="approve").status_code == 200
    assert thread.is_alive() and "result" not in outcome  # two of three: still waiting
    assert respond(live, three[2], task["id"], option="approve", comment="last").status_code == 200
    thread.join(60)
    decision = outcome["result"]
    assert decision.approved and decision.decided_by == "legal@example.com"
    assert decision.comment == "last" and len(decision.responses) == 3
