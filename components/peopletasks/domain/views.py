"""How a task and a webhook look to the outside (API responses, webhook bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Row

from peopletasks.domain.inputs import Status
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
    "priority": tasks.c.priority,
    "order": tasks.c.position,
    "orderGroup": tasks.c.order_group,
    "parentId": tasks.c.parent_id,
    "active": tasks.c.active,
    # Completion mirrors the decision (Plannr's completed_at / completed_by).
    "completedAt": tasks.c.decided_at,
    "completedBy": tasks.c.decided_by,
    "notesCount": tasks.c.notes_count,
}

#: Every key of a task view, in order (what `projection` chooses from): the
#: properties above and the structured ones (lists and objects).
TASK_FIELDS: tuple[str, ...] = (
    *TASK_PROPERTIES,
    "assignees",
    "connectedTo",
    "customFields",
    "mappings",
    "statusHistory",
)


def task_view(row: Row[Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The task as the API returns it (never with secrets); `fields` limits the keys."""
    m = row._mapping
    decided_at = format_datetime(m["decided_at"])
    created_at = format_datetime(m["created_at"])
    # Most tasks were last changed when created or decided: that text is made already.
    updated = m["updated_at"]
    updated_at = (
        decided_at
        if updated == m["decided_at"]
        else created_at
        if updated == m["created_at"]
        else format_datetime(updated)
    )
    custom_fields = m["custom_fields"]
    connected_id = m["connected_id"]
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
        "createdAt": created_at,
        "updatedAt": updated_at,
        "decidedBy": m["decided_by"],
        "decidedAt": decided_at,
        "comment": m["comment"],
        "requestKey": m["request_key"],
        "priority": m["priority"],
        "order": m["position"],
        "orderGroup": m["order_group"],
        "parentId": m["parent_id"],
        "active": m["active"],
        "completedAt": decided_at,
        "completedBy": m["decided_by"],
        "notesCount": m["notes_count"],
        "assignees": m["assignees"] or [],
        "connectedTo": (
            None if connected_id is None else {"type": m["connected_type"], "id": connected_id}
        ),
        "customFields": custom_fields_view(custom_fields) if custom_fields else [],
        "mappings": m["mappings"] or [],
        "statusHistory": m["status_history"] or [],
    }
    if fields is not None:
        return {key: view[key] for key in fields}
    return view


def custom_fields_view(stored: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Stored by key (so filters reach a value by path); shown as a list, in order."""
    if not stored:
        return []
    return [{"key": key, **field} for key, field in stored.items()]


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


#: The statuses a decision sets: their history entry carries the decision's comment.
_DECIDED = frozenset({Status.APPROVED, Status.REJECTED})


def history_view(row: Row[Any]) -> list[dict[str, Any]]:
    """A task's status changes as `GET /tasks/{id}/history` shows them (the row's
    `statusHistory`, each entry with its comment: the decision's, else none)."""
    comment = row.comment
    return [
        {
            "from": entry["from"],
            "to": entry["to"],
            "changedBy": entry["changedBy"],
            "changedAt": entry["changedAt"],
            "comment": comment if entry["to"] in _DECIDED else None,
        }
        for entry in row.status_history or ()
    ]


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
