"""Webhook registrations: a URL (or a Prefect flow run) told of every status change."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from peopletasks.domain.context import Domain
from peopletasks.domain.events import record_current_status
from peopletasks.domain.inputs import WebhookCreate
from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import may_manage_webhook, may_read
from peopletasks.domain.status import Status
from peopletasks.domain.views import webhook_view
from peopletasks.errors import Forbidden, NotFound, ValidationFailed
from peopletasks.signing import derived_secret
from peopletasks.store import tasks as stored_tasks
from peopletasks.store.tables import tasks, webhooks
from peopletasks.timeutil import utcnow

WEBHOOK_SECRET_PURPOSE = "webhook-secret"
#: Checks a target URL may be called (scheme, host, address policy) and gives it as it is
#: to be stored (normalised); raises ValidationFailed naming the field.
TargetCheck = Callable[[str, str], Awaitable[str]]


def webhook_secret(domain: Domain, public_id: str, key_id: str | None) -> bytes | None:
    """The signing secret of a webhook: derived from the service key, never stored."""
    if key_id is None:
        return None
    return derived_secret(domain.signer, WEBHOOK_SECRET_PURPOSE, public_id.encode(), key_id)


def format_webhook_secret(secret: bytes) -> str:
    """As Standard Webhooks spells secrets: `whsec_` + base64."""
    return "whsec_" + base64.b64encode(secret).decode()


async def register_webhook(
    domain: Domain, principal: Principal, data: WebhookCreate, check_target: TargetCheck
) -> dict[str, Any]:
    """Register; the answer carries the webhook's signing `secret`, shown this once."""
    if not principal.is_user:
        raise Forbidden("registering a webhook needs an API token")
    if data.prefect is not None:
        api_url = data.prefect.apiUrl.strip().rstrip("/")
        api_url = (await check_target(api_url, "prefect.apiUrl")).rstrip("/")
        url = f"{api_url}/flow_runs/{data.prefect.flowRunId}/resume"
        kind = "prefect"
        target: dict[str, Any] | None = {
            "flowRunId": str(data.prefect.flowRunId),
            "apiUrl": api_url,
            "apiKey": data.prefect.apiKey,
        }
    else:
        assert data.url is not None
        url = await check_target(data.url.strip(), "url")
        kind, target = "http", None
    public_id = secrets.token_hex(12)
    key_id = domain.signer.key_id(0)
    async with domain.db.write() as conn:
        # Locked: a decision (or the deadline) changing the task meanwhile either sees
        # this webhook or is seen by it, never neither.
        task = await stored_tasks.task_by_id(conn, data.taskId, principal.org_id, for_update=True)
        if task is None or not may_read(principal, task):
            raise ValidationFailed.field("taskId", f"no task {data.taskId!r}")
        row = (
            await conn.execute(
                webhooks.insert()
                .values(
                    public_id=public_id,
                    org_id=principal.org_id,
                    task_seq=task.seq,
                    url=url,
                    kind=kind,
                    target=target,
                    created_by=principal.email,
                    created_at=utcnow(),
                    key_id=key_id,
                )
                .returning(webhooks)
            )
        ).one()
        if task.status != Status.PENDING:
            # Registered too late to hear the change: it hears the status as it stands,
            # once (Appmixer's components register just after creating; a task created
            # past its deadline is due by then).
            await record_current_status(domain, conn, task, row)
    view = webhook_view(row, data.taskId, task.status)
    secret = webhook_secret(domain, public_id, key_id)
    assert secret is not None
    view["secret"] = format_webhook_secret(secret)
    return view


def _webhook_query(principal: Principal, webhook_id: str) -> Any:
    return (
        select(webhooks, tasks.c.id.label("task_id"), tasks.c.status.label("task_status"))
        .join(tasks, tasks.c.seq == webhooks.c.task_seq)
        .where(
            webhooks.c.public_id == webhook_id,
            webhooks.c.org_id == principal.org_id,
        )
    )


async def get_webhook(domain: Domain, principal: Principal, webhook_id: str) -> dict[str, Any]:
    if not principal.is_user:
        raise Forbidden("reading a webhook needs an API token")
    async with domain.db.read() as conn:
        row = (await conn.execute(_webhook_query(principal, webhook_id))).first()
    if row is None or not may_manage_webhook(principal, row.created_by):
        raise NotFound(f"no webhook {webhook_id!r}")
    return webhook_view(row, row.task_id, row.task_status)


async def delete_webhook(domain: Domain, principal: Principal, webhook_id: str) -> None:
    """Delete a registration, its pending deliveries and their log."""
    if not principal.is_user:
        raise Forbidden("deleting a webhook needs an API token")
    async with domain.db.write() as conn:
        created_by = await conn.scalar(
            select(webhooks.c.created_by).where(
                webhooks.c.public_id == webhook_id, webhooks.c.org_id == principal.org_id
            )
        )
        result = None
        if may_manage_webhook(principal, created_by):
            result = await conn.execute(
                webhooks.delete().where(
                    webhooks.c.public_id == webhook_id, webhooks.c.org_id == principal.org_id
                )
            )
    if result is None or result.rowcount == 0:
        raise NotFound(f"no webhook {webhook_id!r}")
