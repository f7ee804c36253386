"""Appmixer's own People Task components, call for call, against our service.

A line-by-line port of `appmixer.utils.tasks.RequestApproval` and
`RequestApprovalEmail` (clientIO/appmixer-connectors,
src/appmixer/utils/tasks/RequestApproval/RequestApproval.js and
RequestApprovalEmail/RequestApprovalEmail.js), with `context.callAppmixer` played by
`Gateway`: what docs/api.md says a gateway in front of the service must do (map
`/plugins/appmixer/utils/tasks/*` to `/people-task/*`, send the flow owner's API
token). Nothing here adapts to us: where the components read a field we do not
send, they fail here as they would in Appmixer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

APPMIXER_PREFIX = "/plugins/appmixer/utils/tasks/"
#: What each output port of both components offers (component.json `options`).
OUTPUT_OPTIONS = (
    "id",
    "title",
    "description",
    "status",
    "approver",
    "requester",
    "decisionBy",
    "decisionMade",
)


class ComponentError(Exception):
    """What the component throws (`new Error(...)`, or callAppmixer on an HTTP error)."""


class Gateway:
    """`context.callAppmixer` through the gateway: Appmixer's plugin path onto ours, with
    the flow owner's bearer token."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token
        self.calls: list[tuple[str, str]] = []

    async def call_appmixer(self, end_point: str, method: str, body: Any = None) -> Any:
        assert end_point.startswith(APPMIXER_PREFIX), end_point
        path = "/people-task/" + end_point[len(APPMIXER_PREFIX) :]
        self.calls.append((method, path))
        response = await self.http.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code >= 400:
            raise ComponentError(f"{method} {end_point}: {response.status_code} {response.text}")
        return response.json() if response.content else None


def js_iso(value: str) -> str:
    """`new Date(value).toISOString()` of an ISO 8601 value with a zone: UTC with
    milliseconds and `Z`."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _with_search(url: str, params: list[tuple[str, str]]) -> str:
    """`new URL(url); url.search = new URLSearchParams(params)`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))


@dataclass
class Mail:
    to: str
    template_data: dict[str, str]


@dataclass
class Component:
    """One instance of a component in a flow: its state, what it mailed, what it sent
    out of its ports."""

    gateway: Gateway
    webhook_url: str
    state: dict[str, Any] = field(default_factory=dict)
    mails: list[Mail] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def stop(self) -> None:
        """`stop(context)`: DELETE every webhook it registered."""
        for webhook_id in list(self.state):
            await self.gateway.call_appmixer(f"{APPMIXER_PREFIX}webhooks/{webhook_id}", "DELETE")


class RequestApprovalEmail(Component):
    async def receive_task(self, content: dict[str, Any]) -> None:
        body = dict(content)
        if body.get("decisionBy"):
            body["decisionBy"] = js_iso(body["decisionBy"])
        task = await self.gateway.call_appmixer(f"{APPMIXER_PREFIX}tasks", "POST", body)
        if not task.get("taskId"):
            raise ComponentError("Missing task ID, cannot create Request.")
        webhook = await self.gateway.call_appmixer(
            f"{APPMIXER_PREFIX}webhooks",
            "POST",
            {"url": self.webhook_url, "taskId": task["taskId"]},
        )
        if not webhook.get("webhookId"):
            raise ComponentError("Missing webhook ID cannot create Request.")
        self.state[webhook["webhookId"]] = {}
        await self._send_notifications(
            {
                "taskId": task["taskId"],
                "approverSecret": task["approverSecret"],
                "requesterSecret": task["requesterSecret"],
                **content,
            }
        )

    async def _send_notifications(self, task_data: dict[str, Any]) -> None:
        response = await self.gateway.call_appmixer(f"{APPMIXER_PREFIX}dashboard-url", "GET")
        dashboard_url = response["dashboardUrl"]
        approve = _with_search(
            dashboard_url,
            [
                ("taskId", task_data["taskId"]),
                ("action", "approve"),
                ("secret", task_data["approverSecret"]),
            ],
        )
        reject = _with_search(
            dashboard_url,
            [
                ("taskId", task_data["taskId"]),
                ("action", "reject"),
                ("secret", task_data["approverSecret"]),
            ],
        )
        approver_dashboard = _with_search(
            dashboard_url, [("secret", task_data["approverSecret"]), ("role", "approver")]
        )
        requester_dashboard = _with_search(
            dashboard_url, [("secret", task_data["requesterSecret"]), ("role", "requester")]
        )
        data = {
            "task_title": task_data["title"],
            "task_description": task_data["description"],
            "requester_email": task_data["requester"],
            "approval_email": task_data["approver"],
            "task_dashboard_confirm": approve,
            "task_dashboard_reject": reject,
            "task_dashboard_link_approver": approver_dashboard,
            "task_dashboard_link_requester": requester_dashboard,
        }
        self.mails.append(Mail(task_data["approver"], data))
        self.mails.append(Mail(task_data["requester"], data))

    def receive_webhook(self, data: dict[str, Any]) -> dict[str, str]:
        if data["status"] != "pending":
            self.sent.append((data["status"], data))
        return {"status": "success"}


class RequestApproval(Component):
    async def receive_task(self, content: dict[str, Any]) -> None:
        body = dict(content)
        if body.get("decisionBy"):
            body["decisionBy"] = js_iso(body["decisionBy"])
        task = await self.gateway.call_appmixer(f"{APPMIXER_PREFIX}tasks", "POST", body)
        task["id"] = task.get("taskId")
        task.pop("taskId", None)
        self.sent.append(("created", task))
        webhook = await self.gateway.call_appmixer(
            f"{APPMIXER_PREFIX}webhooks",
            "POST",
            {"url": self.webhook_url, "taskId": task["id"]},
        )
        # `context.stateSet(webhook.webhookId, {})`: `undefined` becomes the key
        # "undefined" when the answer has no webhookId.
        self.state[webhook.get("webhookId") or "undefined"] = {}

    def receive_webhook(self, data: dict[str, Any]) -> dict[str, str]:
        data = dict(data)
        data["id"] = data.get("taskId")
        data.pop("taskId", None)
        if data["status"] != "pending":
            self.sent.append((data["status"], data))
        return {"status": "success"}
