"""The rules of a task, as plain functions of the task and who asks: who may read it,
who may decide it, and whether it can take a decision now.

Everything that reads or changes a task asks here (the API, the pages, the deadline
scheduler); nothing restates these rules.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from peopletasks.domain.approvers import Standing as ApproverStanding
from peopletasks.domain.approvers import emails_of, states_of, whose_turn
from peopletasks.domain.principals import Principal, PrincipalKind
from peopletasks.domain.status import DECISIONS, Status
from peopletasks.domain.views import task_view
from peopletasks.errors import Conflict, Forbidden, ValidationFailed


class Standing(Enum):
    """Whether a task can take a decision now."""

    OPEN = "open"  #: yes (before its deadline, or late where the task allows it)
    OVERDUE = "overdue"  #: no: pending past its deadline, it turns due
    CLOSED = "closed"  #: no: decided, or due without late decisions


def standing(task: Any, now: datetime) -> Standing:
    """`task`: a task row (status, decision_by, allow_late_decision)."""
    if task.status == Status.PENDING:
        if task.decision_by is None or task.decision_by > now or task.allow_late_decision:
            return Standing.OPEN
        return Standing.OVERDUE
    if task.status == Status.DUE and task.allow_late_decision:
        return Standing.OPEN
    return Standing.CLOSED


def may_read(principal: Principal, task: Any) -> bool:
    """A token of its creator, approver, requester or an admin of the organization; the
    task's own approver or requester secret; a dashboard token of its approver or
    requester; (where on) a person-wide secret of its approver or requester."""
    if task.org_id != principal.org_id:
        return False
    match principal.kind:
        case PrincipalKind.USER:
            return (
                principal.admin
                or principal.email in (task.created_by, task.requester)
                or principal.email in emails_of(task)
            )
        case PrincipalKind.APPROVER_SECRET:
            return principal.task_id in (None, task.id) and principal.email in emails_of(task)
        case PrincipalKind.REQUESTER_SECRET:
            return principal.task_id in (None, task.id) and task.requester == principal.email
        case PrincipalKind.PERSON:
            return principal.email == task.requester or principal.email in emails_of(task)
    return False


def check_editor(principal: Principal, task: Any) -> None:
    """Only the task's creator, or an admin token, edits it; raises Forbidden."""
    if not principal.is_user:
        raise Forbidden("editing a task needs an API token; a task secret may not do it")
    if not principal.admin and task.created_by != principal.email:
        raise Forbidden("only the task's creator (or an admin token) may edit it")


def check_responder(principal: Principal, task: Any) -> dict[str, Any]:
    """The state of the approver `principal` speaks for: only an approver (by secret,
    token or dashboard) responds, never the requester unless the task allows
    self-approval. Raises Forbidden."""
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        raise Forbidden("a requester secret may read a task, not decide it")
    states = states_of(task)
    mine = next((s for s in states if s["email"] == principal.email), None)
    if mine is None:
        approvers = ", ".join(s["email"] for s in states)
        raise Forbidden(f"only the approver ({approvers}) may decide this task")
    if principal.email == task.requester and not task.allow_self_approval:
        raise Forbidden("the requester may not approve their own request")
    return mine


def check_turn(task: Any, state: dict[str, Any]) -> None:
    """An approver responds once, and in a sequential task in turn; raises Conflict."""
    if state["status"] in DECISIONS:
        raise Conflict(
            f"{state['email']} has responded already ({state['status']})",
            task=task_view(task),
            code="already_responded",
        )
    if state["status"] == ApproverStanding.WAITING:
        raise Conflict(
            f"it is {whose_turn(states_of(task))}'s turn; {state['email']} is asked after them",
            task=task_view(task),
            code="not_your_turn",
        )


def terms_are_final(task: Any) -> bool:
    """Once a task is no longer pending, what the approver decided on stays as it was."""
    return bool(task.status != Status.PENDING)


def may_manage_webhook(principal: Principal, created_by: str | None) -> bool:
    """A webhook is its registrant's (and an admin token's) to read, delete and re-send."""
    return principal.is_user and (principal.admin or created_by == principal.email)


def check_reassigner(principal: Principal, task: Any) -> str:
    """Whose part of `task` the caller passes on: an approver's own (by their secret,
    token or dashboard), not yet given; or, by the task's creator or an admin token, the
    approver of a task with one. Raises Forbidden, or Conflict for a response given."""
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        raise Forbidden("a requester secret may read a task, not reassign it")
    states = states_of(task)
    mine = next((s for s in states if s["email"] == principal.email), None)
    if mine is not None:
        if mine["status"] in DECISIONS and task.status == Status.PENDING:
            raise Conflict(
                f"{principal.email} has responded already ({mine['status']})",
                task=task_view(task),
                code="already_responded",
            )
        return principal.email
    approvers = ", ".join(s["email"] for s in states)
    if not principal.is_user or not (principal.admin or task.created_by == principal.email):
        raise Forbidden(
            f"only the approver ({approvers}), the task's creator or an admin token may "
            "reassign this task"
        )
    if len(states) > 1:
        raise ValidationFailed.field(
            "to", f"this task has several approvers ({approvers}): each passes on their own part"
        )
    return str(task.approver)


def check_delegator(principal: Principal, from_email: str) -> None:
    """A standing delegation of `from_email`'s tasks is theirs to set, with their own API
    token, or an admin token's. Raises Forbidden."""
    if not principal.is_user:
        raise Forbidden("a delegation needs an API token; a task secret may not set one")
    if principal.email != from_email and not principal.admin:
        raise Forbidden(f"only {from_email} (or an admin token) may delegate their tasks")
