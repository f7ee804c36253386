"""How a task, a note and a webhook look to the outside (API responses, webhook bodies,
pages). A task's view is its fields (`fields.FIELDS`), each shown as it declares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row

from peopletasks.domain.fields import BY_NAME, FIELDS
from peopletasks.domain.status import DECISIONS
from peopletasks.timeutil import format_datetime, parse_datetime


def task_view(row: Row[Any], names: Iterable[str] | None = None) -> dict[str, Any]:
    """The task as the API returns it (never with secrets); `names` limits the keys."""
    m = cast(Mapping[str, Any], row._mapping)
    if names is None:
        return {f.name: f.shown(m) for f in FIELDS}
    return {name: BY_NAME[name].shown(m) for name in names}


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
    """A task's history as `GET /tasks/{id}/history` shows it, oldest first: its status
    changes (the row's `statusHistory`, each entry with its comment: the decision's,
    else none) and its reassignments (`reassignments`: the status stays, `approver`
    says from whom to whom)."""
    comment = row.comment
    entries = [
        {
            "type": "status",
            "from": entry["from"],
            "to": entry["to"],
            "changedBy": entry["changedBy"],
            "changedAt": entry["changedAt"],
            "comment": comment if entry["to"] in DECISIONS else None,
            "approver": None,
        }
        for entry in row.status_history or ()
    ]
    if not row.reassignments:
        return entries
    for entry in row.reassignments:
        entries.append(
            {
                "type": "reassigned",
                "from": "pending",
                "to": "pending",
                "changedBy": entry["reassignedBy"],
                "changedAt": entry["reassignedAt"],
                "comment": entry["comment"],
                "approver": {"from": entry["from"], "to": entry["to"]},
            }
        )
    # Stable: a reassignment stamped in the same millisecond as a change stays after it.
    return sorted(entries, key=lambda e: parse_datetime(e["changedAt"]))


def webhook_view(row: Row[Any], task_id: str, task_status: str) -> dict[str, Any]:
    m = row._mapping
    view: dict[str, Any] = {
        "id": m["public_id"],
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
