"""Canonical CBOR (RFC 8949 §4.2.1 deterministic encoding) in pure Python, and sha256 ids.

The chain hashes and signs these bytes, so this encoder is the single source of truth for
canonical form. `protocols.codec` decodes untrusted bytes and compares them with `encode` of the
result, so any non-canonical input (long-form integers, unsorted or duplicate keys, indefinite
lengths, floats, tags) is rejected there.

Supported values: int, bytes, str, list/tuple, dict (keys sorted by their encoded bytes), bool, None.
`decode` is a fast decoder for trusted bytes this node wrote itself (state values).
"""

from __future__ import annotations

import hashlib
from typing import Any

from p2pnode.chain.errors import ChainError

MAX_UINT64 = (1 << 64) - 1

_BOOL_NONE = {False: b"\xf4", True: b"\xf5"}
# The only simple values (major type 7) canonical encoding uses: additional information -> value.
SIMPLE_VALUES: dict[int, bool | None] = {20: False, 21: True, 22: None}
_KEY_CACHE: dict[str, bytes] = {}  # encoded text map keys (field names repeat endlessly)


_SMALL_HEADS = [[bytes((major << 5 | v,)) for v in range(24)] for major in range(8)]


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return _SMALL_HEADS[major][value]
    if value < 24:
        return bytes((major << 5 | value,))
    if value < 0x100:
        return bytes((major << 5 | 24, value))
    if value < 0x10000:
        return bytes((major << 5 | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((major << 5 | 26,)) + value.to_bytes(4, "big")
    if value <= MAX_UINT64:
        return bytes((major << 5 | 27,)) + value.to_bytes(8, "big")
    raise ValueError(f"integer out of CBOR range: {value}")


def _encode_into(obj: Any, out: list[bytes]) -> None:
    t = type(obj)
    if t is int:
        if obj >= 0:
            out.append(_head(0, obj))
        else:
            out.append(_head(1, -1 - obj))
    elif t is bytes:
        out.append(_head(2, len(obj)))
        out.append(obj)
    elif t is str:
        raw = obj.encode("utf-8")
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif t is list or t is tuple:
        out.append(_head(4, len(obj)))
        for item in obj:
            _encode_into(item, out)
    elif t is dict:
        cache = _KEY_CACHE
        items = []
        for k, v in obj.items():
            kb = cache.get(k) if type(k) is str else None
            if kb is None:
                kb = encode(k)
                if type(k) is str and len(cache) < 4096:
                    cache[k] = kb
            items.append((kb, v))
        items.sort()
        out.append(_head(5, len(items)))
        for key_bytes, value in items:
            out.append(key_bytes)
            _encode_into(value, out)
    elif t is bool:
        out.append(_BOOL_NONE[obj])
    elif obj is None:
        out.append(b"\xf6")
    else:
        raise TypeError(f"cannot encode {t.__name__} canonically")


def encode(obj: Any) -> bytes:
    """Canonical CBOR bytes of `obj`."""
    t = type(obj)
    # The commonest state values, straight to bytes: counters, and pairs of unsigned integers
    # (an account is [balance, nonce]). `_head` refuses what exceeds 64 bits.
    if t is int and obj >= 0:
        return _head(0, obj)
    if t is list and len(obj) == 2:
        first, second = obj
        if type(first) is int and type(second) is int and first >= 0 and second >= 0:
            return b"\x82" + _head(0, first) + _head(0, second)
    out: list[bytes] = []
    _encode_into(obj, out)
    return b"".join(out)


class DecodeError(ChainError, ValueError):
    """Trusted bytes did not decode (a bug or a corrupted store)."""


def decode(data: bytes) -> Any:
    """Decode canonical CBOR written by `encode` (trusted input; see protocols.codec for untrusted)."""
    if data[:1] == b"\x82" and len(data) > 2:
        # A pair of unsigned integers (an account), read inline.
        initial = data[1]
        if initial < 24:
            first, pos = initial, 2
        elif initial <= 27:
            pos = 2 + (1 << (initial - 24))
            first = int.from_bytes(data[2:pos], "big")
        else:
            pos = 0
        if 0 < pos < len(data):
            initial = data[pos]
            if initial < 24 and pos + 1 == len(data):
                return [first, initial]
            if 24 <= initial <= 27 and pos + 1 + (1 << (initial - 24)) == len(data):
                return [first, int.from_bytes(data[pos + 1 :], "big")]
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise DecodeError("trailing bytes")
    return value


def _decode_at(data: bytes, pos: int) -> tuple[Any, int]:
    try:
        initial = data[pos]
    except IndexError:
        raise DecodeError("truncated") from None
    major, info = initial >> 5, initial & 31
    pos += 1
    if major == 7:
        if info in SIMPLE_VALUES:
            return SIMPLE_VALUES[info], pos
        raise DecodeError(f"unsupported simple value {info}")
    if info < 24:
        arg = info
    elif info <= 27:
        size = 1 << (info - 24)
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise DecodeError("indefinite lengths are not canonical")
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        if pos + arg > len(data):
            raise DecodeError("truncated bytes")
        return data[pos : pos + arg], pos + arg
    if major == 3:
        if pos + arg > len(data):
            raise DecodeError("truncated text")
        return data[pos : pos + arg].decode("utf-8"), pos + arg
    if major == 4:
        items: list[Any] = []
        append = items.append
        for _ in range(arg):
            # Unsigned integers (most list items in state: balances, stakes, uids) read inline.
            try:
                initial = data[pos]
            except IndexError:
                raise DecodeError("truncated") from None
            if initial < 24:
                append(initial)
                pos += 1
            elif initial <= 27:
                size = 1 << (initial - 24)
                append(int.from_bytes(data[pos + 1 : pos + 1 + size], "big"))
                pos += 1 + size
            else:
                item, pos = _decode_at(data, pos)
                append(item)
        return items, pos
    if major == 5:
        mapping = {}
        for _ in range(arg):
            key, pos = _decode_at(data, pos)
            value, pos = _decode_at(data, pos)
            mapping[key] = value
        return mapping, pos
    raise DecodeError(f"unsupported major type {major}")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
