"""The dashboard in a real browser (headless Chromium) against a served process: from
the link Appmixer's RequestApprovalEmail mails to a decision, at a phone's width and a
desktop's, by mouse and by keyboard. Screenshots of each step are kept (the folder is
printed); the webhook fires once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.support.appmixer import Gateway, RequestApprovalEmail
from tests.support.receiver import Receiver
from tests.support.server import ServiceProcess, cli, service_env
from tests.test_pages_browser import browser as browser

T = TypeVar("T")
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
BRAND = {"PEOPLETASKS_BRAND_NAME": "Acme Approvals", "PEOPLETASKS_BRAND_COLOR": "#5b2ca0"}


class Live:
    def __init__(self, service: ServiceProcess, token: str, env: dict[str, str]) -> None:
        self.service = service
        self.token = token
        self.env = env

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.service.url}/people-task{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            **kwargs,
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory: Path = tmp_path_factory.mktemp("dashboard-browser")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'd.db'}", TEST_KEY, **BRAND)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        yield Live(service, token, {**env, "PEOPLETASKS_PUBLIC_URL": service.url})


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """Where the screenshots go (kept with the run's temporary files)."""
    folder = tmp_path_factory.mktemp("dashboard-screenshots", numbered=False)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"dashboard screenshots: {folder}")
    print(f"dashboard screenshots: {folder}")
    return folder


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def wait_for(condition: Callable[[], T], timeout: float = 15.0) -> T:
    """`condition()` once truthy (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def run_component(live: Live, webhook_url: str, **task: Any) -> RequestApprovalEmail:
    """RequestApprovalEmail's `receive`, as Appmixer runs it, through the gateway."""

    async def run() -> RequestApprovalEmail:
        async with httpx.AsyncClient(base_url=live.service.url) as http:
            component = RequestApprovalEmail(Gateway(http, live.token), webhook_url)
            await component.receive_task(
                {
                    "title": "Vacation 1-5 Dec",
                    "description": "Ann asks for **five** days off.\n\n- handover: done",
                    "requester": "Ann.Smith@Example.com",
                    "approver": "Lead@Example.com",
                    "decisionBy": "2030-12-01T17:00:00Z",
                    **task,
                }
            )
            return component

    # Playwright's sync API keeps an event loop on this thread: run it on another.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


def webmail(page: Any, component: RequestApprovalEmail) -> None:
    """The approver's mail, shown as a webmail would: on a page of another origin, so
    following a link is a cross-site navigation (no SameSite=Strict cookie goes with
    it)."""
    data = component.mails[0].template_data
    page.set_content(
        "<!doctype html><title>Inbox</title><h1>New Task</h1>"
        f"<p>New request for approval came from <b>{data['requester_email']}</b></p>"
        f"<h2>{data['task_title']}</h2>"
        f'<p><a href="{data["task_dashboard_confirm"]}">APPROVE</a> '
        f'<a href="{data["task_dashboard_reject"]}">REJECT</a></p>'
        f'<p><a href="{data["task_dashboard_link_approver"]}">Visit Dashboard</a></p>'
    )


def task_id_of(component: RequestApprovalEmail) -> str:
    link = component.mails[0].template_data["task_dashboard_confirm"]
    return parse_qs(urlsplit(link).query)["taskId"][0]


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


_CONTRAST = """
(selectors) => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  return selectors.map((sel) => {
    const el = document.querySelector(sel);
    if (!el) return [sel, null];
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    return [sel, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}
"""


def contrast_ratios(page: Any, *selectors: str) -> dict[str, float]:
    return {sel: ratio for sel, ratio in page.evaluate(_CONTRAST, list(selectors)) if ratio}


def deliveries_of(live: Live, webhook_id: str) -> list[dict[str, Any]]:
    response = live.api("GET", f"/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json())


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone-360", "desktop-1280"])
def test_from_the_mailed_link_to_a_decision(
    live: Live, browser: Any, receiver: Receiver, shots: Path, viewport: dict[str, int]
) -> None:
    name = "phone" if viewport is PHONE else "desktop"
    component = run_component(live, receiver.url(f"/flow-{name}"))
    (webhook_id,) = component.state
    page = browser.new_page(viewport=viewport)
    sent: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda request: sent.append((request.url, request.all_headers())))
    webmail(page, component)
    page.screenshot(path=shots / f"{name}-1-mail.png", full_page=True)

    page.get_by_role("link", name="APPROVE").click()
    page.wait_for_url("**/people-task/dashboard?taskId=*&action=approve")
    assert "secret" not in page.url
    assert page.title() == "Vacation 1-5 Dec: Pending · Acme Approvals"
    assert page.locator("strong", has_text="five").count() == 1
    assert page.get_by_role("radio", name="Approve").is_checked()
    assert not page.get_by_role("radio", name="Reject").is_checked()
    assert no_horizontal_scroll(page)
    for selector, ratio in contrast_ratios(
        page, "main p", "dt", ".badge", "header .name", "button.primary", "#comment-help"
    ).items():
        assert ratio >= 4.5, (selector, ratio)
    page.screenshot(path=shots / f"{name}-2-task.png", full_page=True)

    page.get_by_label("Comment").fill("Enjoy the break")
    page.get_by_role("button", name="Confirm decision").click()
    page.wait_for_url("**outcome=recorded")
    assert page.get_by_role("status").inner_text() == "Thank you. Your decision is recorded."
    assert page.locator(".badge").first.inner_text() == "Approved"
    assert "by lead@example.com on" in page.locator("main").inner_text()
    assert no_horizontal_scroll(page)
    page.screenshot(path=shots / f"{name}-3-decided.png", full_page=True)

    # The flow's webhook fired, once, with what the component reads.
    wait_for(lambda: [d for d in deliveries_of(live, webhook_id) if d["status"] == "delivered"])
    (request,) = receiver.at(f"/flow-{name}")
    data = request.json()
    assert (data["status"], data["comment"]) == ("approved", "Enjoy the break")
    assert data["taskId"] == data["id"] == task_id_of(component)
    assert data["decisionMade"] is not None
    component.receive_webhook(data)
    assert [port for port, _ in component.sent] == ["approved"]
    assert len(deliveries_of(live, webhook_id)) == 1

    # Back in the mail, a second click shows the outcome; nothing decides again.
    webmail(page, component)
    page.get_by_role("link", name="REJECT").click()
    page.wait_for_url("**action=reject")
    assert page.get_by_role("radio").count() == 0
    assert page.locator(".badge").first.inner_text() == "Approved"
    # The secret went out in the mailed links' addresses and the cookie only: never in
    # a Referer, an address of the dashboard's own, or the access log.
    mail = component.mails[0].template_data
    secret = mail["task_dashboard_confirm"].rsplit("=", 1)[1]
    in_urls = [url for url, _ in sent if secret in url]
    assert in_urls == [mail["task_dashboard_confirm"], mail["task_dashboard_reject"]]
    in_headers = {name for _, headers in sent for name, value in headers.items() if secret in value}
    assert in_headers == {"cookie"}
    assert not any("referer" in headers for _, headers in sent)
    assert secret not in live.service.log.read_text()
    page.close()


def test_keyboard_only_at_a_phones_width(live: Live, browser: Any, receiver: Receiver) -> None:
    component = run_component(live, receiver.url("/keys"), title="Laptop for Ann")
    page = browser.new_page(viewport=PHONE)
    webmail(page, component)
    page.get_by_role("link", name="REJECT").click()
    page.wait_for_url("**action=reject")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # to the main content
    # Tab on to the checked radio of the decision (the back link, then the radios).
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "decision":
            break
    focused = page.evaluate(
        "({v: document.activeElement.value,"
        " o: getComputedStyle(document.activeElement).outlineStyle})"
    )
    assert focused == {"v": "reject", "o": "solid"}  # the chosen action, visibly focused
    page.keyboard.press("Tab")
    page.keyboard.type("Not this quarter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Confirm decision"
    page.keyboard.press("Enter")
    page.wait_for_url("**outcome=recorded#main")  # a redirect keeps the skip link's #main
    task = live.api("GET", f"/tasks/{task_id_of(component)}").json()
    assert (task["status"], task["comment"]) == ("rejected", "Not this quarter")
    page.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone-360", "desktop-1280"])
def test_a_persons_dashboard_lists_and_finds(
    live: Live, browser: Any, shots: Path, viewport: dict[str, int]
) -> None:
    name = "phone" if viewport is PHONE else "desktop"
    email = f"cfo-{name}@example.com"
    for n, title in enumerate(("Budget Q1", "Budget Q2", "Hire a designer", "Laptop")):
        created = live.api(
            "POST",
            "/tasks",
            json={
                "title": title,
                "requester": "ann@example.com",
                "approver": email,
                "decisionBy": f"2030-0{n + 1}-01T12:00:00Z",
                "priority": "high" if n == 0 else None,
            },
        )
        assert created.status_code == 201
    link = cli("dashboard", "link", "--email", email, env=live.env).splitlines()[-1]
    assert link.startswith(f"{live.service.url}/people-task/dashboard?secret=pd_")
    page = browser.new_page(viewport=viewport)
    page.set_content(f'<a href="{link}">See all your tasks</a>')
    page.get_by_role("link").click()
    page.wait_for_url("**/people-task/dashboard")
    status = page.get_by_role("navigation", name="Status")
    assert status.get_by_role("link", name="Pending (4)").get_attribute("aria-current") == "page"
    titles = page.locator("ul.tasks h2").all_inner_texts()
    assert titles == ["Budget Q1", "Budget Q2", "Hire a designer", "Laptop"]
    assert no_horizontal_scroll(page)
    page.screenshot(path=shots / f"{name}-4-list.png", full_page=True)

    page.get_by_label("Search titles").fill("budget")
    page.get_by_label("Sort by").select_option(label="Deadline, latest first")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**pattern=budget**")
    assert page.locator("ul.tasks h2").all_inner_texts() == ["Budget Q2", "Budget Q1"]
    page.get_by_role("link", name="Budget Q1").click()
    page.wait_for_url("**taskId=*")
    assert page.get_by_role("heading", name="History").is_visible()
    assert page.get_by_role("group", name="Your response").is_visible()
    page.screenshot(path=shots / f"{name}-5-task-from-list.png", full_page=True)
    page.close()
