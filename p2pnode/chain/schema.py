"""Strict schemas for chain objects: dataclass <-> plain CBOR-able values.

Every chain object is a frozen dataclass with a ``SCHEMA`` mapping field name to a field type.
``to_plain`` gives the dict that is canonically encoded; ``from_plain`` checks types, ranges,
sizes and the exact field set, raising ``SchemaError`` with the path of the bad field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol, TypeVar

from p2pnode.chain.encoding import encode
from p2pnode.chain.errors import ChainError

T = TypeVar("T", bound="ChainObject")


class SchemaError(ChainError, ValueError):
    """A value does not match its schema; the message names the field path and the problem."""


class FieldType(Protocol):
    def check(self, value: Any, path: str) -> Any: ...

    def plain(self, value: Any) -> Any: ...


class ChainObject:
    SCHEMA: ClassVar[dict[str, FieldType]]
    # Whether the strict decoder keeps the bytes it read as the object's canonical encoding (for
    # the objects that are hashed or signed: their ids, hashes and signing bytes then cost no encode).
    KEEP_ENCODING: ClassVar[bool] = False


class _Scalar:
    """A field type whose plain value is the value itself."""

    def plain(self, value: Any) -> Any:
        return value


class UInt(_Scalar):
    def __init__(self, bits: int) -> None:
        if not 1 <= bits <= 64:
            raise ValueError("the canonical encoding carries integers of at most 64 bits")
        self.max = (1 << bits) - 1
        self.bits = bits

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise SchemaError(f"{path}: expected u{self.bits}, got {type(value).__name__}")
        if value < 0 or value > self.max:
            raise SchemaError(f"{path}: u{self.bits} out of range")
        return value


class Bool(_Scalar):
    def check(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise SchemaError(f"{path}: expected bool, got {type(value).__name__}")
        return value


class Bytes(_Scalar):
    def __init__(self, exact: int | None = None, max_len: int | None = None) -> None:
        self.exact = exact
        self.max_len = max_len

    def check(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise SchemaError(f"{path}: expected bytes, got {type(value).__name__}")
        if self.exact is not None and len(value) != self.exact:
            raise SchemaError(f"{path}: expected {self.exact} bytes, got {len(value)}")
        if self.max_len is not None and len(value) > self.max_len:
            raise SchemaError(f"{path}: longer than {self.max_len} bytes")
        return value


class Text(_Scalar):
    """Text bounded in UTF-8 bytes (`max_len`), optionally printable ASCII only or one of `choices`."""

    def __init__(self, max_len: int, choices: frozenset[str] | None = None, *, printable_ascii: bool = False) -> None:
        self.max_len = max_len
        self.choices = choices
        self.printable_ascii = printable_ascii

    def check(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise SchemaError(f"{path}: expected text, got {type(value).__name__}")
        # len(value) <= UTF-8 length <= 4 * len(value): encode only when the characters are not enough.
        if len(value) > self.max_len or (not value.isascii() and len(value.encode("utf-8")) > self.max_len):
            raise SchemaError(f"{path}: longer than {self.max_len} bytes")
        if self.printable_ascii and not (value.isascii() and value.isprintable()):
            raise SchemaError(f"{path}: not printable ASCII")
        if self.choices is not None and value not in self.choices:
            raise SchemaError(f"{path}: {value!r} is not one of {sorted(self.choices)}")
        return value


class ListOf:
    def __init__(self, item: FieldType, max_len: int) -> None:
        self.item = item
        self.max_len = max_len

    def check(self, value: Any, path: str) -> tuple[Any, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise SchemaError(f"{path}: expected list, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise SchemaError(f"{path}: more than {self.max_len} items")
        item = self.item
        if type(item) is UInt:
            # Long lists of small integers (uids, weights): one pass without a call per item; the
            # general path below names the first bad item.
            top = item.max
            if all(type(v) is int and 0 <= v <= top for v in value):
                return tuple(value)
        check = item.check
        return tuple(check(v, f"{path}[{i}]") for i, v in enumerate(value))

    def plain(self, value: tuple[Any, ...]) -> list[Any]:
        plain = self.item.plain
        return [plain(v) for v in value]


class Struct:
    def __init__(self, cls: type[ChainObject]) -> None:
        self.cls = cls

    def check(self, value: Any, path: str) -> Any:
        return from_plain(self.cls, value, path)

    def plain(self, value: Any) -> dict[str, Any]:
        return to_plain(value)


U8, U16, U32, U64 = UInt(8), UInt(16), UInt(32), UInt(64)
# Heights, slots and epochs: below 2^63 so they fit a signed 64-bit integer (SQLite's INTEGER),
# far beyond any real chain.
HEIGHT = UInt(63)
MAX_HEIGHT = HEIGHT.max
B32 = Bytes(exact=32)
B64 = Bytes(exact=64)
BOOL = Bool()


def to_plain(obj: Any) -> dict[str, Any]:
    """The dict of `obj`'s fields in plain CBOR-able values."""
    schema = obj.SCHEMA
    return {name: ftype.plain(getattr(obj, name)) for name, ftype in schema.items()}


def field_set_error(where: str, keys: Iterable[Any], schema: dict[str, FieldType]) -> SchemaError:
    """The error for a map at `where` whose keys are not exactly the schema's fields."""
    present = set(keys)
    unknown = sorted(str(k) for k in present - schema.keys())
    missing = sorted(schema.keys() - present)
    parts = []
    if unknown:
        parts.append(f"unknown fields {unknown}")
    if missing:
        parts.append(f"missing fields {missing}")
    return SchemaError(f"{where}: {'; '.join(parts) or 'bad field set'}")


# Where an object's canonical encoding is memoised, in the instance's __dict__ (chain objects are
# slotted dataclasses on a base without slots, so they have one; it is not a field, so equality,
# hashing and repr ignore it).
ENCODED_ATTR = "_canonical_encoding"


def canonical_bytes(obj: Any) -> bytes:
    """The canonical encoding of `obj`, encoded once per object.

    Chain objects are frozen and hold only immutable values, so the encoding cannot go stale. The
    strict decoder (`protocols.codec`) stores the bytes it decoded: it accepts only the canonical
    encoding, so those bytes are what encoding the object would give.
    """
    memo = obj.__dict__
    data = memo.get(ENCODED_ATTR)
    if data is None:
        data = memo[ENCODED_ATTR] = encode(to_plain(obj))
    return data  # type: ignore[no-any-return]


def from_plain(cls: type[T], value: Any, path: str = "") -> T:
    """Build `cls` from a decoded map, checking the exact field set and every field's type."""
    where = path or cls.__name__
    if type(value) is not dict:
        raise SchemaError(f"{where}: expected map, got {type(value).__name__}")
    schema = cls.SCHEMA
    if len(value) != len(schema) or value.keys() != schema.keys():
        raise field_set_error(where, value.keys(), schema)
    kwargs = {name: ftype.check(value[name], f"{where}.{name}") for name, ftype in schema.items()}
    obj = cls(**kwargs)
    post = getattr(obj, "validate_shape", None)
    if post is not None:
        post(where)
    return obj


def chain_object(cls: type[T]) -> type[T]:
    """Decorator: a frozen, slotted dataclass whose SCHEMA lists its fields in order."""
    dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
    names = [f.name for f in dataclasses.fields(dc)]
    if names != list(cls.SCHEMA):
        raise TypeError(f"{cls.__name__}: SCHEMA {list(cls.SCHEMA)} does not match fields {names}")
    return dc
