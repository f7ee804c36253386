"""The service's own mail: on create, reminders, escalation, reassignment, standing
delegation and the outcome, through a real SMTP server (aiosmtpd), with the service in
process on each store. (Restarts and replicas: tests/test_notification_durability.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.domain.principals import create_api_token
from peopletasks.mail.send import SmtpConfig
from peopletasks.service import create_app
from peopletasks.service.app import build_domain
from peopletasks.service.workers import WARM_AHEAD_SECONDS, BackgroundWorkers, DeadlineScheduler
from peopletasks.timeutil import parse_datetime
from tests.conftest import Api, error_of, new_database_url, settings_for
from tests.support.receiver import Receiver, eventually
from tests.support.smtp import Inbox, Mail

SENDER = "Approvals <approvals@service.test>"


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with Inbox() as running:
        yield running


@pytest.fixture(autouse=True)
def _accepting(inbox: Inbox) -> Iterator[None]:
    yield
    inbox.refuse = lambda message, n: None


@pytest.fixture(scope="module")
async def mailing(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    inbox: Inbox,
) -> AsyncIterator[tuple[Domain, httpx.AsyncClient]]:
    """The service in process on a store of its own, mailing through `inbox`, its
    dispatchers and scheduler running (fast retries)."""
    url = new_database_url(request, backend, tmp_path_factory.mktemp("mailing"))
    settings = settings_for(
        url,
        smtp_host="127.0.0.1",
        mail_retry_base_seconds=0.2,
        mail_retry_max_delay_seconds=0.5,
        mail_poll_seconds=0.2,
    )
    domain = build_domain(settings)
    smtp = SmtpConfig(host="127.0.0.1", port=inbox.port, tls="none", sender=SENDER, timeout=5)
    workers = BackgroundWorkers(domain, settings, smtp=smtp)
    await workers.start()
    app = create_app(settings, domain=domain)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            yield domain, http
    finally:
        await workers.stop()
        await domain.db.dispose()


@pytest.fixture
async def org(mailing: tuple[Domain, httpx.AsyncClient]) -> Any:
    """Make callers of one fresh organization: `await org("x@example.com")`."""
    domain, http = mailing
    name = f"org-{uuid.uuid4().hex[:10]}"

    async def make(email: str = "flows@example.com") -> Api:
        return Api(http, await create_api_token(domain, email, organization=name), email)

    return make


@pytest.fixture
async def api(org: Any) -> Api:
    made: Api = await org("flows@example.com")
    return made


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def path_of(url: str) -> str:
    return urlsplit(url).path


def link_in(mail: Mail, action: str) -> str:
    """The path of the mail's Approve / Reject link (its text part lists both)."""
    lines = mail.text().splitlines()
    return path_of(lines[lines.index(f"{action.capitalize()}:") + 1])


async def mails(inbox: Inbox, task_id: str, count: int, **kw: Any) -> list[Mail]:
    return list(
        await eventually(
            lambda: (found := inbox.mails(task_id, **kw)) and len(found) >= count and found,
            timeout=15,
        )
    )


async def messages(api: Api, task_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.get(f"/tasks/{task_id}/messages", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


async def settled(api: Api, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's messages once `count` of them are no longer pending."""

    async def done() -> list[dict[str, Any]] | None:
        found = await messages(api, task_id)
        finished = [m for m in found if m["status"] != "pending"]
        return found if len(finished) >= count else None

    return list(await eventually(done, timeout=15))


# -- on create ----------------------------------------------------------------------------


async def test_notify_email_mails_the_approver_their_links_and_the_requester_a_copy(
    api: Api, inbox: Inbox
) -> None:
    task = await api.create(notify=["email"], requester="ann@example.com")
    assert task["notify"] == ["email"]
    got = await mails(inbox, task["id"], 2)
    by_kind = {m.message_id.split(".")[1]: m for m in got}
    approval, copy = by_kind["approval"], by_kind["copy"]
    assert approval.to == ("lead@example.com",) and copy.to == ("ann@example.com",)
    assert approval.subject == "Approval needed: Vacation 1-5 Dec"
    assert copy.subject == "Approval requested: Vacation 1-5 Dec"
    assert str(approval.message["From"]) == SENDER
    # The links in the mail open the confirmation page of this task (they decide nothing).
    page = await api.http.get(link_in(approval, "approve"))
    assert page.status_code == 200 and "Vacation 1-5 Dec" in page.text
    assert "/act/" not in copy.text()  # the copy has no links
    log = await settled(api, task["id"], 2)
    assert {(m["kind"], m["to"], m["status"], m["attempts"]) for m in log} == {
        ("approval", "lead@example.com", "sent", 1),
        ("copy", "ann@example.com", "sent", 1),
    }
    for entry in log:
        assert entry["messageId"] == by_kind[entry["kind"]].message_id
        assert entry["attemptLog"][0]["smtpCode"] == 250
        assert "body" not in entry and "/act/" not in str(entry)  # no bodies, no links


async def test_without_notify_the_service_mails_nobody(api: Api, inbox: Inbox) -> None:
    """The default is none: clients that mail their approvers themselves (Appmixer's
    RequestApprovalEmail, request_approval_email on a service without SMTP) are not
    doubled."""
    task = await api.create()
    assert task["notify"] == []
    flag = await api.create(notify=["email"], title="later")
    await mails(inbox, flag["id"], 1)  # mail created after it went out ...
    assert inbox.mails(task["id"]) == []  # ... and none for the first
    assert await messages(api, task["id"]) == []


async def test_a_service_without_smtp_takes_notify_and_sends_nothing(
    new_api: Any,
) -> None:
    api = await new_api()  # the session's service: no PEOPLETASKS_SMTP_HOST
    task = await api.create(notify=["email"], reminders={"every": "PT1H"})
    assert task["notify"] == [] and task["nextReminderAt"] is None
    assert task["reminders"] == {"every": "PT1H", "beforeDue": [], "max": 10}
    assert await messages(api, task["id"]) == []


async def test_messages_are_read_as_the_task_is(api: Api, org: Any) -> None:
    task = await api.create(notify=["email"])
    secret = {"secret": task["requesterSecret"]}
    assert (
        await api.http.get(f"/people-task/tasks/{task['id']}/messages", params=secret)
    ).status_code == 200
    stranger = await (await org("x@example.com")).get(f"/tasks/{task['id']}/messages")
    assert stranger.status_code == 404  # a token sees its own tasks only (as a task)
    anonymous = await api.http.get(f"/people-task/tasks/{task['id']}/messages")
    assert anonymous.status_code == 401
    other = await api.http.get(
        f"/people-task/tasks/{task['id']}/messages",
        headers={"Authorization": "Bearer nope"},
    )
    assert other.status_code == 401


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        (
            {"reminders": {"every": "PT1H"}, "decisionBy": 1800},
            "reminders.every",
            "after the deadline",
        ),
        ({"reminders": {"beforeDue": ["PT1H"]}}, "reminders.beforeDue", "needs a decisionBy"),
        (
            {"reminders": {"beforeDue": ["PT10M", "PT2H"]}, "decisionBy": 3600},
            "reminders.beforeDue.1",
            "before the task is created",
        ),
        ({"reminders": {}}, "reminders", "give every, beforeDue or both"),
        ({"reminders": {"every": "P1M"}}, "reminders.every", "no fixed length"),
        ({"reminders": {"every": "soon"}}, "reminders.every", "ISO 8601 duration"),
        ({"reminders": {"every": 0}}, "reminders.every", "at least one second"),
        ({"reminders": {"every": True}}, "reminders.every", ""),
        ({"reminders": {"every": 60, "max": 0}}, "reminders.max", ""),
        (
            {"escalation": {"after": "P1D", "to": "lead@example.com"}},
            "escalation.to",
            "is the approver",
        ),
        (
            {"escalation": {"after": "P2D", "to": "boss@example.com"}, "decisionBy": 86400},
            "escalation.after",
            "after the deadline",
        ),
        ({"escalation": {"after": "P1D", "action": "reassign"}}, "escalation", "`to` is required"),
        ({"escalation": {"after": "P1D", "to": "x", "action": "notify"}}, "escalation.to", ""),
        ({"escalation": {"after": "P1D", "action": "shout"}}, "escalation.action", ""),
        ({"notify": ["sms"]}, "notify.0", ""),
    ],
)
async def test_follow_ups_that_could_not_happen_are_422_naming_the_field(
    api: Api, fields: dict[str, Any], field: str, says: str
) -> None:
    body = {"title": "t", "requester": "r@example.com", "approver": "lead@example.com", **fields}
    if isinstance(body.get("decisionBy"), int):
        body["decisionBy"] = later(body["decisionBy"])
    response = await api.post("/tasks", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["details"][0]["field"] == field, error
    assert says in error["message"], error
    assert (await api.get("/tasks-count")).json() == {"count": 0}  # nothing was created


async def test_durations_are_iso_8601_or_seconds_and_shown_as_given(api: Api) -> None:
    task = await api.create(
        reminders={"every": "p1dt2h", "beforeDue": ["PT24H", 3600, 1.5], "max": 3},
        escalation={"after": "P2D", "to": "Boss@Example.com", "action": "reassign"},
        decisionBy=later(7 * 86400),
    )
    assert task["reminders"] == {"every": "P1DT2H", "beforeDue": ["PT24H", 3600, 1.5], "max": 3}
    # an address is kept as given (Appmixer's way) and compared without regard to case
    assert task["escalation"] == {"after": "P2D", "to": "Boss@Example.com", "action": "reassign"}
    created = parse_datetime(task["createdAt"])
    assert parse_datetime(task["nextReminderAt"]) == created + timedelta(hours=26)
    assert parse_datetime(task["escalatesAt"]) == created + timedelta(days=2)
    assert task["remindersSent"] == 0 and task["escalatedAt"] is None


# -- reminders ----------------------------------------------------------------------------


async def test_reminders_come_at_their_times_and_stop_at_the_decision(
    api: Api, inbox: Inbox
) -> None:
    task = await api.create(reminders={"every": 1, "max": 10}, notify=["email"])
    created = parse_datetime(task["createdAt"]).timestamp()
    reminders = await mails(inbox, task["id"], 3, kind="reminder")
    # In order, each about a second after the one before (the first a second after
    # creation), each within a second of its time.
    for number, mail in enumerate(reminders[:3], start=1):
        assert mail.subject == f"Reminder {number}: Approval needed: Vacation 1-5 Dec"
        assert f"Reminder {number}:" in mail.text()
        assert created + number - 0.05 <= mail.at <= created + number + 1.0, (number, mail.at)
    # Each carries working links, made when it was sent.
    assert (await api.http.get(link_in(reminders[-1], "reject"))).status_code == 200
    approved = await api.http.put(
        f"/people-task/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert approved.status_code == 200
    decided = parse_datetime(approved.json()["decidedAt"]).timestamp()
    await mails(inbox, task["id"], 1, kind="outcome")
    # Two more reminder times pass: none is sent, none is queued.
    await eventually(lambda: time.time() > decided + 2.2, timeout=5)
    after = [m for m in inbox.mails(task["id"], kind="reminder") if m.at > decided + 0.05]
    assert after == []
    log = await messages(api, task["id"])
    assert all(
        parse_datetime(m["createdAt"]).timestamp() <= decided
        for m in log
        if m["kind"] == "reminder"
    )
    now = (await api.get(f"/tasks/{task['id']}")).json()
    assert now["remindersSent"] == len(inbox.mails(task["id"], kind="reminder"))


async def test_reminders_before_the_deadline_and_at_most_max(api: Api, inbox: Inbox) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=4)
    task = await api.create(
        decisionBy=deadline.isoformat(),
        reminders={"beforeDue": ["PT3S", 2, 1], "max": 2},
    )
    due = parse_datetime(task["decisionBy"]).timestamp()
    got = await mails(inbox, task["id"], 2, kind="reminder")
    assert [m.subject.split(":")[0] for m in got] == ["Reminder 1", "Reminder 2"]
    for mail, before in zip(got, (3, 2), strict=True):
        assert due - before - 0.05 <= mail.at <= due - before + 1.0
    # max 2: the third time (1 s before) passes without one; then the task turns due.
    final = await eventually(lambda: _status_is(api, task["id"], "due"), timeout=8)
    assert final["remindersSent"] == 2 and final["nextReminderAt"] is None
    assert len(inbox.mails(task["id"], kind="reminder")) == 2


async def _status_is(api: Api, task_id: str, status: str) -> dict[str, Any] | None:
    task = (await api.get(f"/tasks/{task_id}")).json()
    return dict(task) if task["status"] == status else None


# -- escalation ---------------------------------------------------------------------------


async def test_escalation_notify_tells_the_contact_and_the_requester(
    api: Api, inbox: Inbox
) -> None:
    with Receiver() as receiver:
        task = await api.create(notify=["email"], escalation={"after": 1, "to": "boss@example.com"})
        hook = await api.post("/webhooks", json={"url": receiver.url("/e"), "taskId": task["id"]})
        assert hook.status_code == 201
        created = parse_datetime(task["createdAt"]).timestamp()
        contact = (await mails(inbox, task["id"], 1, kind="escalation"))[0]
        assert contact.to == ("boss@example.com",)
        assert contact.subject == "Escalated: Vacation 1-5 Dec"
        assert "lead@example.com has not decided this request within 1" in contact.text()
        assert "/act/" not in contact.text()  # the contact gets no decision links
        assert created + 1 - 0.05 <= contact.at <= created + 2.0
        requester = (await mails(inbox, task["id"], 1, kind="escalated"))[0]
        assert requester.to == ("employee@example.com",)
        event = (await eventually(lambda: receiver.at("/e"), timeout=10))[0].json()
    assert event["type"] == "task.escalated" and event["status"] == "pending"
    now = (await api.get(f"/tasks/{task['id']}")).json()
    assert now["status"] == "pending" and now["escalatedAt"] and now["escalatesAt"] is None


async def test_escalation_reassign_passes_it_on_and_the_old_links_stop(
    api: Api, inbox: Inbox
) -> None:
    task = await api.create(
        notify=["email"], escalation={"after": 1, "to": "boss@example.com", "action": "reassign"}
    )
    old = (await mails(inbox, task["id"], 1, kind="approval"))[0]
    new = (await mails(inbox, task["id"], 1, kind="reassigned"))[0]
    assert new.to == ("boss@example.com",)
    assert "did not decide in time" in new.text()
    refused = await api.http.get(link_in(old, "approve"))
    assert refused.status_code == 410 and "passed to someone else" in refused.text
    confirm = await api.http.get(link_in(new, "approve"))
    assert confirm.status_code == 200
    now = (await api.get(f"/tasks/{task['id']}")).json()
    assert now["approver"] == "boss@example.com" and now["status"] == "pending"
    [entry] = now["reassignments"]
    assert entry["from"] == "lead@example.com" and entry["to"] == "boss@example.com"
    assert entry["reason"] == "escalation" and entry["reassignedBy"] is None
    assert inbox.mails(task["id"], kind="escalation") == []  # told once, as the approver
    await mails(inbox, task["id"], 1, kind="escalated")


@pytest.mark.parametrize("action", ["approve", "reject"])
async def test_escalation_decides_as_the_system(api: Api, inbox: Inbox, action: str) -> None:
    status = {"approve": "approved", "reject": "rejected"}[action]
    with Receiver() as receiver:
        task = await api.create(
            notify=["email"],
            escalation={"after": 1, "action": action, "to": "boss@example.com"},
        )
        await api.post("/webhooks", json={"url": receiver.url("/d"), "taskId": task["id"]})
        decided = await eventually(lambda: _status_is(api, task["id"], status), timeout=5)
        event = (await eventually(lambda: receiver.at("/d"), timeout=10))[0].json()
    assert decided["decidedBy"] is None and decided["decidedBySystem"] is True
    assert decided["comment"] == "no decision within 1 (escalation)"
    assert event["type"] == f"task.{status}" and event["decidedBySystem"] is True
    assert event["comment"] == decided["comment"]
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history[-1] == {
        "event": status,
        "from": "pending",
        "to": status,
        "changedBy": None,
        "changedAt": decided["decidedAt"],
        "comment": "no decision within 1 (escalation)",
    }
    outcome = (await mails(inbox, task["id"], 1, kind="outcome"))[0]
    assert outcome.to == ("employee@example.com",)
    assert f"was {status} automatically" in outcome.text()
    contact = (await mails(inbox, task["id"], 1, kind="escalation"))[0]
    assert f"{status} automatically" in contact.text()
    # The approver's links now show the decision.
    approval = (await mails(inbox, task["id"], 1, kind="approval"))[0]
    page = await api.http.get(link_in(approval, "approve"))
    assert "already been decided" in page.text


# -- reassignment -------------------------------------------------------------------------


async def test_the_approver_reassigns_and_the_old_links_and_secret_stop(
    api: Api, inbox: Inbox
) -> None:
    with Receiver() as receiver:
        task = await api.create(notify=["email"])
        await api.post("/webhooks", json={"url": receiver.url("/r"), "taskId": task["id"]})
        old = (await mails(inbox, task["id"], 1, kind="approval"))[0]
        response = await api.http.put(
            f"/people-task/tasks/{task['id']}/reassign",
            json={"secret": task["approverSecret"], "to": "Deputy@Example.com", "comment": "away"},
        )
        assert response.status_code == 200, response.text
        moved = response.json()
        event = (await eventually(lambda: receiver.at("/r"), timeout=10))[0].json()
    assert moved["approver"] == "deputy@example.com"
    assert event["type"] == "task.reassigned" and event["approver"] == "deputy@example.com"
    new = (await mails(inbox, task["id"], 1, kind="reassigned"))[0]
    assert new.to == ("deputy@example.com",)
    assert "lead@example.com asked you to decide this request in their place" in new.text()
    assert '"away"' in new.text()
    assert new.subject == "Approval needed (passed to you): Vacation 1-5 Dec"
    # The old approver's link and secret decide nothing any more.
    page = await api.http.get(link_in(old, "approve"))
    assert page.status_code == 410
    again = await api.http.put(
        f"/people-task/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert again.status_code in (403, 404)
    # The new approver's link does.
    confirm = await api.http.get(link_in(new, "approve"))
    assert confirm.status_code == 200
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert history[-1]["event"] == "reassigned"
    assert history[-1]["approver"] == {"from": "lead@example.com", "to": "deputy@example.com"}
    assert history[-1]["changedBy"] == "lead@example.com" and history[-1]["comment"] == "away"


async def test_who_may_reassign_and_what(api: Api) -> None:
    task = await api.create()
    path = f"/tasks/{task['id']}/reassign"
    by_requester = await api.http.put(
        f"/people-task{path}", json={"secret": task["requesterSecret"], "to": "x@example.com"}
    )
    assert by_requester.status_code == 403
    anonymous = await api.http.put(f"/people-task{path}", json={"to": "x@example.com"})
    assert anonymous.status_code == 401
    same = await api.put(path, json={"to": "lead@example.com"})
    assert same.status_code == 422 and error_of(same)["details"][0]["field"] == "to"
    bad = await api.put(path, json={"to": "x@example.com, y@example.com"})
    assert bad.status_code == 422 and error_of(bad)["details"][0]["field"] == "to"
    by_token = await api.put(path, json={"to": "x@example.com"})  # the task's creator
    assert by_token.status_code == 200 and by_token.json()["approver"] == "x@example.com"
    decided = await api.http.put(
        f"/people-task/tasks/{task['id']}/approve",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert decided.status_code == 403  # the token's user is not the approver
    await api.put(path, json={"to": "flows@example.com"})
    assert (await api.put(f"/tasks/{task['id']}/approve")).status_code == 200
    late = await api.put(path, json={"to": "y@example.com"})
    assert late.status_code == 409 and error_of(late)["code"] == "already_decided"


async def test_ask_someone_else_from_the_confirmation_page(api: Api, inbox: Inbox) -> None:
    task = await api.create()
    link = path_of(task["links"]["approve"])
    page = await api.http.get(link)
    assert "Ask someone else" in page.text and f"{link}/reassign" in page.text
    form = await api.http.get(f"{link}/reassign")
    assert form.status_code == 200 and 'name="to"' in form.text
    token = form.text.split('name="form_token" value="')[1].split('"')[0]
    bad = await api.http.post(
        f"{link}/reassign", data={"form_token": token, "to": "not an address"}
    )
    assert bad.status_code == 422 and "e-mail address" in bad.text
    done = await api.http.post(
        f"{link}/reassign",
        data={"form_token": token, "to": "deputy@example.com", "comment": "Dana knows"},
    )
    assert done.status_code == 303
    shown = await api.http.get(done.headers["location"])
    assert shown.status_code == 200 and "We asked deputy@example.com to decide" in shown.text
    mail = (await mails(inbox, task["id"], 1, kind="reassigned"))[0]
    assert '"Dana knows"' in mail.text()
    assert (await api.http.get(link)).status_code == 410


async def test_a_reassignment_racing_an_approval_has_one_winner_and_one_set_of_mails(
    api: Api, inbox: Inbox
) -> None:
    outcomes: dict[str, int] = {"approved": 0, "reassigned": 0}
    tasks = [await api.create(notify=["email"], title=f"race {i}") for i in range(20)]
    for task in tasks:
        approve, reassign = await asyncio.gather(
            api.http.put(
                f"/people-task/tasks/{task['id']}/approve",
                json={"secret": task["approverSecret"]},
            ),
            api.put(f"/tasks/{task['id']}/reassign", json={"to": "deputy@example.com"}),
        )
        codes = sorted((approve.status_code, reassign.status_code))
        assert codes[0] == 200 and codes[1] in (403, 404, 409), (approve.text, reassign.text)
        outcomes["approved" if approve.status_code == 200 else "reassigned"] += 1
    for task in tasks:
        final = (await api.get(f"/tasks/{task['id']}")).json()
        await mails(inbox, task["id"], 3)  # the approval, the copy, and the winner's
        await settled(api, task["id"], 3)
        kinds = sorted(m.message_id.split(".")[1] for m in inbox.mails(task["id"]))
        if final["status"] == "approved":
            assert kinds == ["approval", "copy", "outcome"] and not final["reassignments"]
        else:
            assert kinds == ["approval", "copy", "reassigned"]
            assert final["approver"] == "deputy@example.com"
    assert sum(outcomes.values()) == 20


# -- standing delegation ------------------------------------------------------------------


async def test_standing_delegation_sends_new_tasks_to_the_delegate(org: Any, inbox: Inbox) -> None:
    lead, creator, deputy = (
        await org("lead@example.com"),
        await org("flows@example.com"),
        await org("deputy@example.com"),
    )
    put = await lead.put(
        "/delegations",
        json={"from": "lead@example.com", "to": "deputy@example.com", "end": later(3600)},
    )
    assert put.status_code == 200, put.text
    assert put.json()["from"] == "lead@example.com" and put.json()["to"] == "deputy@example.com"
    task = await creator.create(notify=["email"])
    assert task["approver"] == "deputy@example.com"
    assert task["delegatedFrom"] == "lead@example.com"
    mail = (await mails(inbox, task["id"], 1, kind="approval"))[0]
    assert mail.to == ("deputy@example.com",)
    # The approver secret answered is the delegate's: it decides.
    decided = await creator.http.put(
        f"/people-task/tasks/{task['id']}/approve", json={"secret": task["approverSecret"]}
    )
    assert decided.json()["decidedBy"] == "deputy@example.com"
    listed = (await deputy.get("/delegations")).json()
    assert [d["from"] for d in listed] == ["lead@example.com"]
    # A delegation back would be a loop; someone else's is not theirs to set.
    loop = await deputy.put(
        "/delegations",
        json={"from": "deputy@example.com", "to": "lead@example.com", "end": later(60)},
    )
    assert loop.status_code == 422 and error_of(loop)["details"][0]["field"] == "to"
    assert (
        "deputy@example.com -> lead@example.com -> deputy@example.com"
        in (error_of(loop)["message"])
    )
    other = await creator.put(
        "/delegations",
        json={"from": "lead@example.com", "to": "flows@example.com", "end": later(60)},
    )
    assert other.status_code == 403
    past = await lead.put(
        "/delegations",
        json={"from": "lead@example.com", "to": "deputy@example.com", "end": later(-60)},
    )
    assert past.status_code == 422 and error_of(past)["details"][0]["field"] == "end"
    # Ended: new tasks go to the lead again.
    assert (await lead.delete("/delegations/lead@example.com")).status_code == 204
    assert (await creator.create())["approver"] == "lead@example.com"
    assert (await lead.delete("/delegations/lead@example.com")).status_code == 404


async def test_a_delegation_in_the_future_or_a_chain(org: Any) -> None:
    lead, deputy, creator = (
        await org("lead@example.com"),
        await org("deputy@example.com"),
        await org("flows@example.com"),
    )
    future = await lead.put(
        "/delegations",
        json={
            "from": "lead@example.com",
            "to": "deputy@example.com",
            "start": later(3600),
            "end": later(7200),
        },
    )
    assert future.status_code == 200
    assert (await creator.create())["approver"] == "lead@example.com"
    await lead.put(
        "/delegations",
        json={"from": "lead@example.com", "to": "deputy@example.com", "end": later(60)},
    )
    await deputy.put(
        "/delegations",
        json={"from": "deputy@example.com", "to": "third@example.com", "end": later(60)},
    )
    task = await creator.create()
    assert task["approver"] == "third@example.com" and task["delegatedFrom"] == "lead@example.com"


# -- SMTP failures ------------------------------------------------------------------------


async def test_a_transient_smtp_failure_is_retried_and_logged(api: Api, inbox: Inbox) -> None:
    tried: set[str] = set()

    def once(message: Any, n: int) -> str | None:
        key = str(message["Message-ID"])
        if ".approval." in key and key not in tried:
            tried.add(key)
            return "451 4.3.0 try again later"
        return None

    inbox.refuse = once
    task = await api.create(notify=["email"], requester="lead@example.com", allowSelfApproval=True)
    mail = (await mails(inbox, task["id"], 1, kind="approval"))[0]
    [entry] = await settled(api, task["id"], 1)
    assert entry["status"] == "sent" and entry["attempts"] == 2
    assert [a["smtpCode"] for a in entry["attemptLog"]] == [451, 250]
    assert "451" in entry["attemptLog"][0]["error"]
    assert entry["messageId"] == mail.message_id == next(iter(tried))


async def test_a_permanent_refusal_is_not_retried(api: Api, inbox: Inbox) -> None:
    inbox.refuse = lambda message, n: (
        "550 5.1.1 no such user" if ".approval." in str(message["Message-ID"]) else None
    )
    task = await api.create(notify=["email"], requester="lead@example.com", allowSelfApproval=True)
    [entry] = await settled(api, task["id"], 1)
    assert entry["status"] == "failed" and entry["attempts"] == 1
    assert entry["attemptLog"][0]["smtpCode"] == 550 and entry["nextAttemptAt"] is None


async def test_mail_to_an_old_approver_is_cancelled_not_sent(api: Api, inbox: Inbox) -> None:
    """A message whose turn comes after the task was decided or passed on is not sent."""
    refused: list[str] = []

    def later_please(message: Any, n: int) -> str | None:
        if ".approval." in str(message["Message-ID"]):
            refused.append(str(message["X-PeopleTasks-Task-Id"]))
            return "451 4.3.0 later"
        return None

    inbox.refuse = later_please
    task = await api.create(notify=["email"], requester="lead@example.com", allowSelfApproval=True)
    await eventually(lambda: task["id"] in refused, timeout=10)  # its first attempt failed
    moved = await api.put(f"/tasks/{task['id']}/reassign", json={"to": "deputy@example.com"})
    assert moved.status_code == 200
    inbox.refuse = lambda message, n: None
    log = await eventually(lambda: _cancelled(api, task["id"]), timeout=10)
    assert "reassigned to deputy@example.com" in log["lastError"]
    assert len(log["attemptLog"]) == log["attempts"] - 1  # the last claim sent nothing
    assert inbox.mails(task["id"], kind="approval") == []


async def _cancelled(api: Api, task_id: str) -> dict[str, Any] | None:
    for entry in await messages(api, task_id):
        if entry["kind"] == "approval" and entry["status"] == "cancelled":
            return entry
    return None


async def test_the_scheduler_warms_the_mailer_up_just_before_a_reminder(
    api: Api, mailing: tuple[Domain, httpx.AsyncClient]
) -> None:
    """The SMTP connections are opened WARM_AHEAD_SECONDS before mail falls due, so a
    burst of reminders does not wait for TLS and login."""
    domain, _ = mailing
    warmed: list[float] = []
    scheduler = DeadlineScheduler(domain, warm=lambda: warmed.append(time.time()))
    running = asyncio.create_task(scheduler.run())
    try:
        task = await api.create(decisionBy=later(60), reminders={"beforeDue": [56]})
        due = parse_datetime(task["nextReminderAt"]).timestamp()
        await eventually(lambda: any(t > due - 3.5 for t in warmed), timeout=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    when = next(t for t in warmed if t > due - 3.5)
    assert due - WARM_AHEAD_SECONDS - 0.1 <= when <= due - WARM_AHEAD_SECONDS + 0.5
