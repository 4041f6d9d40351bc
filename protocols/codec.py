"""Strict canonical-CBOR codec for everything that crosses a boundary.

`decode(cls, data)` accepts only the one canonical encoding of a valid `cls`: cbor2 parses, the
schema checks field set and types, and the result is re-encoded and compared byte for byte, which
rejects duplicate map keys, unsorted keys, long-form integers, indefinite lengths, floats and tags.
Every failure, whatever its cause, is a `MalformedMessage` carrying the reason.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cbor2

from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import ChainObject, SchemaError, from_plain, to_plain

T = TypeVar("T", bound=ChainObject)

DEFAULT_MAX_BYTES = 1 << 20
MAX_NESTING = 16


class MalformedMessage(ValueError):
    """Bytes from outside are not the canonical encoding of a valid object; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(obj: ChainObject) -> bytes:
    return canonical_encode(to_plain(obj))


def _check_plain(value: Any, depth: int) -> None:
    # cbor2 turns tags into objects and may return floats, sets or frozendicts: only the plain
    # CBOR data model is admitted.
    if depth > MAX_NESTING:
        raise MalformedMessage("nested too deeply")
    t = type(value)
    if t is int or t is bytes or t is str or t is bool or value is None:
        return
    if t is list:
        for item in value:
            _check_plain(item, depth + 1)
        return
    if t is dict:
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
        return
    raise MalformedMessage(f"unsupported CBOR item {t.__name__}")


def decode_plain(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode canonical CBOR of plain values (no schema); raises MalformedMessage."""
    if type(data) is not bytes:
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise MalformedMessage("empty message")
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise MalformedMessage(f"invalid CBOR: {exc}") from None
    except Exception as exc:  # cbor2 raises assorted errors on hostile input; none may escape
        raise MalformedMessage(f"invalid CBOR: {type(exc).__name__}") from None
    _check_plain(value, 0)
    try:
        again = canonical_encode(value)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"not encodable canonically: {exc}") from None
    if again != data:
        raise MalformedMessage("not the canonical encoding (duplicate or unsorted keys, or non-minimal form)")
    return value


def decode(cls: type[T], data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Decode `data` as exactly one canonical `cls`; raises MalformedMessage."""
    value = decode_plain(data, max_bytes)
    try:
        return from_plain(cls, value)
    except SchemaError as exc:
        raise MalformedMessage(str(exc)) from None
    except RecursionError:
        raise MalformedMessage("nested too deeply") from None
