"""Strict canonical-CBOR codec for everything that crosses a boundary.

`decode(cls, data)` accepts only the one canonical encoding of a valid `cls`. Untrusted bytes never
reach a general-purpose decoder: `decode_plain` is a small decoder of our own that admits only the
part of CBOR the schemas use and checks canonical form as it reads, so nothing is built before it
is known to be allowed:

- major types 0 and 1 (integers, at most 64-bit arguments), 2 (byte strings), 3 (text strings,
  valid UTF-8), 4 (arrays), 5 (maps with text keys, in canonical order, no duplicates), and the
  simple values false, true and null;
- every argument in its shortest form, every length definite;
- no tags (major 6), no floats, no other simple values, no reserved or indefinite lengths;
- every length is compared with the bytes that remain BEFORE anything is allocated (an array of n
  items needs at least n bytes, a map of n entries 2n), containers hold at most
  `MAX_CONTAINER_ITEMS` entries and nest at most `MAX_NESTING` deep.

The schema then checks the field set, types and bounds. Every failure is a `MalformedMessage`
carrying the reason.
"""

from __future__ import annotations

from typing import Any, TypeVar

from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import ChainObject, ListOf, SchemaError, Struct, from_plain, to_plain
from p2pnode.chain.types import TX_BODIES

T = TypeVar("T", bound=ChainObject)

DEFAULT_MAX_BYTES = 1 << 20
MAX_NESTING = 16
# The schemas' longest list holds 4096 entries; anything far beyond that is not one of ours.
MAX_CONTAINER_ITEMS = 1 << 16

# The smallest argument each long form may carry (anything smaller has a shorter form).
_MIN_FOR_INFO = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


# Encoded field names of the schemas decoded so far -> the name; filled from schemas only (never
# from input), so it stays small and no peer can grow it.
_KNOWN_KEYS: dict[bytes, str] = {}
_KNOWN_SCHEMAS: set[type] = set()


def _learn_keys(cls: type) -> None:
    """Record the field names of `cls` and of every schema nested in it."""
    if cls in _KNOWN_SCHEMAS:
        return
    _KNOWN_SCHEMAS.add(cls)
    for name, ftype in getattr(cls, "SCHEMA", {}).items():
        _KNOWN_KEYS[canonical_encode(name)] = name
        while isinstance(ftype, ListOf):
            ftype = ftype.item
        if isinstance(ftype, Struct):
            _learn_keys(ftype.cls)


for _body in TX_BODIES.values():  # transaction bodies are typed by `kind`, not by a Struct field
    _learn_keys(_body)


class MalformedMessage(ValueError):
    """Bytes from outside are not the canonical encoding of a valid object; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(obj: ChainObject) -> bytes:
    return canonical_encode(to_plain(obj))


def _refuse_initial(initial: int, pos: int) -> MalformedMessage:
    major, info = initial >> 5, initial & 31
    if major == 6:
        return MalformedMessage(f"tags are not allowed (offset {pos})")
    if major == 7:
        if 25 <= info <= 27:
            return MalformedMessage(f"floats are not allowed (offset {pos})")
        if info == 31:
            return MalformedMessage(f"indefinite lengths are not allowed (offset {pos})")
        return MalformedMessage(f"simple value {info} is not allowed (offset {pos})")
    if info == 31:
        return MalformedMessage(f"indefinite lengths are not allowed (offset {pos})")
    return MalformedMessage(f"reserved additional information {info} (offset {pos})")


def _item(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    """Decode the item at `pos`; returns (value, position after it)."""
    if pos >= end:
        raise MalformedMessage("truncated")
    initial = data[pos]
    major = initial >> 5
    info = initial & 31
    pos += 1
    if info < 24:
        arg = info
    elif info < 28:
        if major == 7:
            raise _refuse_initial(initial, pos - 1)
        size = _ARG_BYTES[info]
        if pos + size > end:
            raise MalformedMessage("truncated")
        arg = int.from_bytes(data[pos : pos + size], "big")
        if arg < _MIN_FOR_INFO[info]:
            raise MalformedMessage(f"not the canonical encoding: non-minimal argument (offset {pos - 1})")
        pos += size
    else:
        raise _refuse_initial(initial, pos - 1)

    if major == 0:
        return arg, pos
    if major == 3:
        stop = pos + arg
        if stop > end:
            raise MalformedMessage(f"text of {arg} bytes exceeds the remaining {end - pos}")
        try:
            return data[pos:stop].decode("utf-8"), stop
        except UnicodeDecodeError:
            raise MalformedMessage(f"text is not valid UTF-8 (offset {pos})") from None
    if major == 2:
        stop = pos + arg
        if stop > end:
            raise MalformedMessage(f"byte string of {arg} bytes exceeds the remaining {end - pos}")
        return data[pos:stop], stop
    if major == 5:
        if depth >= MAX_NESTING:
            raise MalformedMessage("nested too deeply")
        if arg > MAX_CONTAINER_ITEMS or 2 * arg > end - pos:
            raise MalformedMessage(f"map of {arg} entries cannot fit in the remaining {end - pos} bytes")
        mapping: dict[str, Any] = {}
        previous = b""
        depth += 1
        known = _KNOWN_KEYS
        for _ in range(arg):
            # Keys are text: read inline so the canonical order can be checked on the raw bytes.
            if pos >= end:
                raise MalformedMessage("truncated")
            key_start = pos
            key_initial = data[pos]
            if key_initial >> 5 != 3:
                raise MalformedMessage(f"map keys must be text (offset {pos})")
            if key_initial < 0x78:  # short key: look it up among the schemas' field names first
                pos += 1 + (key_initial & 31)
                key_bytes = data[key_start:pos]
                key = known.get(key_bytes)
                if key is None:
                    key, pos = _item(data, key_start, end, depth)
            else:
                key, pos = _item(data, pos, end, depth)
                key_bytes = data[key_start:pos]
            if key_bytes <= previous:
                raise MalformedMessage(
                    f"not the canonical encoding: map keys duplicated or out of order (offset {key_start})"
                )
            previous = key_bytes
            # The common values are decoded inline: small integers, and byte strings of 24-255
            # bytes (hashes, keys, signatures); anything else takes the general path.
            value_initial = data[pos] if pos < end else -1
            if 0 <= value_initial < 0x18:
                mapping[key] = value_initial
                pos += 1
            elif value_initial == 0x58 and pos + 1 < end and data[pos + 1] >= 24:
                stop = pos + 2 + data[pos + 1]
                if stop > end:
                    raise MalformedMessage(f"byte string of {data[pos + 1]} bytes exceeds the remaining {end - pos - 2}")
                mapping[key] = data[pos + 2 : stop]
                pos = stop
            else:
                mapping[key], pos = _item(data, pos, end, depth)
        return mapping, pos
    if major == 4:
        if depth >= MAX_NESTING:
            raise MalformedMessage("nested too deeply")
        if arg > MAX_CONTAINER_ITEMS or arg > end - pos:
            raise MalformedMessage(f"array of {arg} items cannot fit in the remaining {end - pos} bytes")
        items = []
        append = items.append
        depth += 1
        for _ in range(arg):
            # Arrays are mostly small integers (uids, weights) or byte strings: decode those inline.
            if pos >= end:
                raise MalformedMessage("truncated")
            initial = data[pos]
            if initial < 0x18:
                append(initial)
                pos += 1
            elif initial == 0x18 and pos + 2 <= end:
                value = data[pos + 1]
                if value < 24:
                    raise MalformedMessage(f"not the canonical encoding: non-minimal argument (offset {pos})")
                append(value)
                pos += 2
            elif initial == 0x19 and pos + 3 <= end:
                value = (data[pos + 1] << 8) | data[pos + 2]
                if value < 0x100:
                    raise MalformedMessage(f"not the canonical encoding: non-minimal argument (offset {pos})")
                append(value)
                pos += 3
            else:
                value, pos = _item(data, pos, end, depth)
                append(value)
        return items, pos
    if major == 1:
        return -1 - arg, pos
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise _refuse_initial(initial, pos - 1)
    raise _refuse_initial(initial, pos - 1)  # major 6: tags


def decode_plain(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode canonical CBOR of plain values (no schema); raises MalformedMessage."""
    if type(data) is not bytes:
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise MalformedMessage("empty message")
    end = len(data)
    value, pos = _item(data, 0, end, 0)
    if pos != end:
        raise MalformedMessage(f"{end - pos} trailing bytes after the item")
    return value


def decode(cls: type[T], data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Decode `data` as exactly one canonical `cls`; raises MalformedMessage."""
    if cls not in _KNOWN_SCHEMAS:
        _learn_keys(cls)
    value = decode_plain(data, max_bytes)
    try:
        return from_plain(cls, value)
    except SchemaError as exc:
        raise MalformedMessage(str(exc)) from None
