"""How a task, a note and a webhook look to the outside (API responses, webhook bodies,
pages). A task's view is its fields (`fields.FIELDS`), each shown as it declares."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from peopletasks.domain.fields import BY_NAME, FIELDS
from peopletasks.domain.status import DECISIONS
from peopletasks.timeutil import format_datetime


def task_view(row: Row[Any], names: Iterable[str] | None = None) -> dict[str, Any]:
    """The task as the API returns it (never with secrets); `names` limits the keys."""
    if names is None:
        return {f.name: f.shown(row) for f in FIELDS}
    return {name: BY_NAME[name].shown(row) for name in names}


def status_entry(
    from_status: str | None, to_status: str, by: str | None, at: datetime
) -> dict[str, Any]:
    """One `statusHistory` entry as stored on the task row and shown."""
    return {"from": from_status, "to": to_status, "changedAt": format_datetime(at), "changedBy": by}


def note_view(row: Row[Any]) -> dict[str, Any]:
    m = row._mapping
    return {
        "id": m["public_id"],
        "text": m["note"],
        "createdBy": m["author"],
        "createdAt": format_datetime(m["created_at"]),
    }


def history_view(row: Row[Any]) -> list[dict[str, Any]]:
    """Everything that happened to a task, oldest first, as `GET /tasks/{id}/history`
    shows it: each status change (`event` created, approved, rejected or due; a
    decision with its comment), each edit (`event` edited, with its `changes`) and, on
    a task with several approvers, each response (`event` responded, by whom, with
    its `option` and comment) and each reassignment (`event` reassigned, with
    `approver` from whom to whom)."""
    comment = row.comment
    entries = [
        {
            "event": "created" if entry["from"] is None else entry["to"],
            "from": entry["from"],
            "to": entry["to"],
            "changedBy": entry["changedBy"],
            "changedAt": entry["changedAt"],
            "comment": comment if entry["to"] in DECISIONS else None,
        }
        for entry in row.status_history or ()
    ]
    entries += [
        {
            "event": "edited",
            "from": None,
            "to": None,
            "changedBy": entry["changedBy"],
            "changedAt": entry["changedAt"],
            "comment": None,
            "changes": entry["changes"],
        }
        for entry in row.change_log or ()
    ]
    entries += [
        {
            "event": "responded",
            "from": None,
            "to": None,
            "changedBy": state["email"],
            "changedAt": state["respondedAt"],
            "comment": state["comment"],
            "option": state["option"],
        }
        for state in row.approvers or ()
        if state["respondedAt"] is not None
    ]
    entries += [
        {
            "event": "reassigned",
            "from": None,
            "to": None,
            "changedBy": entry["reassignedBy"],
            "changedAt": entry["reassignedAt"],
            "comment": entry["comment"],
            "approver": {"from": entry["from"], "to": entry["to"]},
        }
        for entry in row.reassignments or ()
    ]
    # Within one millisecond: the creation, an edit, the responses (the one that decided
    # last: nothing is answered after it), then the status it moved.
    decider = row.decided_by if row.status in DECISIONS else None

    def rank(entry: dict[str, Any]) -> tuple[str, int]:
        if entry["event"] == "responded":
            return str(entry["changedAt"]), 3 if entry["changedBy"] == decider else 2
        return str(entry["changedAt"]), {"created": 0, "edited": 1}.get(entry["event"], 4)

    return sorted(entries, key=rank)


def webhook_view(row: Row[Any], task_id: str, task_status: str) -> dict[str, Any]:
    m = row._mapping
    view: dict[str, Any] = {
        "id": m["public_id"],
        # Appmixer's name of the id: its components read `webhookId` (and delete by it).
        "webhookId": m["public_id"],
        "url": m["url"],
        "taskId": task_id,
        "status": task_status,
        "kind": m["kind"],
        "createdAt": format_datetime(m["created_at"]),
        "disabledAt": format_datetime(m["disabled_at"]),
        "disabledReason": m["disabled_reason"],
    }
    if m["kind"] == "prefect" and m["target"]:
        view["prefect"] = {
            "flowRunId": m["target"]["flowRunId"],
            "apiUrl": m["target"]["apiUrl"],
        }
    return view
