"""What every record decoder shares: the named error and the checks of one stored field.

Each `check_*` returns the value when it has the named shape and otherwise raises
`MalformedRecord` naming the record kind and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from p2pnode.chain.encoding import DecodeError

KEY_LEN = 32

R = TypeVar("R")
# A field check: (record kind, field name, value) -> the value, or MalformedRecord.
Check = Callable[[str, str, Any], Any]


class MalformedRecord(DecodeError):
    """A stored value does not have the shape of its record kind (a bug or a corrupted store)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"malformed {kind} record: {detail}")
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------- field checks


def check_uint(kind: str, name: str, value: Any) -> int:
    if type(value) is not int or value < 0:
        raise MalformedRecord(kind, f"{name} is not an unsigned integer")
    return value  # type: ignore[no-any-return]


def check_key(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) != KEY_LEN:
        raise MalformedRecord(kind, f"{name} is not a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def check_key_or_empty(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) not in (0, KEY_LEN):
        raise MalformedRecord(kind, f"{name} is neither empty nor a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def _exact_type(expected: type, what: str) -> Check:
    """The check that a value is exactly of `expected` type (a bool is not an int here)."""

    def check(kind: str, name: str, value: Any) -> Any:
        if type(value) is not expected:
            raise MalformedRecord(kind, f"{name} is not {what}")
        return value

    return check


check_int = _exact_type(int, "an integer")
check_bytes = _exact_type(bytes, "bytes")
check_str = _exact_type(str, "text")
check_bool = _exact_type(bool, "a bool")


def check_list(kind: str, name: str, value: Any, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        raise MalformedRecord(kind, f"{name} is not a list" + ("" if length is None else f" of {length}"))
    return value  # type: ignore[no-any-return]


def uid_pairs(kind: str, name: str, value: Any) -> tuple[tuple[int, int], ...]:
    """A sparse row stored as [[uid, value], ...] (weights, bonds), as a tuple of pairs."""
    if type(value) is not list:
        raise MalformedRecord(kind, f"{name} is not a list")
    row = []
    for entry in value:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int or type(entry[1]) is not int:
            raise MalformedRecord(kind, f"{name} has an entry that is not [uid, value]")
        row.append((entry[0], entry[1]))
    return tuple(row)


def int_map(kind: str, name: str, value: Any) -> dict[str, int]:
    if type(value) is not dict or any(type(k) is not str or type(v) is not int for k, v in value.items()):
        raise MalformedRecord(kind, f"{name} is not a map of names to integers")
    return dict(value)


def map_fields(kind: str, value: Any, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`value` as a map holding every required field and no field outside required | optional."""
    if type(value) is not dict:
        raise MalformedRecord(kind, "not a map")
    present = value.keys()
    if not required <= present:
        raise MalformedRecord(kind, f"missing {sorted(required - present)}")
    if len(value) > len(required) and not present <= required | optional:
        raise MalformedRecord(kind, f"unknown {sorted(present - required - optional)}")
    return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- record shapes


def list_fields(kind: str, value: Any, fields: tuple[tuple[str, Check], ...], what: str = "record") -> list[Any]:
    """`value` as a stored list of exactly `len(fields)` entries, each passed through its field's check."""
    check_list(kind, what, value, len(fields))
    return [check(kind, name, item) for (name, check), item in zip(fields, value, strict=False)]  # length checked above


class _Stored(Protocol):
    def to_state(self) -> Any: ...


def records_from_state(kind: str, what: str, value: Any, from_state: Callable[[Any], R]) -> list[R]:
    """A stored list of records, each decoded by `from_state`."""
    return [from_state(entry) for entry in check_list(kind, what, value)]


def records_to_state(records: Iterable[_Stored]) -> list[Any]:
    return [record.to_state() for record in records]


# A map field: (attribute name, stored name, check).
MapField = tuple[str, str, Check]


class MapLayout:
    """How a record stored as a map reads and writes: its required fields, and its optional ones
    (None while absent, and left out when None, since absent and default encode differently)."""

    __slots__ = ("kind", "required", "optional", "_required_names", "_optional_names")

    def __init__(self, kind: str, required: tuple[MapField, ...], optional: tuple[MapField, ...] = ()) -> None:
        self.kind = kind
        self.required = required
        self.optional = optional
        self._required_names = frozenset(stored for _, stored, _ in required)
        self._optional_names = frozenset(stored for _, stored, _ in optional)

    def read(self, value: Any) -> dict[str, Any]:
        """The record's attributes from its stored map, each field checked."""
        kind = self.kind
        v = map_fields(kind, value, self._required_names, self._optional_names)
        attrs = {attr: check(kind, stored, v[stored]) for attr, stored, check in self.required}
        for attr, stored, check in self.optional:
            attrs[attr] = check(kind, stored, v[stored]) if stored in v else None
        return attrs

    def write(self, record: Any) -> dict[str, Any]:
        """The stored map of `record`, fields in layout order."""
        out = {stored: getattr(record, attr) for attr, stored, _ in self.required}
        for attr, stored, _ in self.optional:
            value = getattr(record, attr)
            if value is not None:
                out[stored] = value
        return out
