"""The life of a task."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A task starts pending and ends in one final state."""

    PENDING = "pending"  #: waiting for the approver
    APPROVED = "approved"  #: the approver said yes
    REJECTED = "rejected"  #: the approver said no
    DUE = "due"  #: the deadline passed without a decision


FINAL_STATUSES = frozenset({Status.APPROVED, Status.REJECTED, Status.DUE})
#: What a decision sets.
DECISIONS = frozenset({Status.APPROVED, Status.REJECTED})
