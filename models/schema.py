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
from collections.abc import Mapping
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


def validate(value: object, schema: Schema, path: str = "$") -> None:
    """Raise `SchemaViolation` unless ``value`` matches ``schema``."""
    unknown = set(schema) - _KNOWN_KEYWORDS
    if unknown:
        # A typo in a task's schema must fail loudly rather than silently accept everything.
        raise ValueError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
    kind = schema.get("type")
    if kind == "object":
        _validate_object(value, schema, path)
    elif kind == "array":
        _validate_array(value, schema, path)
    elif kind == "string":
        _validate_string(value, schema, path)
    elif kind in ("integer", "number"):
        _validate_number(value, schema, path, integer=kind == "integer")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise SchemaViolation(f"{path}: expected a boolean, got {_type_name(value)}")
    elif kind is not None:
        raise ValueError(f"schema at {path} has unsupported type {kind!r}")


def _type_name(value: object) -> str:
    return type(value).__name__


def _validate_object(value: object, schema: Schema, path: str) -> None:
    if not isinstance(value, Mapping):
        raise SchemaViolation(f"{path}: expected an object, got {_type_name(value)}")
    properties: Mapping[str, Schema] = schema.get("properties", {})
    for key in value:
        if not isinstance(key, str):
            raise SchemaViolation(f"{path}: object keys must be strings, got {_type_name(key)}")
        if key not in properties and ("properties" in schema or schema.get("additionalProperties") is False):
            raise SchemaViolation(f"{path}: unknown field {key!r} (allowed: {sorted(properties)})")
    for key in schema.get("required", ()):
        if key not in value:
            raise SchemaViolation(f"{path}: missing required field {key!r}")
    for key, sub_schema in properties.items():
        if key in value:
            validate(value[key], sub_schema, f"{path}.{key}")


def _validate_array(value: object, schema: Schema, path: str) -> None:
    # Tuples are accepted too: a decoder may hand them over, and they carry the same data.
    if not isinstance(value, list | tuple):
        raise SchemaViolation(f"{path}: expected an array, got {_type_name(value)}")
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise SchemaViolation(f"{path}: expected at least {schema['minItems']} items, got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaViolation(f"{path}: expected at most {schema['maxItems']} items, got {len(value)}")
    prefix: list[Schema] = list(schema.get("prefixItems", ()))
    items = schema.get("items")
    for i, element in enumerate(value):
        if i < len(prefix):
            validate(element, prefix[i], f"{path}[{i}]")
        elif items is False:
            raise SchemaViolation(f"{path}: expected exactly {len(prefix)} items, got {len(value)}")
        elif isinstance(items, Mapping):
            validate(element, items, f"{path}[{i}]")


def _validate_string(value: object, schema: Schema, path: str) -> None:
    if not isinstance(value, str):
        raise SchemaViolation(f"{path}: expected a string, got {_type_name(value)}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise SchemaViolation(f"{path}: expected at least {schema['minLength']} characters, got {len(value)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaViolation(f"{path}: expected at most {schema['maxLength']} characters, got {len(value)}")


def _validate_number(value: object, schema: Schema, path: str, *, integer: bool) -> None:
    # bool is a subclass of int in Python; on the wire it is a different type, so refuse it.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        expected = "an integer" if integer else "a number"
        raise SchemaViolation(f"{path}: expected {expected}, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaViolation(f"{path}: expected a finite number, got {value!r}")
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaViolation(f"{path}: {value!r} is below the minimum {schema['minimum']!r}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaViolation(f"{path}: {value!r} is above the maximum {schema['maximum']!r}")
