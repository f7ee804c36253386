"""A form the approver fills: a small JSON Schema, and the data checked against it.

The schema is an object of properties, each a `string` (with `maxLength`, `enum`, or
`format: date`), `number` or `integer` (with `minimum` / `maximum`) or `boolean`,
with a `title` and `description` for its label; `required` names those that must be
given. A property may also be `anyOf` one of those and `{"type": "null"}` (what
pydantic writes for an optional field). That is what a page can render as labelled
inputs, and what `form` accepts (anything else is a 422 naming where).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from peopletasks.domain.values import MAX_WHOLE_NUMBER, parse_date
from peopletasks.errors import ValidationFailed

MAX_PROPERTIES = 50
_TYPES = ("string", "number", "integer", "boolean")
_KEYWORDS = {
    "type",
    "title",
    "description",
    "enum",
    "format",
    "minimum",
    "maximum",
    "maxLength",
    "default",
}


def _refused(where: str, message: str) -> ValidationFailed:
    """A schema or data that does not fit: 422 naming the place."""
    return ValidationFailed.field(where, message)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _property(name: str, spec: Any) -> dict[str, Any]:
    """One property, checked; its nullable form unwrapped (`nullable: True`)."""
    where = f"form.properties.{name}"
    if not isinstance(spec, dict):
        raise _refused(where, "must be an object")
    nullable = False
    if "anyOf" in spec:
        choices = spec["anyOf"]
        kept = [c for c in choices if c != {"type": "null"}] if isinstance(choices, list) else []
        if len(kept) != 1 or len(choices) != 2 or not isinstance(kept[0], dict):
            raise _refused(where, 'anyOf is only one type and {"type": "null"}')
        spec = {**{k: v for k, v in spec.items() if k != "anyOf"}, **kept[0]}
        nullable = True
    unknown = sorted(set(spec) - _KEYWORDS)
    if unknown:
        raise _refused(where, f"{unknown[0]!r} is not supported in a form")
    kind = spec.get("type")
    if kind not in _TYPES:
        raise _refused(where, f"type must be one of {', '.join(_TYPES)}")
    enum = spec.get("enum", [""])
    if (kind != "string" and "enum" in spec) or not (
        isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum)
    ):
        raise _refused(where, "enum is a non-empty list of strings (type string)")
    if "format" in spec and (kind != "string" or spec["format"] != "date"):
        raise _refused(where, "the only format is date (type string)")
    for bound in ("minimum", "maximum"):
        if bound in spec and (kind not in ("number", "integer") or not _is_number(spec[bound])):
            raise _refused(where, f"{bound} is a number (types number and integer)")
    if "maxLength" in spec and (
        kind != "string" or not isinstance(spec["maxLength"], int) or spec["maxLength"] < 1
    ):
        raise _refused(where, "maxLength is a positive whole number (type string)")
    for text in ("title", "description"):
        if text in spec and not isinstance(spec[text], str):
            raise _refused(where, f"{text} is text")
    return {**spec, "nullable": nullable}


def check_schema(schema: Any) -> dict[str, Any]:
    """`schema` if a form can be made of it; else a 422 naming the place."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise _refused("form", "must be a JSON Schema object (type object)")
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise _refused("form.properties", "must name at least one property")
    if len(properties) > MAX_PROPERTIES:
        raise _refused("form.properties", f"at most {MAX_PROPERTIES} properties")
    for name, spec in properties.items():
        if not isinstance(name, str) or not name or len(name) > 64:
            raise _refused("form.properties", "names are 1 to 64 characters")
        _property(name, spec)
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise _refused("form.required", "lists names of the form's properties")
    unknown = sorted(set(schema) - {"type", "properties", "required", "title", "description"})
    if unknown:
        raise _refused("form", f"{unknown[0]!r} is not supported in a form")
    return schema


def _checked(name: str, spec: dict[str, Any], value: Any) -> Any:
    where = f"data.{name}"
    if value is None:
        if spec["nullable"]:
            return None
        raise _refused(where, "may not be null")
    check: Callable[[Any], bool] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: _is_number(v) and math.isfinite(v),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }[spec["type"]]
    if not check(value):
        raise _refused(where, f"must be a {spec['type']}")
    if spec["type"] == "integer" and abs(value) > MAX_WHOLE_NUMBER:
        raise _refused(where, "is too large")
    if "enum" in spec and value not in spec["enum"]:
        raise _refused(where, f"must be one of {', '.join(spec['enum'])}")
    if spec.get("format") == "date":
        try:
            parse_date(value)
        except ValueError as exc:
            raise _refused(where, str(exc)) from None
    if "maxLength" in spec and len(value) > spec["maxLength"]:
        raise _refused(where, f"at most {spec['maxLength']} characters")
    if "\x00" in str(value):
        raise _refused(where, "must not contain NUL characters")
    if "minimum" in spec and value < spec["minimum"]:
        raise _refused(where, f"must be at least {spec['minimum']}")
    if "maximum" in spec and value > spec["maximum"]:
        raise _refused(where, f"must be at most {spec['maximum']}")
    return value


def check_data(schema: dict[str, Any] | None, data: Any, *, complete: bool) -> Any:
    """`data` checked against the form `schema` (None: no form, no data); `complete`:
    the required properties must be there (an approval's data; a rejection may leave
    the form empty)."""
    if schema is None:
        if data is not None:
            raise _refused("data", "this task has no form")
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _refused("data", "must be an object of the form's properties")
    properties = schema["properties"]
    unknown = sorted(set(data) - set(properties))
    if unknown:
        raise _refused(f"data.{unknown[0]}", "is not a field of the form")
    if complete:
        missing = [name for name in schema.get("required", []) if data.get(name) is None]
        if missing:
            raise _refused(f"data.{missing[0]}", "is required")
    return {
        name: _checked(name, _property(name, properties[name]), value)
        for name, value in data.items()
    } or None


def data_from_fields(schema: dict[str, Any] | None, fields: dict[str, str]) -> Any:
    """A page's form fields (`data.<name>`: text) as the form's data, typed by its
    schema: an empty field is left out, a checkbox is true when sent and false when
    not. The result is then checked by `check_data` like an API response's data."""
    if schema is None:
        return None
    data: dict[str, Any] = {}
    for name, spec in schema["properties"].items():
        kind = _property(name, spec)["type"]
        raw = fields.get(f"data.{name}", "").strip()
        if kind == "boolean":
            data[name] = bool(raw)
        elif not raw:
            continue
        elif kind == "integer":
            try:
                data[name] = int(raw)
            except ValueError:
                raise _refused(f"data.{name}", "must be a whole number") from None
        elif kind == "number":
            try:
                data[name] = float(raw)
            except ValueError:
                raise _refused(f"data.{name}", "must be a number") from None
        else:
            data[name] = raw
    return data


def form_fields(schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What a page renders for a form: each property with its name, label, help and
    input kind (text, date, number, integer, checkbox, choice), in order."""
    if schema is None:
        return []
    required = set(schema.get("required", []))
    fields = []
    for name, spec in schema["properties"].items():
        checked = _property(name, spec)
        kind = checked["type"]
        if kind == "string":
            kind = "choice" if "enum" in checked else "date" if "format" in checked else "text"
        fields.append(
            {
                "name": name,
                "label": checked.get("title") or name,
                "help": checked.get("description"),
                "input": "checkbox" if kind == "boolean" else kind,
                "required": name in required,
                "choices": checked.get("enum", []),
                "minimum": checked.get("minimum"),
                "maximum": checked.get("maximum"),
                "max_length": checked.get("maxLength"),
            }
        )
    return fields
