"""Every kind of mail the service sends, as the dispatcher renders it, opened in a real
browser (headless Chromium): what a person sees, on a phone and in dark mode; and
"Ask someone else" clicked through against the real service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from peopletasks.domain.messages import Outgoing
from peopletasks.mail.dispatcher import render
from peopletasks.mail.render import Branding
from tests.support.server import ServiceProcess
from tests.test_pages_browser import browser, create, live, task_now  # noqa: F401 - fixtures

APPROVE = "https://tasks.example.com/people-task/act/" + "A" * 44
REJECT = "https://tasks.example.com/people-task/act/" + "R" * 44
TASK: dict[str, Any] = {
    "id": "65f1c0ffee0123456789abcd",
    "title": "Vacation 1-5 Dec",
    "description": "Dana asks for **5 days** off.\n\n<script>alert('pwned')</script>",
    "requester": "dana@acme.example",
    "approver": "lead@acme.example",
    "status": "pending",
    "decisionBy": "2030-12-01T17:00:00Z",
    "createdAt": "2030-11-27T09:15:00Z",
    "decidedBy": None,
    "decidedAt": None,
    "comment": None,
    "decidedBySystem": False,
}
BRAND = Branding(product_name="Acme Approvals", accent_color="#0a7d5a", footer="Acme Ltd")

#: kind -> (task changes, context, sequence, what the mail says, with links)
KINDS: dict[str, tuple[dict[str, Any], dict[str, Any], int, str, bool]] = {
    "reminder": ({}, {}, 2, "Reminder 2: dana@acme.example is still waiting", True),
    "reassigned": (
        {"approver": "deputy@acme.example"},
        {"from": "lead@acme.example", "reassignedBy": "lead@acme.example", "comment": "I'm away"},
        1,
        "lead@acme.example asked you to decide this request in their place",
        True,
    ),
    "escalation": (
        {},
        {"action": "notify", "after": "P2D", "approver": "lead@acme.example", "to": "b@x.io"},
        0,
        "lead@acme.example has not decided this request within P2D",
        False,
    ),
    "escalated": (
        {"approver": "boss@acme.example"},
        {"action": "reassign", "after": "P2D", "approver": "lead@acme.example", "to": "b@x.io"},
        0,
        "so we passed it to b@x.io",
        False,
    ),
    "outcome": (
        {
            "status": "approved",
            "decidedBy": "lead@acme.example",
            "decidedAt": "2030-11-28T10:00:00Z",
            "comment": "Enjoy!",
        },
        {"status": "approved"},
        2,
        "lead@acme.example approved your request",
        False,
    ),
}


def outgoing(kind: str) -> Outgoing:
    changes, context, sequence, _, with_links = KINDS[kind]
    return Outgoing(
        id=1,
        attempt=1,
        kind=kind,
        to="someone@acme.example",
        sequence=sequence,
        context=context,
        created_at=datetime.now(UTC),
        task={**TASK, **changes},
        links={"approve": APPROVE, "reject": REJECT} if with_links else None,
    )


@pytest.fixture(scope="module")
def phone(browser: Any) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 375, "height": 800})
    yield context
    context.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_reads_right_on_a_phone(phone: Any, kind: str) -> None:
    mail = render(
        outgoing(kind), sender="approvals@acme.example", branding=BRAND, templates_dir=None
    )
    html = mail.get_body(("html",))
    assert html is not None
    page = phone.new_page()
    dialogs: list[str] = []

    def seen(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    page.set_content(str(html.get_content()))
    text = " ".join(page.inner_text("body").split())
    assert "Vacation 1-5 Dec" in text
    assert KINDS[kind][3] in text, text
    assert "Acme Ltd" in text and "Acme Approvals" in text  # branded
    # Fits a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    links = page.eval_on_selector_all("a", "els => els.map(a => a.href)")
    if KINDS[kind][4]:
        approve = page.get_by_role("link", name="Approve", exact=True)
        reject = page.get_by_role("link", name="Reject", exact=True)
        assert approve.get_attribute("href") == APPROVE
        assert reject.get_attribute("href") == REJECT
        for button in (approve, reject):
            box = button.bounding_box()
            assert box is not None and box["height"] >= 40 and box["width"] >= 100
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375
        cell = approve.evaluate("a => getComputedStyle(a.closest('td')).backgroundColor")
        assert cell == "rgb(10, 125, 90)"  # the brand's accent
    else:
        assert not [href for href in links if "/act/" in href]  # no decision links
    assert dialogs == []  # the description's script stayed text
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    page.close()


@pytest.mark.parametrize("kind", ["reminder", "outcome"])
def test_dark_mode(browser: Any, kind: str) -> None:  # noqa: F811
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    mail = render(
        outgoing(kind), sender="approvals@acme.example", branding=BRAND, templates_dir=None
    )
    html = mail.get_body(("html",))
    assert html is not None
    page.set_content(str(html.get_content()))
    card = page.evaluate("getComputedStyle(document.querySelector('.pt-card')).backgroundColor")
    assert card == "rgb(28, 32, 38)"
    context.close()


def test_the_outcome_of_a_system_decision_says_so(browser: Any) -> None:  # noqa: F811
    message = outgoing("outcome")
    task = {
        **message.task,
        "status": "rejected",
        "decidedBy": None,
        "decidedBySystem": True,
        "comment": "no decision within P2D (escalation)",
    }
    mail = render(
        _with(message, task),
        sender="approvals@acme.example",
        branding=BRAND,
        templates_dir=None,
    )
    assert mail["Subject"] == "Rejected: Vacation 1-5 Dec"
    page = browser.new_page()
    html = mail.get_body(("html",))
    assert html is not None
    page.set_content(str(html.get_content()))
    text = " ".join(page.inner_text("body").split())
    assert "Your request was rejected automatically: no decision within P2D (escalation)." in text
    assert "Decided by the escalation" in text
    page.close()


def _with(message: Outgoing, task: dict[str, Any]) -> Outgoing:
    return Outgoing(
        id=message.id,
        attempt=message.attempt,
        kind=message.kind,
        to=message.to,
        sequence=message.sequence,
        context={"status": task["status"]},
        created_at=message.created_at,
        task=task,
        links=None,
    )


def test_ask_someone_else_in_the_browser(
    live: tuple[ServiceProcess, str],  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    task = create(live)
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(task["links"]["approve"])
    page.get_by_role("link", name="Ask someone else…").click()
    page.wait_for_url("**/reassign")
    page.get_by_label("Their e-mail address").fill("deputy@example.com")
    page.get_by_label("Message for them").fill("Dana knows the rota")
    page.get_by_role("button", name="Ask them").click()
    page.wait_for_url("**/passed")
    assert "We asked deputy@example.com to decide" in page.inner_text("body")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    after = task_now(live, task["id"])
    assert after["approver"] == "deputy@example.com"
    assert after["reassignments"][0]["comment"] == "Dana knows the rota"
    page.goto(task["links"]["reject"])  # the old approver's other link
    assert "This task was passed to someone else" in page.inner_text("body")
    page.close()
