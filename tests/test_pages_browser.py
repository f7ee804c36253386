"""A person clicks through in a real browser (headless Chromium), against the real service."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, TEST_KEY
from tests.support.server import ServiceProcess, cli, service_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    directory: Path = tmp_path_factory.mktemp("browser")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'b.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "flows@example.com", env=env).splitlines()[-1]
    with ServiceProcess(env) as service:
        yield service, token


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is not installed, and CI must test in it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def create(live: tuple[ServiceProcess, str], **fields: Any) -> dict[str, Any]:
    service, token = live
    response = httpx.post(
        f"{service.url}/people-task/tasks",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "title": "Vacation 1-5 Dec",
            "description": "Ann asks for **five** days off.",
            "requester": "ann@example.com",
            "approver": "lead@example.com",
            **fields,
        },
    )
    response.raise_for_status()
    return dict(response.json())


def task_now(live: tuple[ServiceProcess, str], task_id: str) -> dict[str, Any]:
    service, token = live
    return dict(
        httpx.get(
            f"{service.url}/people-task/tasks/{task_id}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    )


def test_open_link_type_comment_click_approve(
    live: tuple[ServiceProcess, str], browser: Any
) -> None:
    task = create(live)
    page = browser.new_page()
    page.goto(task["links"]["approve"])
    assert page.title() == "Decide: Vacation 1-5 Dec"
    assert page.locator("strong", has_text="five").count() == 1
    page.get_by_label("Comment").fill("Enjoy the break")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/done")
    assert "Your decision is recorded" in page.content()
    assert page.locator(".status").inner_text() == "Approved"
    after = task_now(live, task["id"])
    assert after["status"] == "approved"
    assert after["comment"] == "Enjoy the break"
    page.close()


def test_keyboard_only_reject(live: tuple[ServiceProcess, str], browser: Any) -> None:
    task = create(live)
    page = browser.new_page(viewport={"width": 375, "height": 740})  # a phone
    page.goto(task["links"]["reject"])
    page.get_by_label("Comment").focus()
    page.keyboard.type("Not this week")
    page.keyboard.press("Tab")  # the first button: Reject, for a reject link
    assert page.evaluate("document.activeElement.textContent") == "Reject"
    page.keyboard.press("Enter")
    page.wait_for_url("**/done")
    after = task_now(live, task["id"])
    assert (after["status"], after["comment"]) == ("rejected", "Not this week")
    # The page fits a phone: no horizontal scrolling.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.close()


def test_a_second_tab_cannot_change_the_decision(
    live: tuple[ServiceProcess, str], browser: Any
) -> None:
    task = create(live)
    first, second = browser.new_page(), browser.new_page()
    first.goto(task["links"]["approve"])
    second.goto(task["links"]["approve"])
    first.get_by_role("button", name="Approve").click()
    first.wait_for_url("**/done")
    second.get_by_role("button", name="Reject").click()
    second.wait_for_url("**/done?late=1")
    assert "Someone decided first" in second.content()
    assert task_now(live, task["id"])["status"] == "approved"


def test_tokens_never_reach_the_access_log(live: tuple[ServiceProcess, str], browser: Any) -> None:
    task = create(live)
    page = browser.new_page()
    page.goto(task["links"]["approve"])
    page.close()
    service, _ = live
    log = service.log.read_text()
    token = task["links"]["approve"].rsplit("/", 1)[1]
    assert "/people-task/act/***" in log
    assert token not in log
