"""Webhook registrations: one per (task, URL) request; fired on every status change."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from peopletasks.domain.context import Domain
from peopletasks.domain.inputs import WebhookCreate
from peopletasks.domain.principals import Principal
from peopletasks.domain.views import webhook_view
from peopletasks.errors import Forbidden, NotFound, ValidationFailed
from peopletasks.store.tables import tasks, webhooks
from peopletasks.timeutil import utcnow


def check_webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host; raises ValidationFailed naming `url`."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationFailed.field("url", "is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed.field("url", "must be an absolute http:// or https:// URL")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationFailed.field("url", "must not contain spaces or control characters")
    return url.strip()


async def register_webhook(
    domain: Domain, principal: Principal, data: WebhookCreate
) -> dict[str, Any]:
    if not principal.is_user:
        raise Forbidden("registering a webhook needs an API token")
    url = check_webhook_url(data.url)
    async with domain.db.write() as conn:
        task = (
            await conn.execute(
                select(tasks.c.seq, tasks.c.status).where(
                    tasks.c.id == data.taskId, tasks.c.org_id == principal.org_id
                )
            )
        ).first()
        if task is None:
            raise ValidationFailed.field("taskId", f"no task {data.taskId!r}")
        row = (
            await conn.execute(
                webhooks.insert()
                .values(
                    public_id=secrets.token_hex(12),
                    org_id=principal.org_id,
                    task_seq=task.seq,
                    url=url,
                    kind="http",
                    created_by=principal.email,
                    created_at=utcnow(),
                )
                .returning(webhooks)
            )
        ).one()
    return webhook_view(row, data.taskId, task.status)


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
    if row is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    return webhook_view(row, row.task_id, row.task_status)


async def delete_webhook(domain: Domain, principal: Principal, webhook_id: str) -> None:
    if not principal.is_user:
        raise Forbidden("deleting a webhook needs an API token")
    async with domain.db.write() as conn:
        result = await conn.execute(
            webhooks.delete().where(
                webhooks.c.public_id == webhook_id, webhooks.c.org_id == principal.org_id
            )
        )
    if result.rowcount == 0:
        raise NotFound(f"no webhook {webhook_id!r}")
