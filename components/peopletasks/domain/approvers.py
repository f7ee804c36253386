"""Several approvers, and how their responses decide a task.

A task's approvers respond one each, with one of the task's options (`options`);
the task's own status moves only when its rule is met:

| rule | approved when | rejected when |
|---|---|---|
| `any` | the first response is an approval | the first response is a rejection |
| `all` | every approver approved | one approver rejected |
| `quorum` (N) | N approved | N can no longer be reached |
| `sequential` | the last in line approved (each asked once the one before did) | one rejected |

A task with one approver keeps that approver's state in the task's own columns
(`approver`, `decided_by`, `comment`, ...): nothing more is written for it. A task
with several keeps each approver's state, in order, on its row (`approvers`).
Everything here is a plain function of those states.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from peopletasks.domain.status import DECISIONS, Status
from peopletasks.timeutil import format_datetime

#: At most this many approvers on a task.
MAX_APPROVERS = 20


class Rule(StrEnum):
    ANY = "any"
    ALL = "all"
    QUORUM = "quorum"
    SEQUENTIAL = "sequential"


class Standing(StrEnum):
    """Where one approver stands."""

    WAITING = "waiting"  #: a sequential task has not asked them yet
    PENDING = "pending"  #: asked, not responded
    APPROVED = "approved"
    REJECTED = "rejected"


def initial_states(emails: Sequence[str], rule: Rule) -> list[dict[str, Any]]:
    """The approvers of a new task with several: everyone asked, or (sequential) the first."""
    return [
        _state(email, Standing.WAITING if rule is Rule.SEQUENTIAL and i else Standing.PENDING)
        for i, email in enumerate(emails)
    ]


def _state(email: str, standing: Standing) -> dict[str, Any]:
    return {
        "email": email,
        "status": standing.value,
        "respondedAt": None,
        "comment": None,
        "option": None,
        "data": None,
    }


def states_of(task: Any) -> list[dict[str, Any]]:
    """Each approver's state: the row's list, or that of its one approver (from the task's
    own decision)."""
    if task.approvers:
        return list(task.approvers)
    state = _state(task.approver, Standing.PENDING)
    if task.status in DECISIONS and task.decided_by == task.approver:
        state.update(
            status=task.status,
            respondedAt=format_datetime(task.decided_at),
            comment=task.comment,
            option=task.option,
            data=task.decision_data,
        )
    return [state]


def emails_of(task: Any) -> list[str]:
    """Its approvers' addresses, in order (from a task row, or any row with its
    `approvers` and `approver`)."""
    return [state["email"] for state in task.approvers] if task.approvers else [task.approver]


def asked(task: Any) -> list[str]:
    """The approvers asked and not yet responded (whom mail with links goes to)."""
    return [s["email"] for s in states_of(task) if s["status"] == Standing.PENDING]


def whose_turn(states: Sequence[dict[str, Any]]) -> str | None:
    """The approver a sequential task waits for (None once nobody is asked)."""
    return next((s["email"] for s in states if s["status"] == Standing.PENDING), None)


def responded(
    states: Sequence[dict[str, Any]],
    email: str,
    outcome: Status,
    *,
    at: str | None,
    comment: str | None,
    option: str,
    data: Any,
    rule: Rule,
) -> list[dict[str, Any]]:
    """The states after `email` responded with `option` (of `outcome`); in a sequential
    task an approval asks the next in line."""
    after = [dict(s) for s in states]
    index = next(i for i, s in enumerate(after) if s["email"] == email)
    after[index].update(
        status=outcome.value, respondedAt=at, comment=comment, option=option, data=data
    )
    if rule is Rule.SEQUENTIAL and outcome is Status.APPROVED and index + 1 < len(after):
        after[index + 1]["status"] = Standing.PENDING.value
    return after


def verdict(states: Sequence[dict[str, Any]], rule: Rule, quorum: int | None) -> Status | None:
    """The task's decision once its rule is met (None: not yet)."""
    approvals = sum(s["status"] == Standing.APPROVED for s in states)
    rejections = sum(s["status"] == Standing.REJECTED for s in states)
    if rule is Rule.ANY:  # the first response decides: there is only ever one
        return Status.APPROVED if approvals else Status.REJECTED if rejections else None
    if rule is Rule.QUORUM:
        needed = quorum or len(states)
        if approvals >= needed:
            return Status.APPROVED
        if approvals + (len(states) - approvals - rejections) < needed:
            return Status.REJECTED
        return None
    # all, sequential: every one approves; one rejection rejects.
    if rejections:
        return Status.REJECTED
    if approvals == len(states):
        return Status.APPROVED
    return None
