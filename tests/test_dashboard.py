"""The people's dashboard, in process on both stores: what a credential shows, that GET
never decides, and that only the page's own form, from this site, decides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.domain.dashboard import dashboard_link
from peopletasks.domain.principals import authenticate_token
from peopletasks.service.dashboard import shown
from peopletasks.service.logging import redact
from peopletasks.timeutil import utcnow
from tests.conftest import Api, service_on
from tests.support.dashboard import DASHBOARD, Visitor, decision_form, forms_of

LEAD = "lead@example.com"

Visitors = Callable[[], Visitor]


@pytest.fixture
async def visitors(http: httpx.AsyncClient) -> AsyncIterator[Visitors]:
    """New browsers (each with its own cookies) on the app the `api` fixture speaks to."""
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(http._transport))
        return made[-1]

    yield make
    for visitor in made:
        await visitor.client.aclose()


def mailed_link(task: dict[str, Any], action: str) -> str:
    """What Appmixer's RequestApprovalEmail mails (its URLSearchParams, in its order)."""
    query = urlencode({"taskId": task["id"], "action": action, "secret": task["approverSecret"]})
    return f"{DASHBOARD}?{query}"


async def person_link(api: Api, domain: Domain, email: str, **valid: float) -> str:
    org_id = (await authenticate_token(domain, api.token or "")).org_id
    return dashboard_link(domain, org_id, email, utcnow() + timedelta(**(valid or {"days": 1})))


async def task_now(api: Api, task_id: str) -> dict[str, Any]:
    response = await api.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- a mailed link to a decision ----------------------------------------------------


async def test_a_mailed_link_opens_the_task_with_the_action_chosen(
    api: Api, visitors: Visitors
) -> None:
    task = await api.create(title="Vacation 1-5 Dec", description="Ann asks for **five** days")
    browser = visitors()
    page = await browser.open(mailed_link(task, "reject"))
    assert page.status_code == 200, page.text
    # The credential went into a cookie kept to the dashboard, and the page moved on to
    # an address without it.
    (landing,) = browser.landings
    cookie = landing.headers["set-cookie"]
    assert cookie.startswith(f"pt_dashboard={task['approverSecret']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/people-task/dashboard" in cookie
    assert task["approverSecret"] not in landing.text
    assert str(page.url).endswith(f"{DASHBOARD}?taskId={task['id']}&action=reject")
    for response in (landing, page):
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert "<strong>five</strong>" in page.text
    assert decision_form(page.text)["decision"] == [("approve", False), ("reject", True)]
    assert (await task_now(api, task["id"]))["status"] == "pending"

    done = await browser.decide(page, None, comment="Not this week")
    assert done.status_code == 200
    assert str(done.url).endswith(f"?taskId={task['id']}&outcome=recorded")
    assert "Your decision is recorded" in done.text
    assert "by lead@example.com on" in done.text
    after = await task_now(api, task["id"])
    assert (after["status"], after["comment"], after["decidedBy"]) == (
        "rejected",
        "Not this week",
        LEAD,
    )
    assert not any("decision" in cls for cls, _ in forms_of(done.text))


async def test_opening_never_decides(api: Api, visitors: Visitors) -> None:
    """Mail scanners open links, follow refreshes and send HEAD: nothing changes."""
    task = await api.create()
    browser = visitors()
    for _ in range(3):
        assert (await browser.open(mailed_link(task, "approve"))).status_code == 200
    head = await browser.client.head(f"{DASHBOARD}?taskId={task['id']}&action=approve")
    assert head.status_code == 200 and head.content == b""
    # Even a GET shaped like the form's fields decides nothing.
    assert (
        await browser.client.get(
            DASHBOARD, params={"taskId": task["id"], "action": "approve", "decision": "approve"}
        )
    ).status_code == 200
    after = await task_now(api, task["id"])
    assert after["status"] == "pending"
    assert [entry["to"] for entry in after["statusHistory"]] == ["pending"]


async def test_a_second_browser_learns_someone_decided_first(api: Api, visitors: Visitors) -> None:
    task = await api.create()
    first, second = visitors(), visitors()
    one = await first.open(mailed_link(task, "approve"))
    two = await second.open(mailed_link(task, "reject"))
    assert "recorded" in (await first.decide(one, None)).text
    late = await second.decide(two, None)
    assert "Someone decided first" in late.text
    assert (await task_now(api, task["id"]))["status"] == "approved"


async def test_confirming_without_a_choice_asks_for_one(api: Api, visitors: Visitors) -> None:
    task = await api.create()
    browser = visitors()
    page = await browser.open(f"{DASHBOARD}?{urlencode({'secret': task['approverSecret']})}")
    page = await browser.open(f"{DASHBOARD}?taskId={task['id']}")
    assert decision_form(page.text)["decision"] == [("approve", False), ("reject", False)]
    again = await browser.decide(page, None, comment="kept")
    assert again.status_code == 422
    assert "Choose Approve or Reject" in again.text and ">kept</textarea>" in again.text
    assert (await task_now(api, task["id"]))["status"] == "pending"


# -- who sees what ------------------------------------------------------------------


async def test_a_dashboard_token_shows_the_persons_tasks_and_nobody_elses(
    api: Api, visitors: Visitors, domain: Domain
) -> None:
    mine = await api.create(title="Mine to decide", approver="CFO@example.com")
    asked = await api.create(title="Asked by me", requester="cfo@example.com", approver=LEAD)
    other = await api.create(title="Not mine", approver="ceo@example.com")
    browser = visitors()
    page = await browser.open(await person_link(api, domain, "cfo@example.com"))
    assert page.status_code == 200
    assert "Signed in as cfo@example.com" in page.text
    assert "Mine to decide" in page.text and "Asked by me" not in page.text
    assert "Not mine" not in page.text
    requested = await browser.open(f"{DASHBOARD}?role=requester")
    assert "Asked by me" in requested.text and "Mine to decide" not in requested.text
    # Somebody else's task, asked for by id: as if absent.
    refused = await browser.open(f"{DASHBOARD}?taskId={other['id']}&action=approve")
    assert refused.status_code == 404 and "Not mine" not in refused.text
    # Their own request: shown, not decidable by them.
    shown = await browser.open(f"{DASHBOARD}?taskId={asked['id']}")
    assert "Waiting for lead@example.com to decide" in shown.text
    assert not any("decision" in cls for cls, _ in forms_of(shown.text))
    decided = await browser.decide(
        await browser.open(f"{DASHBOARD}?taskId={mine['id']}"), "approve"
    )
    assert "Your decision is recorded" in decided.text
    assert (await task_now(api, mine["id"]))["decidedBy"] == "cfo@example.com"


async def test_a_task_secret_shows_its_task_only(api: Api, visitors: Visitors) -> None:
    task = await api.create(title="This one")
    await api.create(title="Another of the same approver")
    browser = visitors()
    page = await browser.open(
        f"{DASHBOARD}?{urlencode({'secret': task['approverSecret'], 'role': 'approver'})}"
    )
    assert "This one" in page.text and "Another of the same approver" not in page.text
    # A requester's secret reads, and its holder cannot decide.
    reader = visitors()
    read = await reader.open(
        f"{DASHBOARD}?{urlencode({'taskId': task['id'], 'secret': task['requesterSecret']})}"
    )
    assert read.status_code == 200 and "This one" in read.text
    assert not any("decision" in cls for cls, _ in forms_of(read.text))
    form = decision_form((await browser.open(f"{DASHBOARD}?taskId={task['id']}")).text)
    # The approver's form, posted with the requester's cookie: not theirs.
    forged = {"taskId": task["id"], "form_token": form["form_token"], "decision": "approve"}
    assert (await reader.post(forged)).status_code == 400
    assert (await task_now(api, task["id"]))["status"] == "pending"


async def test_tampered_and_expired_links_are_refused(
    api: Api, visitors: Visitors, domain: Domain
) -> None:
    await api.create(title="Secret plans", approver="cfo@example.com")
    good = await person_link(api, domain, "cfo@example.com")
    expired = await person_link(api, domain, "cfo@example.com", seconds=-1)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for link in (tampered, expired, f"{DASHBOARD}?secret={'ab' * 32}"):
        browser = visitors()
        page = await browser.open(link)
        assert page.status_code == 403, link
        assert "not valid or has expired" in page.text
        assert "Secret plans" not in page.text
        assert browser.cookie() is None
    # A page without any credential says where to find one.
    page = await visitors().open(DASHBOARD)
    assert page.status_code == 403 and "Open your tasks from your e-mail" in page.text
    # A kept credential that has expired since: refused, and the cookie is dropped.
    browser = visitors()
    browser.client.cookies.set("pt_dashboard", expired.rsplit("=", 1)[1], path=DASHBOARD)
    page = await browser.open(DASHBOARD)
    assert page.status_code == 403 and "expired" in page.text
    assert 'pt_dashboard=""' in page.headers["set-cookie"]


async def test_a_post_from_another_site_or_without_the_forms_token_is_refused(
    api: Api, visitors: Visitors
) -> None:
    task = await api.create()
    browser = visitors()
    page = await browser.open(mailed_link(task, "approve"))
    form = {k: v for k, v in decision_form(page.text).items() if not isinstance(v, list)}
    form["decision"] = "approve"
    cross = await browser.post(
        form, **{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "Request refused" in cross.text
    # Without Fetch metadata, a foreign Origin is refused; `Origin: null` is this page's.
    foreign = await browser.post(form, **{"Sec-Fetch-Site": "", "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert (await browser.post({**form, "form_token": "x" * 22})).status_code == 400
    assert (
        await browser.post({k: v for k, v in form.items() if k != "form_token"})
    ).status_code == 400
    # Without the cookie (another browser, the form's token copied): refused.
    stranger = await visitors().post(form)
    assert stranger.status_code == 403
    assert (await task_now(api, task["id"]))["status"] == "pending"
    # The real thing, after all that.
    assert (await browser.post(form, **{"Sec-Fetch-Site": ""})).status_code == 303
    assert (await task_now(api, task["id"]))["status"] == "approved"


async def test_signing_out_forgets_the_credential(api: Api, visitors: Visitors) -> None:
    task = await api.create()
    browser = visitors()
    page = await browser.open(mailed_link(task, "approve"))
    (sign_out,) = [fields for cls, fields in forms_of(page.text) if not cls]
    response = await browser.post(sign_out)
    assert response.status_code == 200 and "You are signed out" in response.text
    assert browser.cookie() is None
    assert (await browser.open(DASHBOARD)).status_code == 403


# -- the list -----------------------------------------------------------------------


async def test_tabs_counts_search_sort_and_pages(
    api: Api, visitors: Visitors, domain: Domain
) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    made = [
        await api.create(title=f"Budget {n}", decisionBy=(base + timedelta(days=n)).isoformat())
        for n in range(5)
    ]
    await api.create(title="Laptop", decisionBy=(base + timedelta(days=9)).isoformat())
    for task, verb in ((made[0], "approve"), (made[1], "reject")):
        response = await api.put(
            f"/tasks/{task['id']}/{verb}", json={"secret": task["approverSecret"]}
        )
        assert response.status_code == 200
    browser = visitors()
    page = await browser.open(await person_link(api, domain, LEAD))
    text = page.text
    for label, count in (("Pending", 4), ("Approved", 1), ("Rejected", 1), ("Due", 0), ("All", 6)):
        assert f'{label} <span class="muted">({count})</span>' in text
    assert text.index("Budget 2") < text.index("Budget 4") < text.index("Laptop")
    latest_first = (await browser.open(f"{DASHBOARD}?sort=-deadline")).text
    assert latest_first.index("Laptop") < latest_first.index("Budget 4")
    found = (await browser.open(f"{DASHBOARD}?pattern=budg&status=all")).text
    assert "Laptop" not in found and "All: 1\u20135 of 5 matching \u201cbudg\u201d." in found
    first = (await browser.open(f"{DASHBOARD}?limit=2")).text
    assert "Page 1 of 2" in first and "Budget 3" in first and "Budget 4" not in first
    assert 'href="?role=approver&amp;status=pending&amp;page=2&amp;limit=2" rel="next"' in first
    second = (await browser.open(f"{DASHBOARD}?limit=2&page=2")).text
    assert "Budget 4" in second and "Laptop" in second and "Budget 2" not in second
    approved = (await browser.open(f"{DASHBOARD}?status=approved")).text
    assert "Budget 0" in approved and "by lead@example.com on" in approved


async def test_decided_due_and_late_tasks_say_so(
    api: Api, visitors: Visitors, domain: Domain
) -> None:
    past = (utcnow() - timedelta(minutes=5)).isoformat()
    overdue = await api.create(title="Overdue one", decisionBy=past)
    late = await api.create(title="Late one", decisionBy=past, allowLateDecision=True)
    browser = visitors()
    await browser.open(await person_link(api, domain, LEAD))
    late_page = await browser.open(f"{DASHBOARD}?taskId={late['id']}")
    done = await browser.decide(late_page, "approve", comment="sorry, late")
    assert "Your decision is recorded" in done.text
    assert ", after the deadline (" in done.text
    # Past its deadline, the other cannot be decided; asked to, it turns due (if the
    # deadline scheduler, when running in this session, has not turned it already).
    response = await api.put(
        f"/tasks/{overdue['id']}/approve", json={"secret": overdue["approverSecret"]}
    )
    assert response.status_code == 409
    due = await browser.open(f"{DASHBOARD}?taskId={overdue['id']}")
    assert '<span class="badge due">Due</span> The deadline passed on <time' in due.text
    assert "without a decision." in due.text
    assert "the deadline passed without a decision" in due.text  # in the history
    assert not any("decision" in cls for cls, _ in forms_of(due.text))


def test_where_a_task_stands_is_said_plainly() -> None:
    now = utcnow()
    task = {
        "status": "pending",
        "decisionBy": (now - timedelta(minutes=1)).isoformat(),
        "allowLateDecision": False,
        "decidedAt": None,
        "decidedBy": None,
    }
    overdue = shown(task)
    assert (overdue.state, overdue.label) == ("overdue", "Overdue")
    assert overdue.sentence.endswith("; it can no longer be decided.")
    open_late = shown({**task, "allowLateDecision": True})
    assert open_late.state == "pending" and open_late.sentence.startswith("Decide by <time")
    due = shown({**task, "status": "due", "allowLateDecision": True})
    assert due.sentence.endswith("without a decision. A late decision is still possible.")
    decided = shown(
        {**task, "status": "rejected", "decidedAt": now.isoformat(), "decidedBy": "a@b.com"}
    )
    assert decided.decided_late and decided.sentence.startswith("by a@b.com on <time")
    assert ", after the deadline (" in decided.sentence
    assert shown({**task, "decisionBy": None}).sentence == "No deadline."


async def test_a_wrong_parameter_is_named_and_unknown_ones_ignored(
    api: Api, visitors: Visitors
) -> None:
    task = await api.create()
    browser = visitors()
    await browser.open(mailed_link(task, "approve"))
    for query, name in (("status=done", "status"), ("limit=500", "limit"), ("action=x", "action")):
        page = await browser.open(f"{DASHBOARD}?{query}")
        assert page.status_code == 400 and f"{name}:" in page.text
    tracked = await browser.open(f"{DASHBOARD}?taskId={task['id']}&utm_source=mail")
    assert tracked.status_code == 200


async def test_secrets_in_dashboard_addresses_never_reach_logs() -> None:
    target = "/people-task/dashboard?taskId=abc&action=approve&secret=pd_Zm9vYmFy"
    assert redact(target) == "/people-task/dashboard?taskId=abc&action=approve&secret=***"


async def test_appmixers_person_wide_secret_lists_the_persons_tasks(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'person.db'}"
    from peopletasks.store import migrate

    migrate(url)
    async with service_on(url, person_secrets=True, public_url="http://service") as (_, api):
        one = await api.create(title="First for the lead")
        await api.create(title="Second for the lead", approver="LEAD@example.com")
        transport = api.http._transport
        async with Visitor(transport) as browser:
            link = f"{DASHBOARD}?{urlencode({'secret': one['approverSecret'], 'role': 'approver'})}"
            page = await browser.open(link)
            assert "First for the lead" in page.text and "Second for the lead" in page.text


async def test_what_people_wrote_is_shown_not_run(api: Api, visitors: Visitors) -> None:
    task = await api.create(
        title="<script>alert(1)</script>",
        description='<img src=x onerror="alert(2)"> [x](javascript:alert(3))',
    )
    await api.post(f"/tasks/{task['id']}/notes", json={"text": "<b>bold</b>"})
    browser = visitors()
    page = await browser.open(mailed_link(task, "approve"))
    listed = await browser.open(f"{DASHBOARD}?role=approver")
    for html in (page.text, listed.text):
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in page.text and 'href="javascript:' not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_each_approver_responds_with_the_tasks_options_and_form(
    api: Api, visitors: Visitors
) -> None:
    """Several approvers, custom responses and a form, on the dashboard as on the
    confirmation page: each approver their own credential, the task's own buttons, the
    form's inputs checked as the API checks them."""
    task = await api.create(
        approver=LEAD,
        approvers=[LEAD, "cfo@example.com"],
        decisionRule="all",
        options=[
            {"key": "go", "label": "Go ahead", "outcome": "approved"},
            {"key": "changes", "label": "Send back for changes", "outcome": "rejected"},
        ],
        form={
            "type": "object",
            "properties": {"budget": {"type": "string", "enum": ["Q1", "Q2"], "title": "Budget"}},
            "required": ["budget"],
        },
    )
    cfo = visitors()
    link = f"{DASHBOARD}?" + urlencode(
        {
            "taskId": task["id"],
            "action": "approve",
            "secret": task["approverSecrets"]["cfo@example.com"],
        }
    )
    page = await cfo.open(link)
    assert decision_form(page.text)["decision"] == [("go", True), ("changes", False)]
    assert 'name="data.budget"' in page.text and "Budget" in page.text

    refused = await cfo.decide(page, None)
    assert refused.status_code == 422 and "budget" in refused.text
    assert (await task_now(api, task["id"]))["approvers"][1]["status"] == "pending"

    fields = {k: v for k, v in decision_form(page.text).items() if not isinstance(v, list)}
    done = await cfo.post({**fields, "decision": "go", "data.budget": "Q2", "comment": "ok"})
    assert done.status_code == 303
    after = await task_now(api, task["id"])
    assert after["status"] == "pending"  # the rule waits for the lead
    cfo_state = after["approvers"][1]
    assert (cfo_state["status"], cfo_state["option"], cfo_state["data"]) == (
        "approved",
        "go",
        {"budget": "Q2"},
    )
    again = await cfo.open(f"{DASHBOARD}?taskId={task['id']}")
    assert not any("decision" in cls for cls, _ in forms_of(again.text))
    assert "Your response is recorded" in again.text
