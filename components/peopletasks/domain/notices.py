"""The mail the service sends about a task: which message, to whom, and when.

Every message is queued in the mail outbox (`store.mail`) in the transaction of the
change that causes it, so the change and its mail commit together or not at all; a
dispatcher in each replica sends it afterwards (`domain.messages`,
`peopletasks.mail.dispatcher`). A message row holds its kind, recipient and what the
mail says besides the task (who passed it on, why it escalated), never a body or a
link: it is rendered when it is sent, with the task as it then is and fresh links.

Where the service has no SMTP (`Domain.mail_enabled` false) nothing is queued.

| kind | to | when |
|---|---|---|
| approval | each approver asked | created, with `notify: ["email"]`; each next turn |
| copy | the requester | created, with `notify: ["email"]` (unless also the approver) |
| reminder | each approver asked, not yet responded | each reminder (`reminders`) |
| reassigned | the new approver | reassigned (by a person or the escalation) |
| escalation | the escalation contact | the escalation notifies, approves or rejects (`to` given) |
| escalated | the requester | the escalation notified someone or reassigned, with `notify` |
| outcome | the requester | approved, rejected or due, with `notify` |
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Row

from peopletasks.domain.approvers import asked, emails_of
from peopletasks.domain.context import Domain
from peopletasks.store import mail as outbox
from peopletasks.store.database import Conn, after_commit
from peopletasks.timeutil import utcnow

APPROVAL, COPY, REMINDER, REASSIGNED = "approval", "copy", "reminder", "reassigned"
ESCALATION, ESCALATED, OUTCOME = "escalation", "escalated", "outcome"
KINDS = (APPROVAL, COPY, REMINDER, REASSIGNED, ESCALATION, ESCALATED, OUTCOME)
#: Messages to the approver, with decision links: sent only while the task can take a
#: decision and the recipient is still its approver (else cancelled when their turn comes).
TO_APPROVER = frozenset({APPROVAL, REMINDER, REASSIGNED})


def wants_mail(row: Row[Any]) -> bool:
    """Whether the task asked the service to mail its people (`notify`)."""
    return "email" in (row.notify or ())


def message(
    row: Row[Any],
    kind: str,
    to: str,
    *,
    sequence: int = 0,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message about task `row` for the outbox."""
    return {
        "public_id": secrets.token_hex(12),
        "org_id": row.org_id,
        "task_seq": row.seq,
        "kind": kind,
        "recipient": to,
        "sequence": sequence,
        "context": context,
        "created_at": utcnow(),
    }


async def queue(domain: Domain, conn: Conn, messages: list[dict[str, Any]]) -> None:
    """Queue `messages` in this transaction; the dispatcher wakes when it commits."""
    if not domain.mail_enabled or not messages:
        return
    await outbox.insert_messages(conn, messages)
    after_commit(domain.mail_ready.set)


async def on_create(domain: Domain, conn: Conn, row: Row[Any]) -> None:
    if not wants_mail(row):
        return
    context = {"delegatedFrom": row.delegated_from} if row.delegated_from else None
    messages = [message(row, APPROVAL, to, context=context) for to in asked(row)]
    if row.requester not in emails_of(row):
        messages.append(message(row, COPY, row.requester))
    await queue(domain, conn, messages)


async def on_response(domain: Domain, conn: Conn, before: Row[Any], after: Row[Any]) -> None:
    """A response that did not decide the task: in a sequential task, the next approver's
    turn (the request, with their links)."""
    if not wants_mail(after):
        return
    turn = [to for to in asked(after) if to not in asked(before)]
    await queue(domain, conn, [message(after, APPROVAL, to) for to in turn])


async def on_status_change(domain: Domain, conn: Conn, row: Row[Any]) -> None:
    """The requester hears the outcome (the sequence tells a late decision after `due`
    from the `due` itself)."""
    if wants_mail(row):
        sequence = len(row.status_history or ())
        outcome = message(
            row, OUTCOME, row.requester, sequence=sequence, context={"status": row.status}
        )
        await queue(domain, conn, [outcome])


async def on_reassigned(domain: Domain, conn: Conn, row: Row[Any], entry: dict[str, Any]) -> None:
    """The new approver gets the request with their own links (whatever `notify` says:
    nobody else tells them, and the old approver's links no longer decide)."""
    sequence = len(row.reassignments or ())
    reassigned = message(row, REASSIGNED, entry["to"], sequence=sequence, context=entry)
    await queue(domain, conn, [reassigned])


async def on_escalated(domain: Domain, conn: Conn, row: Row[Any], context: dict[str, Any]) -> None:
    """The escalation contact is told (a reassignment tells them as the new approver);
    the requester too when it notified someone or reassigned (a decision tells them
    through `on_status_change`)."""
    messages = []
    if context.get("to") and context["action"] != "reassign":
        messages.append(message(row, ESCALATION, context["to"], context=context))
    if context["action"] in ("notify", "reassign") and wants_mail(row):
        messages.append(message(row, ESCALATED, row.requester, context=context))
    await queue(domain, conn, messages)
