"""What every record decoder shares: the named error and the checks of one stored field.

Each `check_*` returns the value when it has the named shape and otherwise raises
`MalformedRecord` naming the record kind and the field.
"""

from __future__ import annotations

from typing import Any

from p2pnode.chain.encoding import DecodeError

KEY_LEN = 32


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


def check_int(kind: str, name: str, value: Any) -> int:
    if type(value) is not int:
        raise MalformedRecord(kind, f"{name} is not an integer")
    return value  # type: ignore[no-any-return]


def check_key(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) != KEY_LEN:
        raise MalformedRecord(kind, f"{name} is not a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def check_key_or_empty(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) not in (0, KEY_LEN):
        raise MalformedRecord(kind, f"{name} is neither empty nor a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def check_bytes(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes:
        raise MalformedRecord(kind, f"{name} is not bytes")
    return value  # type: ignore[no-any-return]


def check_str(kind: str, name: str, value: Any) -> str:
    if type(value) is not str:
        raise MalformedRecord(kind, f"{name} is not text")
    return value  # type: ignore[no-any-return]


def check_bool(kind: str, name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise MalformedRecord(kind, f"{name} is not a bool")
    return value  # type: ignore[no-any-return]


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
