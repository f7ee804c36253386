"""How a task and a webhook look to the outside (API responses, webhook bodies)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Row

from peopletasks.store.tables import tasks
from peopletasks.timeutil import format_datetime

#: The public name of each task property, and the column that holds it.
TASK_PROPERTIES: dict[str, Column[Any]] = {
    "id": tasks.c.id,
    "title": tasks.c.title,
    "description": tasks.c.description,
    "requester": tasks.c.requester,
    "approver": tasks.c.approver,
    "status": tasks.c.status,
    "decisionBy": tasks.c.decision_by,
    "public": tasks.c.public,
    "allowLateDecision": tasks.c.allow_late_decision,
    "createdBy": tasks.c.created_by,
    "createdAt": tasks.c.created_at,
    "updatedAt": tasks.c.updated_at,
    "decidedBy": tasks.c.decided_by,
    "decidedAt": tasks.c.decided_at,
    "comment": tasks.c.comment,
    "requestKey": tasks.c.request_key,
}


def task_view(row: Row[Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The task as the API returns it (never with secrets); `fields` limits the keys."""
    m = row._mapping
    view: dict[str, Any] = {
        "id": m["id"],
        "title": m["title"],
        "description": m["description"],
        "requester": m["requester"],
        "approver": m["approver"],
        "status": m["status"],
        "decisionBy": format_datetime(m["decision_by"]),
        "public": m["public"],
        "allowLateDecision": m["allow_late_decision"],
        "createdBy": m["created_by"],
        "createdAt": format_datetime(m["created_at"]),
        "updatedAt": format_datetime(m["updated_at"]),
        "decidedBy": m["decided_by"],
        "decidedAt": format_datetime(m["decided_at"]),
        "comment": m["comment"],
        "requestKey": m["request_key"],
    }
    if fields is not None:
        return {key: view[key] for key in fields}
    return view


def history_view(row: Row[Any]) -> dict[str, Any]:
    m = row._mapping
    return {
        "from": m["from_status"],
        "to": m["to_status"],
        "changedBy": m["changed_by"],
        "changedAt": format_datetime(m["changed_at"]),
        "comment": m["comment"],
    }


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
