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
- Beside the task's own properties, filters and sorts take `connectedTo.type`
  and `connectedTo.id`; filters also take `assignee:<id>` (tasks with that
  assignee) and `customFields.<key>:<value>` (a custom field with that value,
  compared as its type: `2` matches the number 2 and the string "2").
  `priority` sorts by rank (low < medium < high < highest); number properties
  take `<`, `<=`, `>`, `>=` like dates.
- pattern: a case-insensitive substring of the title (plain text, not a regex).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, or_, select

from peopletasks.domain.fields import FIELDS, NAMES, Kind, TaskField
from peopletasks.domain.values import normalize_email, number_value
from peopletasks.errors import ValidationFailed
from peopletasks.store.tables import task_assignees, tasks
from peopletasks.timeutil import parse_datetime

#: What `filter` and `sort` take: each field kept in one column, and the parts of
#: structured ones (`connectedTo.type`), with their column.
_PROPERTIES: dict[str, tuple[TaskField, Any]] = {
    **{
        f.name: (f, tasks.c[f.column]) for f in FIELDS if f.column and f.kind is not Kind.STRUCTURED
    },
    **{
        f"{f.name}.{part}": (f, tasks.c[column]) for f in FIELDS for part, column in f.parts.items()
    },
}
_ASSIGNEE = "assignee"
_CUSTOM_FIELD = "customFields."
_OPERATORS = (">=", "<=", ">", "<")
_CUSTOM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_PARTS = 50


def _split(values: list[str], parameter: str) -> list[str]:
    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if len(parts) > MAX_PARTS:
        raise ValidationFailed.field(parameter, f"at most {MAX_PARTS} entries")
    for part in parts:
        if "\x00" in part:
            raise ValidationFailed.field(parameter, "must not contain NUL characters")
    return parts


def _property(name: str, parameter: str) -> tuple[TaskField, Any]:
    found = _PROPERTIES.get(name)
    if found is None:
        extra = f", {_ASSIGNEE}, {_CUSTOM_FIELD}<key>" if parameter == "filter" else ""
        known = ", ".join(_PROPERTIES) + extra
        raise ValidationFailed.field(
            parameter, f"unknown property {name!r}; known properties: {known}"
        )
    return found


def _compared(column: Any, operator: str, value: Any) -> ColumnElement[bool]:
    return {  # type: ignore[no-any-return]
        ">=": column >= value,
        "<=": column <= value,
        ">": column > value,
        "<": column < value,
        "": column == value,
    }[operator]


def _condition(name: str, raw: str, parameter: str) -> ColumnElement[bool]:
    field, column = _property(name, parameter)

    def bad(message: str) -> ValidationFailed:
        return ValidationFailed.field(parameter, f"{name}: {message}")

    operator = next((op for op in _OPERATORS if raw.startswith(op)), "")
    if field.kind is Kind.DATETIME:
        if raw.lower() == "null":
            return column.is_(None)  # type: ignore[no-any-return]
        try:
            when = parse_datetime(raw[len(operator) :])
        except ValueError as exc:
            raise bad(str(exc)) from None
        return _compared(column, operator, when)
    if field.kind is Kind.NUMBER:
        try:
            number = int(raw[len(operator) :].strip())
        except ValueError:
            raise bad("expected a whole number") from None
        if not -(2**31) <= number < 2**31:  # the columns are 32-bit
            raise bad("out of range")
        return _compared(column, operator, number)
    if field.kind is Kind.BOOLEAN:
        if raw.lower() not in {"true", "false"}:
            raise bad("expected true or false")
        return column.is_(raw.lower() == "true")  # type: ignore[no-any-return]
    if field.kind is Kind.CHOICE and raw not in field.choices:
        raise bad(f"expected one of {', '.join(field.choices)}")
    if field.kind is Kind.EMAIL:
        raw = raw.strip().lower()
    return column == raw  # type: ignore[no-any-return]


def parse_filters(values: list[str]) -> list[ColumnElement[bool]]:
    by_property: dict[str, list[ColumnElement[bool]]] = defaultdict(list)
    for part in _split(values, "filter"):
        name, sep, raw = part.partition(":")
        if not sep:
            raise ValidationFailed.field("filter", f"{part!r}: expected property:value")
        name, raw = name.strip(), raw.strip()
        if name == _ASSIGNEE:
            condition = _assignee(raw)
        elif name.startswith(_CUSTOM_FIELD):
            condition = _custom_field(name, raw)
        else:
            condition = _condition(name, raw, "filter")
        by_property[name].append(condition)
    return [
        conditions[0] if len(conditions) == 1 else or_(*conditions)
        for conditions in by_property.values()
    ]


def parse_sort(value: str | None) -> list[Any]:
    order: list[Any] = []
    for part in _split([value] if value else [], "sort"):
        name, _, direction = part.partition(":")
        name = name.strip()
        field, column = _property(name, "sort")
        if field.ranked:
            column = case({choice: rank for rank, choice in enumerate(field.choices)}, value=column)
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
        if name not in NAMES:
            known = ", ".join(NAMES)
            raise ValidationFailed.field(
                "projection", f"unknown property {name!r}; known properties: {known}"
            )
    if excluded:
        return tuple(name for name in NAMES if name not in excluded or name == "id")
    return tuple(name for name in NAMES if name in included or name == "id")


def _assignee(raw: str) -> ColumnElement[bool]:
    """Tasks with an assignee of that id (of any type), found by index."""
    if not raw:
        raise ValidationFailed.field("filter", f"{_ASSIGNEE}: expected an assignee id")
    having = select(task_assignees.c.task_seq).where(task_assignees.c.entity_id == raw)
    return tasks.c.seq.in_(having)


def _custom_field(name: str, raw: str) -> ColumnElement[bool]:
    """A custom field equal to `raw` read as the field's own type (not indexed: pair it
    with a narrower filter on large organizations)."""
    key = name[len(_CUSTOM_FIELD) :]
    if not _CUSTOM_KEY.match(key):
        raise ValidationFailed.field("filter", f"{name}: not a custom field key")
    kind = tasks.c.custom_fields[(key, "type")].as_string()
    text = tasks.c.custom_fields[(key, "value")].as_string()
    matches = [and_(kind.in_(("string", "date")), text == raw)]
    try:
        number = number_value(float(raw))
    except ValueError:
        pass
    else:
        value = tasks.c.custom_fields[(key, "value")].as_float()
        # CASE: the cast runs only on numbers (PostgreSQL may reorder an AND).
        matches.append(case((kind == "number", value), else_=None) == number)
    if raw in ("true", "false"):
        # SQLite reads JSON true as the integer 1, PostgreSQL as 'true'.
        texts = ("true", "1") if raw == "true" else ("false", "0")
        matches.append(and_(kind == "boolean", cast(text, String).in_(texts)))
    return or_(*matches)


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
