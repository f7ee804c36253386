"""Custom responses: the buttons an approver chooses from, each with its outcome.

A task without `options` has Appmixer's two: approve and reject. `PUT /approve` and
`/reject` choose the first option of that outcome.
"""

from __future__ import annotations

from typing import Any

from peopletasks.domain.status import Status

DEFAULT_OPTIONS: tuple[dict[str, str], ...] = (
    {"key": "approve", "label": "Approve", "outcome": Status.APPROVED.value},
    {"key": "reject", "label": "Reject", "outcome": Status.REJECTED.value},
)
MIN_OPTIONS, MAX_OPTIONS = 2, 10


def options_of(task: Any) -> list[dict[str, str]]:
    return list(task.options or DEFAULT_OPTIONS)


def option_named(task: Any, key: str) -> dict[str, str] | None:
    return next((o for o in options_of(task) if o["key"] == key), None)


def first_of(task: Any, outcome: Status) -> dict[str, str]:
    """The option `/approve` or `/reject` chooses (every task has one of each outcome)."""
    return next(o for o in options_of(task) if o["outcome"] == outcome.value)
