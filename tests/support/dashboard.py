"""A person at the dashboard without JavaScript: opens a link, follows the landing
page's refresh, keeps the cookie, posts the page's form as a browser would."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

DASHBOARD = "/people-task/dashboard"
_REFRESH = re.compile(r'<meta http-equiv="refresh" content="0; url=([^"]*)">')


class _Forms(HTMLParser):
    """The fields of each form of a page: (class, {name: value}), radios as offered."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, Any]]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("method") == "post":
            self._current = {}
            self.forms.append((a.get("class") or "", self._current))
        elif tag in ("input", "textarea") and self._current is not None and a.get("name"):
            name = str(a["name"])
            if a.get("type") == "radio":
                self._current.setdefault(name, [])
                self._current[name].append((a.get("value"), "checked" in a))
            else:
                self._current[name] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms_of(html: str) -> list[tuple[str, dict[str, Any]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def decision_form(html: str) -> dict[str, Any]:
    found = [fields for cls, fields in forms_of(html) if "decision" in cls]
    assert len(found) == 1, "no decision form on the page"
    return found[0]


def path_of(link: str) -> str:
    """The dashboard's path and query of a link (the service answers in process)."""
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Visitor:
    """One browser: its own cookies, speaking to the app at `transport`."""

    def __init__(self, transport: httpx.AsyncBaseTransport, base_url: str = "http://service"):
        self.client = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.landings: list[httpx.Response] = []

    async def __aenter__(self) -> Visitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def open(self, link: str) -> httpx.Response:
        """GET a link; a landing page is followed (its refresh) as a browser would."""
        response = await self.client.get(path_of(link))
        refresh = _REFRESH.search(response.text) if response.status_code == 200 else None
        if refresh is None:
            return response
        self.landings.append(response)
        return await self.client.get(
            path_of(urljoin(str(response.url), unescape(refresh.group(1))))
        )

    async def post(self, fields: dict[str, Any], **headers: str) -> httpx.Response:
        """Post a form as a browser on a `no-referrer` page does (`Origin: null`, same
        origin by Fetch metadata) unless `headers` say otherwise."""
        sent = {"Origin": "null", "Sec-Fetch-Site": "same-origin", **headers}
        sent = {k: v for k, v in sent.items() if v}
        return await self.client.post(DASHBOARD, data=fields, headers=sent)

    async def decide(
        self, page: httpx.Response, decision: str | None, comment: str = "", **headers: str
    ) -> httpx.Response:
        """Fill the page's decision form and confirm; follows the answer's redirect."""
        fields = decision_form(page.text)
        form = {k: v for k, v in fields.items() if not isinstance(v, list)}
        form["comment"] = comment
        chosen = [value for value, checked in fields.get("decision", []) if checked]
        if decision is not None:
            form["decision"] = decision
        elif chosen:  # the radio the page preselected, as a browser sends it
            form["decision"] = chosen[0]
        response = await self.post(form, **headers)
        if response.status_code == 303:
            onward = urljoin(str(response.url), response.headers["location"])
            return await self.client.get(path_of(onward))
        return response

    def cookie(self) -> str | None:
        return self.client.cookies.get("pt_dashboard")
