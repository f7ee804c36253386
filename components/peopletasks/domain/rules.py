"""The rules of a task, as plain functions of the task and who asks: who may read it,
who may decide it, and whether it can take a decision now.

Everything that reads or changes a task asks here (the API, the pages, the deadline
scheduler); nothing restates these rules.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from peopletasks.domain.principals import Principal, PrincipalKind
from peopletasks.domain.status import Status
from peopletasks.errors import Forbidden


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
    """A token of the task's organization, or the task's approver or requester secret."""
    if task.org_id != principal.org_id:
        return False
    if principal.kind is PrincipalKind.APPROVER_SECRET:
        return bool(task.approver == principal.email)
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        return bool(task.requester == principal.email)
    return True


def check_decider(principal: Principal, task: Any) -> None:
    """Only the task's approver decides (by secret or token); raises Forbidden."""
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        raise Forbidden("a requester secret may read a task, not decide it")
    if task.approver != principal.email:
        raise Forbidden(f"only the approver ({task.approver}) may decide this task")


def check_reassigner(principal: Principal, task: Any) -> None:
    """The approver (by secret or token) passes a task on, or a user who may edit it:
    until tokens carry roles (issue 14: the creator or an admin) every token of the
    organization may, as every token may edit. Raises Forbidden."""
    if principal.kind is PrincipalKind.REQUESTER_SECRET:
        raise Forbidden("a requester secret may read a task, not reassign it")
    if not principal.is_user and task.approver != principal.email:
        raise Forbidden(f"only the approver ({task.approver}) may reassign this task")


def check_delegator(principal: Principal, from_email: str) -> None:
    """A standing delegation of `from_email`'s tasks is theirs to set, with their own API
    token (an admin's, once tokens carry roles: issue 14). Raises Forbidden."""
    if not principal.is_user:
        raise Forbidden("a delegation needs an API token; a task secret may not set one")
    if principal.email != from_email:
        raise Forbidden(f"only {from_email} may delegate their own tasks")
