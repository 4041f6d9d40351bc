"""Addresses: the checksummed text form of a 32-byte ed25519 public key.

An address is bech32m (BIP-350) with the human-readable prefix ``p2p``::

    p2p1 <52 data characters: the key, 5 bits each, zero-padded> <6 checksum characters>

so every address is exactly 62 characters and starts with ``p2p1``. Why bech32m: its BCH checksum
is guaranteed to detect any error in up to 4 characters (so every typo, swapped pair or misread
character is caught, not just most of them), its alphabet leaves out the look-alikes ``1 b i o``,
and a single case lets it go through QR codes and voice without loss. bech32m rather than the
original bech32 because bech32 has a known weakness (inserting or deleting ``q`` before a final
``p`` can keep the checksum valid); with our fixed length that would be caught anyway, but there is
no reason to start on the weaker constant.

The key is encoded bare (no key-type or version character): the prefix names the kind of key, and
a future key type would get a prefix of its own.

Parsing is strict. :func:`decode_address` accepts exactly what :func:`encode_address` produces
(plus its all-uppercase form, which bech32 defines as equivalent) and raises :class:`AddressError`
with the reason for anything else: a wrong type, a character outside printable ASCII, mixed case, a
missing separator, a wrong prefix, a wrong length, a character outside the bech32 alphabet, a bad
checksum (an original-bech32 checksum is named as such), or non-zero padding bits.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

from p2pnode.chain.errors import ChainError

__all__ = [
    "ADDRESS_LENGTH",
    "ADDRESS_PREFIX",
    "PUBLIC_KEY_LENGTH",
    "AddressError",
    "decode_address",
    "encode_address",
    "is_address",
]

ADDRESS_PREFIX = "p2p"
"""The human-readable part: every address starts with ``p2p1``."""

PUBLIC_KEY_LENGTH = 32
"""Bytes in an ed25519 public key."""

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHAR_VALUE = {char: value for value, char in enumerate(_CHARSET)}
_SEPARATOR = "1"
_CHECKSUM_LENGTH = 6
_BECH32M_CONSTANT = 0x2BC830A3
_BECH32_CONSTANT = 1
_DATA_LENGTH = (PUBLIC_KEY_LENGTH * 8 + 4) // 5  # 52 five-bit groups carry 256 bits (+4 padding)

ADDRESS_LENGTH = len(ADDRESS_PREFIX) + len(_SEPARATOR) + _DATA_LENGTH + _CHECKSUM_LENGTH
"""Characters in every address (62)."""


class AddressError(ChainError, ValueError):
    """A string is not a valid address, or bytes are not a valid public key; the message says why."""


def _generator_xor(top: int) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    out = 0
    for bit in range(5):
        if (top >> bit) & 1:
            out ^= generator[bit]
    return out


# The generators each value of the top 5 bits XORs in: one lookup per value instead of a loop over
# its bits (a genesis of 100,000 accounts decodes 100,000 addresses at every start).
_GENERATOR_XOR = tuple(_generator_xor(top) for top in range(32))


def _polymod(values: list[int]) -> int:
    """The BCH checksum polynomial of BIP-173, over 5-bit values."""
    table = _GENERATOR_XOR
    checksum = 1
    for value in values:
        checksum = ((checksum & 0x1FFFFFF) << 5 ^ value) ^ table[checksum >> 25]
    return checksum


def _expand_prefix(prefix: str) -> list[int]:
    return [ord(char) >> 5 for char in prefix] + [0] + [ord(char) & 31 for char in prefix]


_EXPANDED_PREFIX = _expand_prefix(ADDRESS_PREFIX)


def _checksum(data: list[int]) -> list[int]:
    polymod = _polymod(_EXPANDED_PREFIX + data + [0] * _CHECKSUM_LENGTH) ^ _BECH32M_CONSTANT
    return [(polymod >> 5 * (5 - index)) & 31 for index in range(_CHECKSUM_LENGTH)]


def _to_five_bit_groups(data: bytes) -> list[int]:
    number = int.from_bytes(data, "big") << (_DATA_LENGTH * 5 - len(data) * 8)
    return [(number >> 5 * (_DATA_LENGTH - 1 - index)) & 31 for index in range(_DATA_LENGTH)]


def encode_address(public_key: bytes) -> str:
    """The address of a 32-byte ed25519 public key (lowercase, 62 characters).

    Raises:
        AddressError: `public_key` is not 32 bytes.
    """
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise AddressError(f"public key must be bytes, not {type(public_key).__name__}")
    key = bytes(public_key)
    if len(key) != PUBLIC_KEY_LENGTH:
        raise AddressError(f"public key must be {PUBLIC_KEY_LENGTH} bytes, not {len(key)}")
    data = _to_five_bit_groups(key)
    return ADDRESS_PREFIX + _SEPARATOR + "".join(_CHARSET[value] for value in data + _checksum(data))


def decode_address(text: str) -> bytes:
    """The 32-byte public key that an address encodes.

    Raises:
        AddressError: `text` is not a valid address; the message gives the first reason found.
    """
    if not isinstance(text, str):
        raise AddressError(f"address must be a string, not {type(text).__name__}")
    # A length bound first, so that a huge input costs nothing more than this check.
    if len(text) > 2 * ADDRESS_LENGTH:
        raise AddressError(f"wrong length: {len(text)} characters, expected {ADDRESS_LENGTH}")
    # Printable ASCII without space (33..126); the loop only runs to name the bad character.
    if not (text.isascii() and text.isprintable()) or " " in text:
        for position, char in enumerate(text):
            if not 33 <= ord(char) <= 126:
                raise AddressError(f"bad character {char!r} at position {position}")
    lower = text.lower()
    if text != lower and text != text.upper():
        raise AddressError("mixed case")
    separator = lower.rfind(_SEPARATOR)
    if separator < 0:
        raise AddressError(
            f"no separator {_SEPARATOR!r}: expected an address starting with {ADDRESS_PREFIX + _SEPARATOR!r}"
        )
    if lower[:separator] != ADDRESS_PREFIX:
        raise AddressError(f"wrong prefix {text[:separator]!r}, expected {ADDRESS_PREFIX!r}")
    if len(text) != ADDRESS_LENGTH:
        raise AddressError(f"wrong length: {len(text)} characters, expected {ADDRESS_LENGTH}")
    values = [_CHAR_VALUE.get(char, -1) for char in lower[separator + 1 :]]
    if -1 in values:
        position = separator + 1 + values.index(-1)
        raise AddressError(
            f"bad character {text[position]!r} at position {position} (not in the bech32 alphabet)"
        )
    polymod = _polymod(_EXPANDED_PREFIX + values)
    if polymod != _BECH32M_CONSTANT:
        if polymod == _BECH32_CONSTANT:
            raise AddressError("bad checksum: a bech32 checksum where bech32m is required")
        raise AddressError("bad checksum: the address has a typo or was altered")
    data = values[:-_CHECKSUM_LENGTH]
    number = 0
    for value in data:
        number = number << 5 | value
    padding_bits = _DATA_LENGTH * 5 - PUBLIC_KEY_LENGTH * 8
    if number & ((1 << padding_bits) - 1):
        raise AddressError("non-zero padding bits (not a canonical encoding)")
    return (number >> padding_bits).to_bytes(PUBLIC_KEY_LENGTH, "big")


def is_address(text: object) -> bool:
    """Whether `text` is a valid address (for validation that only needs a yes or no)."""
    try:
        decode_address(text)  # type: ignore[arg-type]
    except AddressError:
        return False
    return True
