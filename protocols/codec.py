"""Strict canonical-CBOR codec for everything that crosses a boundary.

`decode(cls, data)` accepts only the one canonical encoding of a valid `cls`. Untrusted bytes never
reach a general-purpose decoder; both decoders here are our own, admit only the part of CBOR the
schemas use and check canonical form as they read, so nothing is built before it is known to be
allowed:

- major types 0 and 1 (integers, at most 64-bit arguments), 2 (byte strings), 3 (text strings,
  valid UTF-8), 4 (arrays), 5 (maps with text keys, in canonical order, no duplicates), and the
  simple values false, true and null;
- every argument in its shortest form, every length definite;
- no tags (major 6), no floats, no other simple values, no reserved or indefinite lengths;
- every length is compared with the bytes that remain BEFORE anything is allocated (an array of n
  items needs at least n bytes, a map of n entries 2n), containers hold at most
  `MAX_CONTAINER_ITEMS` entries and nest at most `MAX_NESTING` deep.

`decode` reads straight into the schema: each field's type and bound (the exact field set, byte
and list lengths, integer ranges) are checked on the item's head before its content is read.
`decode_plain` decodes without a schema (plain values). Every failure is a `MalformedMessage`
carrying the reason; schema violations carry the schema's own message and field path.
"""

from __future__ import annotations

from typing import Any, TypeVar

from p2pnode.chain.encoding import SIMPLE_VALUES
from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import (
    ENCODED_ATTR,
    Bool,
    Bytes,
    ChainObject,
    ListOf,
    SchemaError,
    Struct,
    Text,
    UInt,
    canonical_bytes,
    field_set_error,
    to_plain,
)
from p2pnode.chain.types import TX_BODIES, TxBodyField

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
    """The canonical encoding of `obj` (the bytes it was decoded from, when it was)."""
    return canonical_bytes(obj)


def encode_fields(obj: ChainObject) -> bytes:
    """`obj` encoded again from its fields, ignoring bytes kept from decoding: what checks of the
    decoder (canonical form of what it accepts) compare with."""
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


def _map_key(data: bytes, pos: int, end: int, depth: int, previous: bytes) -> tuple[str, bytes, int]:
    """The text key of a map entry at `pos`: (key, its encoded bytes, position after it). Keys are
    read here rather than by `_item` so that the canonical order is checked on the raw bytes: each
    must sort strictly after `previous`, the encoded key before it."""
    if pos >= end:
        raise MalformedMessage("truncated")
    key_initial = data[pos]
    if key_initial >> 5 != 3:
        raise MalformedMessage(f"map keys must be text (offset {pos})")
    key = None
    if key_initial < 0x78:  # short key: look it up among the schemas' field names first
        stop = pos + 1 + (key_initial & 31)
        key_bytes = data[pos:stop]
        key = _KNOWN_KEYS.get(key_bytes)
    if key is None:
        key, stop = _item(data, pos, end, depth)
        key_bytes = data[pos:stop]
    if key_bytes <= previous:
        raise MalformedMessage(f"not the canonical encoding: map keys duplicated or out of order (offset {pos})")
    return key, key_bytes, stop


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
        for _ in range(arg):
            key, previous, pos = _map_key(data, pos, end, depth, previous)
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
    if major == 7 and arg in SIMPLE_VALUES:
        return SIMPLE_VALUES[arg], pos
    raise _refuse_initial(initial, pos - 1)  # tags (major 6) and the other simple values


def _check_message(data: bytes, max_bytes: int) -> None:
    """What every message must be before it is read: bytes, not empty, at most `max_bytes`."""
    if type(data) is not bytes:
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise MalformedMessage("empty message")


def decode_plain(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode canonical CBOR of plain values (no schema); raises MalformedMessage."""
    _check_message(data, max_bytes)
    end = len(data)
    value, pos = _item(data, 0, end, 0)
    if pos != end:
        raise MalformedMessage(f"{end - pos} trailing bytes after the item")
    return value


# ---------------------------------------------------------------- decoding into a schema
#
# `decode` reads straight into the schema's types: every length is checked against the field's
# bound (and the remaining input) before anything is built, so a message can never make the node
# hold more than its schema allows, whatever it is filled with. The messages of `SchemaError` are
# the schema's own (`from_plain`), with the same field paths.

# What a value of each major type is called in an error (the Python type it would decode to).
_MAJOR_NAMES = {0: "int", 1: "int", 2: "bytes", 3: "str", 4: "list", 5: "dict"}


def _head(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head) of the item at `pos`, canonical form checked;
    for major 7 the argument is the simple value (20, 21 or 22)."""
    if pos >= end:
        raise MalformedMessage("truncated")
    initial = data[pos]
    major = initial >> 5
    info = initial & 31
    if info < 24:
        if major == 7 and info not in SIMPLE_VALUES:
            raise _refuse_initial(initial, pos)
        if major == 6:
            raise _refuse_initial(initial, pos)
        return major, info, pos + 1
    if info > 27 or major >= 6:
        raise _refuse_initial(initial, pos)
    size = _ARG_BYTES[info]
    if pos + 1 + size > end:
        raise MalformedMessage("truncated")
    arg = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    if arg < _MIN_FOR_INFO[info]:
        raise MalformedMessage(f"not the canonical encoding: non-minimal argument (offset {pos})")
    return major, arg, pos + 1 + size


def _type_name(major: int, arg: int) -> str:
    if major == 7:
        return "NoneType" if arg == 22 else "bool"
    return _MAJOR_NAMES[major]


def _skip(data: bytes, pos: int, end: int, depth: int) -> int:
    """The position after the item at `pos`, walked without building it."""
    major, arg, pos = _head(data, pos, end)
    if major == 2 or major == 3:
        if pos + arg > end:
            raise MalformedMessage(f"string of {arg} bytes exceeds the remaining {end - pos}")
        return pos + arg
    if major == 4 or major == 5:
        if depth >= MAX_NESTING:
            raise MalformedMessage("nested too deeply")
        count = arg if major == 4 else 2 * arg
        if arg > MAX_CONTAINER_ITEMS or count > end - pos:
            raise MalformedMessage(f"container of {arg} entries cannot fit in the remaining {end - pos} bytes")
        for _ in range(count):
            # Integers of up to 16 bits are stepped over inline (weights); what is skipped is read
            # properly afterwards, so only the position matters here.
            initial = data[pos] if pos < end else -1
            if 0 <= initial < 0x18:
                pos += 1
            elif initial == 0x18:
                pos += 2
            elif initial == 0x19:
                pos += 3
            else:
                pos = _skip(data, pos, end, depth + 1)
        if pos > end:
            raise MalformedMessage("truncated")
    return pos


def _field_set_error(cls: type[ChainObject], data: bytes, pos: int, end: int, count: int, depth: int,
                     where: str) -> SchemaError:
    """The schema's error for a map whose keys are not the schema's fields (values are skipped)."""
    keys = []
    for _ in range(count):
        if pos >= end:
            raise MalformedMessage("truncated")
        if data[pos] >> 5 != 3:
            raise MalformedMessage(f"map keys must be text (offset {pos})")
        key, pos = _item(data, pos, end, depth)
        keys.append(key)
        pos = _skip(data, pos, end, depth)
    return field_set_error(where, keys, cls.SCHEMA)


# Field paths are built only for an error message: a path is a name, or (parent path, field name
# or list index).
Path = Any


def _path(path: Path) -> str:
    if type(path) is str:
        return path
    parent, key = path
    return f"{_path(parent)}[{key}]" if type(key) is int else f"{_path(parent)}.{key}"


def _struct(cls: type[T], data: bytes, pos: int, end: int, depth: int, path: Path) -> tuple[T, int]:
    item_start = pos
    major, arg, pos = _head(data, pos, end)
    if major != 5:
        raise SchemaError(f"{_path(path)}: expected map, got {_type_name(major, arg)}")
    if depth >= MAX_NESTING:
        raise MalformedMessage("nested too deeply")
    schema = cls.SCHEMA
    if arg != len(schema):
        if arg > MAX_CONTAINER_ITEMS or 2 * arg > end - pos:
            raise MalformedMessage(f"map of {arg} entries cannot fit in the remaining {end - pos} bytes")
        raise _field_set_error(cls, data, pos, end, arg, depth + 1, _path(path))
    depth += 1
    known = _KNOWN_KEYS
    kwargs: dict[str, Any] = {}
    previous = b""
    start = pos
    deferred_body: tuple[str, int, int] | None = None
    for _ in range(arg):
        # Fast path for a schema's own field name in canonical order; anything else (and every
        # error) is read and named by `_map_key`.
        key_initial = data[pos] if pos < end else 0
        stop = pos + 1 + (key_initial & 31)
        key_bytes = data[pos:stop]
        key = known.get(key_bytes) if 0x60 <= key_initial < 0x78 else None
        if key is None or key_bytes <= previous:
            key, key_bytes, stop = _map_key(data, pos, end, depth, previous)
        previous, pos = key_bytes, stop
        ftype = schema.get(key)
        if ftype is None:
            raise _field_set_error(cls, data, start, end, arg, depth, _path(path))
        kind = type(ftype)
        if kind is UInt and pos < end and data[pos] < 0x18:  # the commonest value: a small integer
            kwargs[key] = data[pos]
            pos += 1
        elif kind is TxBodyField:
            # The body's type is named by `kind`, which sorts after `body`: walk it now, read it
            # once `kind` is known.
            body_start = pos
            pos = _skip(data, pos, end, depth)
            deferred_body = (key, body_start, pos)
        else:
            kwargs[key], pos = _field(ftype, data, pos, end, depth, (path, key))
    if deferred_body is not None:
        key, body_start, body_end = deferred_body
        body_cls = TX_BODIES[kwargs["kind"]]  # `kind` was checked against TX_BODIES
        kwargs[key], body_stop = _struct(body_cls, data, body_start, body_end, depth, (path, key))
        if body_stop != body_end:  # the walk and the read must agree on where the body ends
            raise MalformedMessage(f"{_path(path)}.{key}: malformed body (offset {body_stop})")
    obj = cls(**kwargs)
    post = getattr(obj, "validate_shape", None)
    if post is not None:
        post(_path(path))
    if cls.KEEP_ENCODING:
        # Every rule of canonical form was checked on the way: these bytes are the encoding.
        obj.__dict__[ENCODED_ATTR] = data[item_start:pos]
    return obj, pos


def _field(ftype: Any, data: bytes, pos: int, end: int, depth: int, path: Path) -> tuple[Any, int]:
    kind = type(ftype)
    if kind is Bytes:
        major, arg, after = _head(data, pos, end)
        if major != 2:
            raise SchemaError(f"{_path(path)}: expected bytes, got {_type_name(major, arg)}")
        if ftype.exact is not None and arg != ftype.exact:
            raise SchemaError(f"{_path(path)}: expected {ftype.exact} bytes, got {arg}")
        if ftype.max_len is not None and arg > ftype.max_len:
            raise SchemaError(f"{_path(path)}: longer than {ftype.max_len} bytes")
        stop = after + arg
        if stop > end:
            raise MalformedMessage(f"byte string of {arg} bytes exceeds the remaining {end - after}")
        return data[after:stop], stop
    if kind is UInt:
        major, arg, after = _head(data, pos, end)
        if major == 0:
            if arg > ftype.max:
                raise SchemaError(f"{_path(path)}: u{ftype.bits} out of range")
            return arg, after
        if major == 1:
            raise SchemaError(f"{_path(path)}: u{ftype.bits} out of range")
        raise SchemaError(f"{_path(path)}: expected u{ftype.bits}, got {_type_name(major, arg)}")
    if kind is Struct:
        return _struct(ftype.cls, data, pos, end, depth, path)
    if kind is Text:
        major, arg, after = _head(data, pos, end)
        if major != 3:
            raise SchemaError(f"{_path(path)}: expected text, got {_type_name(major, arg)}")
        if arg > ftype.max_len:
            raise SchemaError(f"{_path(path)}: longer than {ftype.max_len} bytes")
        stop = after + arg
        if stop > end:
            raise MalformedMessage(f"text of {arg} bytes exceeds the remaining {end - after}")
        try:
            value = data[after:stop].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage(f"text is not valid UTF-8 (offset {after})") from None
        if (ftype.printable_ascii and not (value.isascii() and value.isprintable())) or (
            ftype.choices is not None and value not in ftype.choices
        ):
            ftype.check(value, _path(path))  # raises, naming the problem
        return value, stop
    if kind is ListOf:
        major, arg, after = _head(data, pos, end)
        if major != 4:
            raise SchemaError(f"{_path(path)}: expected list, got {_type_name(major, arg)}")
        if arg > ftype.max_len:
            raise SchemaError(f"{_path(path)}: more than {ftype.max_len} items")
        if arg > end - after:
            raise MalformedMessage(f"array of {arg} items cannot fit in the remaining {end - after} bytes")
        if depth >= MAX_NESTING:
            raise MalformedMessage("nested too deeply")
        item = ftype.item
        items = []
        append = items.append
        pos = after
        if type(item) is UInt:
            # Uids and weights: the canonical forms of 0-65535 read inline, anything else by _field.
            top = item.max
            for i in range(arg):
                initial = data[pos] if pos < end else -1
                if 0 <= initial < 0x18:
                    append(initial)
                    pos += 1
                elif initial == 0x18 and pos + 2 <= end and 24 <= data[pos + 1] <= top:
                    append(data[pos + 1])
                    pos += 2
                elif initial == 0x19 and pos + 3 <= end and 0x100 <= (value := (data[pos + 1] << 8) | data[pos + 2]) <= top:
                    append(value)
                    pos += 3
                else:
                    value, pos = _field(item, data, pos, end, depth + 1, (path, i))
                    append(value)
            return tuple(items), pos
        for i in range(arg):
            value, pos = _field(item, data, pos, end, depth + 1, (path, i))
            append(value)
        return tuple(items), pos
    if kind is Bool:
        major, arg, after = _head(data, pos, end)
        if major == 7 and arg != 22:
            return arg == 21, after
        raise SchemaError(f"{_path(path)}: expected bool, got {_type_name(major, arg)}")
    # A field type of another kind: read it generically (bounded by the container rules) and let
    # the type check it.
    value, after = _item(data, pos, end, depth)
    return ftype.check(value, _path(path)), after


def decode(cls: type[T], data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Decode `data` as exactly one canonical `cls`; raises MalformedMessage."""
    _check_message(data, max_bytes)
    if cls not in _KNOWN_SCHEMAS:
        _learn_keys(cls)
    end = len(data)
    try:
        obj, pos = _struct(cls, data, 0, end, 0, cls.__name__)
    except SchemaError as exc:
        raise MalformedMessage(str(exc)) from None
    if pos != end:
        raise MalformedMessage(f"{end - pos} trailing bytes after the item")
    return obj
