"""Deciding from the e-mail's links: scanner-safe pages, and only the page's form decides."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from peopletasks import links
from peopletasks.domain import Domain
from peopletasks.service import create_app
from peopletasks.service.app import build_domain
from peopletasks.signing import Signer
from tests.conftest import TEST_KEY, Api, ApiFactory, settings_for

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Site": "none",
    "Sec-Fetch-Mode": "navigate",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def path_of(url: str) -> str:
    return urlsplit(url).path


def form_token(task_id: str) -> str:
    return links.form_token(Signer([TEST_KEY.encode()]), task_id)


async def post_form(api: Api, url: str, **fields: str) -> httpx.Response:
    headers = {**FORM, "Sec-Fetch-Site": "same-origin", "Origin": "null"}
    return await api.http.post(path_of(url), data=fields, headers=headers)


async def status_of(api: Api, task_id: str) -> dict[str, Any]:
    return dict((await api.get(f"/tasks/{task_id}")).json())


async def test_create_returns_signed_links_expiring_at_the_deadline(api: Api) -> None:
    deadline = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    task = await api.create(decisionBy=deadline.isoformat())
    assert set(task["links"]) == {"approve", "reject", "expiresAt"}
    for action in ("approve", "reject"):
        url = task["links"][action]
        assert url.startswith("http://127.0.0.1:8000/people-task/act/")
        assert task["approverSecret"] not in url
        assert len(url.rsplit("/", 1)[1]) == links.TOKEN_LENGTH
    assert task["links"]["approve"] != task["links"]["reject"]
    assert task["links"]["expiresAt"] == deadline.isoformat().replace("+00:00", "Z")


async def test_without_a_deadline_links_expire_after_the_maximum_age(api: Api) -> None:
    task = await api.create()
    expires = datetime.fromisoformat(task["links"]["expiresAt"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)


async def test_the_page_shows_a_tasks_priority(api: Api) -> None:
    urgent = await api.create(priority="highest")
    page = await api.http.get(path_of(urgent["links"]["approve"]), headers=BROWSER)
    assert "<dt>Priority</dt><dd>Highest</dd>" in page.text
    plain = await api.create()
    page = await api.http.get(path_of(plain["links"]["approve"]), headers=BROWSER)
    assert "Priority" not in page.text


async def test_opening_links_never_decides(api: Api) -> None:
    """A mail scanner opens every link, many times, with and without browser headers."""
    task = await api.create(description="Ann asks for **five** days off.")
    for action in ("approve", "reject"):
        path = path_of(task["links"][action])
        for n in range(100):
            headers = BROWSER if n % 2 else {"User-Agent": "SafeLinks/1.0"}
            got = await api.http.get(path, headers=headers)
            assert got.status_code == 200
            head = await api.http.head(path, headers=headers)
            assert head.status_code == 200
            assert head.content == b""
    assert (await status_of(api, task["id"]))["status"] == "pending"
    page = await api.http.get(path_of(task["links"]["approve"]), headers=BROWSER)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    html = page.text
    assert "Vacation 1-5 Dec" in html
    assert "<strong>five</strong>" in html
    assert '<label for="comment">' in html
    assert ">Approve</button>" in html and ">Reject</button>" in html


async def test_the_pages_form_decides_with_the_comment_and_shows_the_outcome(api: Api) -> None:
    task = await api.create()
    response = await post_form(
        api, task["links"]["approve"], comment="Enjoy!", form_token=form_token(task["id"])
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("/done")
    after = await status_of(api, task["id"])
    assert after["status"] == "approved"
    assert after["comment"] == "Enjoy!"
    assert after["decidedBy"] == "lead@example.com"
    done = await api.http.get(response.headers["location"])
    assert "Approved" in done.text and "lead@example.com" in done.text
    # Opening the link again shows who decided, and offers no buttons.
    again = await api.http.get(path_of(task["links"]["reject"]))
    assert again.status_code == 200
    assert "already been decided" in again.text
    assert "<button" not in again.text


async def test_reject_through_its_link(api: Api) -> None:
    task = await api.create()
    response = await post_form(
        api, task["links"]["reject"], decision="reject", form_token=form_token(task["id"])
    )
    assert response.status_code == 303
    assert (await status_of(api, task["id"]))["status"] == "rejected"


async def test_double_submit_keeps_the_first_decision(api: Api) -> None:
    task = await api.create()
    token = form_token(task["id"])
    first = await post_form(api, task["links"]["approve"], comment="yes", form_token=token)
    second = await post_form(api, task["links"]["reject"], comment="no", form_token=token)
    assert first.status_code == second.status_code == 303
    assert second.headers["location"].endswith("?late=1")
    assert "Someone decided first" in (await api.http.get(second.headers["location"])).text
    after = await status_of(api, task["id"])
    assert (after["status"], after["comment"]) == ("approved", "yes")


def tampered(url: str) -> str:
    token = url.rsplit("/", 1)[1]
    flipped = ("A" if token[20] != "A" else "B").join((token[:20], token[21:]))
    return url.rsplit("/", 1)[0] + "/" + flipped


async def test_bad_links_get_their_page_and_change_nothing(api: Api) -> None:
    task = await api.create()
    other = await api.create(title="Other")
    raw_a = base64.urlsafe_b64decode(task["links"]["approve"].rsplit("/", 1)[1] + "=")
    raw_b = base64.urlsafe_b64decode(other["links"]["approve"].rsplit("/", 1)[1] + "=")
    spliced = base64.urlsafe_b64encode(raw_a[:17] + raw_b[17:]).decode().rstrip("=")
    cases = {
        "tampered": tampered(task["links"]["approve"]),
        "truncated": task["links"]["approve"][:-3],
        "unknown": "/people-task/act/" + "A" * 44,
        "other task's signature": "/people-task/act/" + spliced,
    }
    for name, url in cases.items():
        page = await api.http.get(path_of(url))
        assert page.status_code == 404, name
        assert "not valid" in page.text, name
        posted = await post_form(api, url, form_token=form_token(task["id"]))
        assert posted.status_code == 404, name
    assert (await status_of(api, task["id"]))["status"] == "pending"
    assert (await status_of(api, other["id"]))["status"] == "pending"


async def test_wrong_action_or_missing_form_token_is_refused(api: Api) -> None:
    task = await api.create()
    wrong = await post_form(
        api, task["links"]["approve"], decision="reject", form_token=form_token(task["id"])
    )
    assert wrong.status_code == 400
    missing = await post_form(api, task["links"]["approve"])
    assert missing.status_code == 400
    forged = await post_form(api, task["links"]["approve"], form_token="x" * 22)
    assert forged.status_code == 400
    assert (await status_of(api, task["id"]))["status"] == "pending"


async def test_cross_site_posts_are_refused(api: Api) -> None:
    task = await api.create()
    path = path_of(task["links"]["approve"])
    body = {"form_token": form_token(task["id"])}
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ):
        refused = await api.http.post(path, data=body, headers={**FORM, **headers})
        assert refused.status_code == 403, headers
        assert "Request refused" in refused.text
    assert (await status_of(api, task["id"]))["status"] == "pending"
    # Our own page's form: `Origin: null` under no-referrer, without Sec-Fetch-Site.
    allowed = await api.http.post(path, data=body, headers={**FORM, "Origin": "null"})
    assert allowed.status_code == 303


async def test_expired_links_and_passed_deadlines(api: Api, domain: Domain) -> None:
    task = await api.create()
    expired = links.issue_token(
        domain.signer,
        task_id=task["id"],
        approver=task["approver"],
        choice=0,  # approve
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    page = await api.http.get(f"/people-task/act/{expired}")
    assert page.status_code == 410
    assert "expired" in page.text
    posted = await post_form(api, f"/people-task/act/{expired}", form_token=form_token(task["id"]))
    assert posted.status_code == 410
    past = await api.create(decisionBy="2020-01-01 19:00:00")
    assert (await api.http.get(path_of(past["links"]["approve"]))).status_code == 410
    assert (await status_of(api, task["id"]))["status"] == "pending"


async def test_rotated_signing_keys(api: Api, database_url: str) -> None:
    task = await api.create()
    path = path_of(task["links"]["approve"])

    async def status_with_keys(keys: list[str]) -> int:
        settings = settings_for(database_url, secret_key=keys)
        own = build_domain(settings)
        try:
            app = create_app(settings, domain=own)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                return (await client.get(path)).status_code
        finally:
            await own.db.dispose()

    assert await status_with_keys(["a-newer-signing-key-0123456789", TEST_KEY]) == 200
    assert await status_with_keys(["a-newer-signing-key-0123456789"]) == 404


async def test_changing_the_approver_voids_old_links(api: Api) -> None:
    task = await api.create()
    await api.put(f"/tasks/{task['id']}", json={"approver": "new-lead@example.com"})
    assert (await api.http.get(path_of(task["links"]["approve"]))).status_code == 404
    fresh = (await api.get(f"/tasks/{task['id']}/links")).json()
    assert (await api.http.get(path_of(fresh["approve"]))).status_code == 200


async def test_links_endpoint_is_for_the_creator(api: Api, new_api: ApiFactory) -> None:
    task = await api.create()
    colleague = await new_api("colleague@example.com")
    assert (await colleague.get(f"/tasks/{task['id']}/links")).status_code == 403
    stranger = await new_api("flows@example.com", org="links-" + task["id"])
    assert (await stranger.get(f"/tasks/{task['id']}/links")).status_code == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_done_page_needs_a_valid_link(api: Api, method: str) -> None:
    response = await api.http.request(method, "/people-task/act/" + "A" * 44 + "/done")
    assert response.status_code == 404
