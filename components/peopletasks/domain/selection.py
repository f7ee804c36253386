"""Which tasks a list asks for: the seed's `filter`, `sort`, `projection` and `pattern`.

- filter: `prop:value`, several separated by commas or given as repeated
  parameters. Filters on different properties must all match; several values
  for one property match any of them (`status:approved,status:rejected`).
  Date properties also take `<`, `<=`, `>`, `>=` before the value, or `null`.
- sort: `prop:1` (ascending) or `prop:-1` (descending), several separated by
  commas. Ties always fall back to creation order, so paging is stable.
  Empty values sort as the largest.
- projection: `-prop,...` leaves properties out; `prop,...` keeps only those.
  `id` is always kept.
- pattern: a case-insensitive substring of the title (plain text, not a regex).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Boolean, ColumnElement, or_

from peopletasks.domain.inputs import Status, normalize_email
from peopletasks.domain.views import TASK_PROPERTIES
from peopletasks.errors import ValidationFailed
from peopletasks.store.tables import tasks
from peopletasks.store.types import UTCDateTime
from peopletasks.timeutil import parse_datetime

_EMAIL_PROPERTIES = {"requester", "approver", "createdBy", "decidedBy"}
_OPERATORS = (">=", "<=", ">", "<")
MAX_PARTS = 50


def _split(values: list[str], parameter: str) -> list[str]:
    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if len(parts) > MAX_PARTS:
        raise ValidationFailed.field(parameter, f"at most {MAX_PARTS} entries")
    for part in parts:
        if "\x00" in part:
            raise ValidationFailed.field(parameter, "must not contain NUL characters")
    return parts


def _property(name: str, parameter: str) -> Any:
    column = TASK_PROPERTIES.get(name)
    if column is None:
        known = ", ".join(TASK_PROPERTIES)
        raise ValidationFailed.field(
            parameter, f"unknown property {name!r}; known properties: {known}"
        )
    return column


def _condition(name: str, column: Any, raw: str, parameter: str) -> ColumnElement[bool]:
    def bad(message: str) -> ValidationFailed:
        return ValidationFailed.field(parameter, f"{name}: {message}")

    if isinstance(column.type, UTCDateTime):
        if raw.lower() == "null":
            return column.is_(None)  # type: ignore[no-any-return]
        operator = next((op for op in _OPERATORS if raw.startswith(op)), "")
        try:
            when = parse_datetime(raw[len(operator) :])
        except ValueError as exc:
            raise bad(str(exc)) from None
        return {  # type: ignore[no-any-return]
            ">=": column >= when,
            "<=": column <= when,
            ">": column > when,
            "<": column < when,
            "": column == when,
        }[operator]
    if isinstance(column.type, Boolean):
        if raw.lower() not in {"true", "false"}:
            raise bad("expected true or false")
        return column.is_(raw.lower() == "true")  # type: ignore[no-any-return]
    if name == "status" and raw not in Status.__members__.values():
        raise bad(f"expected one of {', '.join(s.value for s in Status)}")
    if name in _EMAIL_PROPERTIES:
        raw = raw.strip().lower()
    return column == raw  # type: ignore[no-any-return]


def parse_filters(values: list[str]) -> list[ColumnElement[bool]]:
    by_property: dict[str, list[ColumnElement[bool]]] = defaultdict(list)
    for part in _split(values, "filter"):
        name, sep, raw = part.partition(":")
        if not sep:
            raise ValidationFailed.field("filter", f"{part!r}: expected property:value")
        name = name.strip()
        column = _property(name, "filter")
        by_property[name].append(_condition(name, column, raw.strip(), "filter"))
    return [
        conditions[0] if len(conditions) == 1 else or_(*conditions)
        for conditions in by_property.values()
    ]


def parse_sort(value: str | None) -> list[Any]:
    order: list[Any] = []
    for part in _split([value] if value else [], "sort"):
        name, _, direction = part.partition(":")
        column = _property(name.strip(), "sort")
        direction = direction.strip() or "1"
        if direction not in {"1", "-1"}:
            raise ValidationFailed.field("sort", f"{name}: direction must be 1 or -1")
        if direction == "1":
            order.append(column.asc().nulls_last())
        else:
            order.append(column.desc().nulls_first())
    order.append(tasks.c.seq.asc())
    return order


def parse_projection(value: str | None) -> tuple[str, ...] | None:
    parts = _split([value] if value else [], "projection")
    if not parts:
        return None
    excluded = [p[1:].strip() for p in parts if p.startswith("-")]
    included = [p.strip() for p in parts if not p.startswith("-")]
    if excluded and included:
        raise ValidationFailed.field(
            "projection", "either exclude (-prop,...) or include (prop,...), not both"
        )
    for name in excluded or included:
        _property(name, "projection")
    if excluded:
        return tuple(name for name in TASK_PROPERTIES if name not in excluded or name == "id")
    return tuple(name for name in TASK_PROPERTIES if name in included or name == "id")


def title_pattern(pattern: str | None) -> ColumnElement[bool] | None:
    if not pattern:
        return None
    if "\x00" in pattern:
        raise ValidationFailed.field("pattern", "must not contain NUL characters")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return tasks.c.title.ilike(f"%{escaped}%", escape="\\")


def email_value(value: str, field: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as exc:
        raise ValidationFailed.field(field, str(exc)) from None
