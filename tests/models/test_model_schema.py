"""The JSON-Schema subset that states every task's request and response shapes."""

from __future__ import annotations

import math

import pytest

from models.schema import SchemaViolation, check_schema, validate
from models.tasks import available_tasks, get_task

PAIR = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "prefixItems": [{"type": "string"}, {"type": "number"}],
    "items": False,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "pairs": {"type": "array", "maxItems": 3, "items": PAIR},
    },
    "required": ["name"],
}


def test_a_matching_value_passes() -> None:
    validate({"name": "abc", "count": 3, "pairs": [["a", 1.5], ("b", -2)]}, SCHEMA)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "$: expected an object, got list"),
        ({}, "$: missing required field 'name'"),
        ({"name": "abc", "extra": 1}, "$: unknown field 'extra'"),
        ({"name": ""}, "$.name: expected at least 1 characters"),
        ({"name": "abcdef"}, "$.name: expected at most 5 characters"),
        ({"name": 5}, "$.name: expected a string, got int"),
        ({"name": "a", "count": True}, "$.count: expected an integer, got bool"),
        ({"name": "a", "count": 1.0}, "$.count: expected an integer, got float"),
        ({"name": "a", "count": 11}, "$.count: 11 is above the maximum 10"),
        ({"name": "a", "count": -1}, "$.count: -1 is below the minimum 0"),
        ({"name": "a", "pairs": [["a", math.nan]]}, "$.pairs[0][1]: expected a finite number"),
        ({"name": "a", "pairs": [["a", math.inf]]}, "$.pairs[0][1]: expected a finite number"),
        ({"name": "a", "pairs": [["a", "1"]]}, "$.pairs[0][1]: expected a number, got str"),
        ({"name": "a", "pairs": [["a"]]}, "$.pairs[0]: expected at least 2 items"),
        ({"name": "a", "pairs": [["a", 1, 2]]}, "$.pairs[0]: expected at most 2 items"),
        ({"name": "a", "pairs": "ab"}, "$.pairs: expected an array, got str"),
        ({1: "a"}, "$: object keys must be strings"),
    ],
)
def test_a_mismatch_is_reported_with_its_path(value: object, message: str) -> None:
    with pytest.raises(SchemaViolation) as info:
        validate(value, SCHEMA)
    assert str(info.value).startswith(message)


def test_an_oversized_array_is_rejected_before_its_elements_are_visited() -> None:
    class Exploding:
        def __getattribute__(self, name: str) -> object:
            raise AssertionError("an element was inspected")

    with pytest.raises(SchemaViolation, match=r"at most 3 items, got 1000"):
        validate({"name": "a", "pairs": [Exploding()] * 1000}, SCHEMA)


def test_schemas_with_unsupported_keywords_fail_the_schema_check() -> None:
    check_schema(SCHEMA)
    with pytest.raises(ValueError, match=r"schema at \$.a uses unsupported keywords \['pattern'\]"):
        check_schema({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"}}})
    with pytest.raises(ValueError, match="unsupported type 'null'"):
        check_schema({"type": "array", "items": {"type": "null"}})


def test_every_task_schema_passes_the_schema_check() -> None:
    for name in available_tasks():
        task = get_task(name)
        check_schema(task.request_schema)
        check_schema(task.response_schema)
