"""A small, strict subset of JSON Schema, enough to state a task's request and response shapes.

A task publishes its schemas as plain data (so a node can serve them over its API and a model host
can read them), and this module checks a JSON-like value against one. Supported keywords:

    type                  "object" | "array" | "string" | "integer" | "number" | "boolean"
    properties, required, additionalProperties (false only: unknown fields are always rejected)
    items, prefixItems, minItems, maxItems
    minLength, maxLength, minimum, maximum
    description, title    (documentation only)

Deviations from JSON Schema, all on the strict side: ``bool`` is never an integer or a number,
NaN and infinities are never numbers, object keys must be strings, and an object with a
``properties`` keyword rejects keys it does not list. Sizes are checked before elements are
visited, so an oversized value is rejected without walking it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Schema = Mapping[str, Any]

_KNOWN_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "description",
        "title",
    }
)


class SchemaViolation(ValueError):
    """A value does not match a schema; the message starts with the JSON path of the culprit."""

    def __init__(self, detail: str, path: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.path = path  # relative to the value given to `validate`, e.g. ".pairs[0][1]"

    def __str__(self) -> str:
        return f"${self.path}: {self.detail}"


def validate(value: object, schema: Schema) -> None:
    """Raise `SchemaViolation` unless ``value`` matches ``schema``.

    Fast on valid input (no path strings are built until something fails), since a miner checks
    every response it sends and a validator every response it scores.
    """
    kind = schema.get("type")
    if kind is None:
        return
    try:
        checker = _CHECKERS[kind]
    except KeyError:
        raise ValueError(f"schema has unsupported type {kind!r}") from None
    checker(value, schema)


def check_schema(schema: Schema, path: str = "$") -> None:
    """Raise ValueError if ``schema`` uses a keyword or type this module does not support.

    `validate` does not re-check this on every call (it is on the hot path); tasks' schemas are
    checked once by the tests.
    """
    unknown = set(schema) - _KNOWN_KEYWORDS
    if unknown:
        raise ValueError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
    kind = schema.get("type")
    if kind is not None and kind not in _CHECKERS:
        raise ValueError(f"schema at {path} has unsupported type {kind!r}")
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        raise ValueError(f"schema at {path}: additionalProperties may only be false")
    for key, sub_schema in schema.get("properties", {}).items():
        check_schema(sub_schema, f"{path}.{key}")
    for index, sub_schema in enumerate(schema.get("prefixItems", ())):
        check_schema(sub_schema, f"{path}[{index}]")
    items = schema.get("items")
    if isinstance(items, Mapping):
        check_schema(items, f"{path}[]")
    elif items is not None and items is not False:
        raise ValueError(f"schema at {path}: items must be a schema or false")


def _type_name(value: object) -> str:
    return type(value).__name__


def _validate_object(value: object, schema: Schema) -> None:
    if not isinstance(value, Mapping):
        raise SchemaViolation(f"expected an object, got {_type_name(value)}")
    properties: Mapping[str, Schema] = schema.get("properties", {})
    closed = "properties" in schema or schema.get("additionalProperties") is False
    for key in value:
        if not isinstance(key, str):
            raise SchemaViolation(f"object keys must be strings, got {_type_name(key)}")
        if closed and key not in properties:
            raise SchemaViolation(f"unknown field {key!r} (allowed: {sorted(properties)})")
    for key in schema.get("required", ()):
        if key not in value:
            raise SchemaViolation(f"missing required field {key!r}")
    for key, sub_schema in properties.items():
        if key in value:
            try:
                validate(value[key], sub_schema)
            except SchemaViolation as exc:
                exc.path = f".{key}{exc.path}"
                raise


def _validate_array(value: object, schema: Schema) -> None:
    # Tuples are accepted too: a decoder may hand them over, and they carry the same data.
    if not isinstance(value, list | tuple):
        raise SchemaViolation(f"expected an array, got {_type_name(value)}")
    count = len(value)
    if "minItems" in schema and count < schema["minItems"]:
        raise SchemaViolation(f"expected at least {schema['minItems']} items, got {count}")
    if "maxItems" in schema and count > schema["maxItems"]:
        raise SchemaViolation(f"expected at most {schema['maxItems']} items, got {count}")
    prefix: Sequence[Schema] = schema.get("prefixItems", ())
    items = schema.get("items")
    if items is False and count > len(prefix):
        raise SchemaViolation(f"expected exactly {len(prefix)} items, got {count}")
    index = 0
    try:
        for index, element in enumerate(value[: len(prefix)]):
            validate(element, prefix[index])
        if isinstance(items, Mapping) and count > len(prefix):
            checker = _CHECKERS.get(items.get("type"))  # type: ignore[arg-type]
            if checker is not None:
                for index in range(len(prefix), count):
                    checker(value[index], items)
    except SchemaViolation as exc:
        exc.path = f"[{index}]{exc.path}"
        raise


def _validate_string(value: object, schema: Schema) -> None:
    if not isinstance(value, str):
        raise SchemaViolation(f"expected a string, got {_type_name(value)}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise SchemaViolation(f"expected at least {schema['minLength']} characters, got {len(value)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaViolation(f"expected at most {schema['maxLength']} characters, got {len(value)}")


def _validate_number(value: object, schema: Schema, integer: bool = False) -> None:
    # bool is a subclass of int in Python; on the wire it is a different type, so refuse it.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        expected = "an integer" if integer else "a number"
        raise SchemaViolation(f"expected {expected}, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaViolation(f"expected a finite number, got {value!r}")
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaViolation(f"{value!r} is below the minimum {schema['minimum']!r}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaViolation(f"{value!r} is above the maximum {schema['maximum']!r}")


def _validate_integer(value: object, schema: Schema) -> None:
    _validate_number(value, schema, integer=True)


def _validate_boolean(value: object, schema: Schema) -> None:
    if not isinstance(value, bool):
        raise SchemaViolation(f"expected a boolean, got {_type_name(value)}")


_CHECKERS: dict[str, Callable[[object, Schema], None]] = {
    "object": _validate_object,
    "array": _validate_array,
    "string": _validate_string,
    "number": _validate_number,
    "integer": _validate_integer,
    "boolean": _validate_boolean,
}
