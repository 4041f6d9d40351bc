"""Addresses: bech32m text form of ed25519 public keys, parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.chain.address import (
    ADDRESS_LENGTH,
    ADDRESS_PREFIX,
    AddressError,
    decode_address,
    encode_address,
    is_address,
)

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
public_keys = st.binary(min_size=32, max_size=32)


def bech32m_polymod_ok(text: str) -> bool:
    """An independent check of the bech32m checksum (BIP-350 reference algorithm)."""
    text = text.lower()
    separator = text.rfind("1")
    prefix, data = text[:separator], [CHARSET.index(char) for char in text[separator + 1 :]]
    values = [ord(char) >> 5 for char in prefix] + [0] + [ord(char) & 31 for char in prefix] + data
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            checksum ^= generator if (top >> bit) & 1 else 0
    return checksum == 0x2BC830A3


def with_char(text: str, position: int, char: str) -> str:
    return text[:position] + char + text[position + 1 :]


def test_known_vectors() -> None:
    # Pinned so that the text form can never change silently: addresses are user-facing data.
    assert encode_address(bytes(32)) == "p2p1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqedn5zt"
    assert encode_address(b"\xff" * 32) == "p2p1lllllllllllllllllllllllllllllllllllllllllllllllllllsmns9tu"
    assert decode_address("p2p1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqedn5zt") == bytes(32)


@given(public_keys)
def test_round_trip(public_key: bytes) -> None:
    address = encode_address(public_key)
    assert len(address) == ADDRESS_LENGTH == 62
    assert address.startswith(ADDRESS_PREFIX + "1")
    assert address == address.lower()
    assert bech32m_polymod_ok(address)
    assert decode_address(address) == public_key
    # bech32 defines the all-uppercase form as the same string (QR codes use it).
    assert decode_address(address.upper()) == public_key
    assert is_address(address)


@settings(max_examples=300)
@given(public_keys, st.data())
def test_every_single_character_substitution_is_detected(public_key: bytes, data: st.DataObject) -> None:
    address = encode_address(public_key)
    position = data.draw(st.integers(0, len(address) - 1), label="position")
    replacement = data.draw(
        st.one_of(st.sampled_from(CHARSET + "1bio" + ADDRESS_PREFIX.upper()), st.characters()).filter(
            lambda char: char != address[position]
        ),
        label="replacement",
    )
    with pytest.raises(AddressError):
        decode_address(with_char(address, position, replacement))


def test_every_substitution_in_the_data_part_is_a_checksum_error() -> None:
    # Exhaustive for one key: each of the 58 data positions, each of the 31 other alphabet characters.
    address = encode_address(bytes(range(32)))
    for position in range(len(ADDRESS_PREFIX) + 1, len(address)):
        for char in CHARSET:
            if char != address[position]:
                with pytest.raises(AddressError, match="bad checksum|non-zero padding"):
                    decode_address(with_char(address, position, char))


@given(public_keys, st.data())
def test_adjacent_transpositions_are_detected(public_key: bytes, data: st.DataObject) -> None:
    address = encode_address(public_key)
    position = data.draw(st.integers(0, len(address) - 2))
    swapped = address[:position] + address[position + 1] + address[position] + address[position + 2 :]
    if swapped != address:
        with pytest.raises(AddressError):
            decode_address(swapped)


@given(public_keys, st.data())
def test_insertions_and_deletions_are_detected(public_key: bytes, data: st.DataObject) -> None:
    address = encode_address(public_key)
    position = data.draw(st.integers(0, len(address) - 1))
    with pytest.raises(AddressError):
        decode_address(address[:position] + address[position + 1 :])
    with pytest.raises(AddressError):
        decode_address(address[:position] + data.draw(st.sampled_from(CHARSET)) + address[position:])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda a: "btc" + a[3:], "wrong prefix 'btc'"),
        (lambda a: "p2q" + a[3:], "wrong prefix"),
        (lambda a: "xp2p" + a[3:], "wrong prefix"),
        (lambda a: a.replace("1", "", 1), "no separator|wrong prefix"),
        (lambda a: a[:-1], "wrong length: 61"),
        (lambda a: a + "q", "wrong length: 63"),
        (lambda a: a[:20], "wrong length"),
        (lambda a: a * 3, "wrong length"),
        (lambda a: "", "no separator"),
        (lambda a: a[:10] + "B" + a[11:], "mixed case"),
        (lambda a: a[:10].upper() + a[10:], "mixed case"),
        (lambda a: a[:10] + "b" + a[11:], "bad character 'b' at position 10"),
        (lambda a: a[:10] + "o" + a[11:], "bad character 'o'"),
        (lambda a: a[:10] + "i" + a[11:], "bad character 'i'"),
        (lambda a: a[:10] + " " + a[11:], "bad character ' '"),
        (lambda a: " " + a, "bad character ' ' at position 0"),
        (lambda a: a + "\n", "bad character"),
        (lambda a: a[:10] + "\u00e9" + a[11:], "bad character"),
        (lambda a: a[:10] + "\x00" + a[11:], "bad character"),
        (lambda a: a[:-1] + ("q" if a[-1] != "q" else "p"), "bad checksum"),
    ],
)
def test_corruptions_are_rejected_with_a_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    address = encode_address(bytes(range(32)))
    with pytest.raises(AddressError, match=reason):
        decode_address(mutate(address))
    assert not is_address(mutate(address))


def bech32_encode_raw(values: list[int], constant: int) -> str:
    """Encode 5-bit `values` with prefix p2p and the checksum constant given (1: bech32, else bech32m)."""
    prefix_values = [ord(c) >> 5 for c in ADDRESS_PREFIX] + [0] + [ord(c) & 31 for c in ADDRESS_PREFIX]
    checksum = 1
    for value in prefix_values + values + [0] * 6:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            checksum ^= generator if (top >> bit) & 1 else 0
    checksum ^= constant
    tail = [(checksum >> 5 * (5 - index)) & 31 for index in range(6)]
    return ADDRESS_PREFIX + "1" + "".join(CHARSET[value] for value in values + tail)


def test_a_bech32_checksum_is_named_and_rejected() -> None:
    values = [CHARSET.index(char) for char in encode_address(bytes(range(32)))[4:-6]]
    with pytest.raises(AddressError, match="bech32 checksum where bech32m is required"):
        decode_address(bech32_encode_raw(values, constant=1))


def test_non_zero_padding_bits_are_rejected() -> None:
    # The last of the 52 data characters carries 1 key bit and 4 padding bits; set a padding bit
    # and give it a valid checksum, so only the padding rule can reject it.
    values = [CHARSET.index(char) for char in encode_address(bytes(32))[4:-6]]
    values[-1] |= 0b00001
    forged = bech32_encode_raw(values, constant=0x2BC830A3)
    assert bech32m_polymod_ok(forged)
    with pytest.raises(AddressError, match="non-zero padding bits"):
        decode_address(forged)


@pytest.mark.parametrize("value", [None, 42, b"p2p1qqqq", ["p2p1"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(AddressError, match="must be a string"):
        decode_address(value)  # type: ignore[arg-type]
    assert not is_address(value)


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), bytes(64)])
def test_encode_rejects_wrong_key_lengths(key: bytes) -> None:
    with pytest.raises(AddressError, match="must be 32 bytes"):
        encode_address(key)


def test_encode_rejects_non_bytes() -> None:
    with pytest.raises(AddressError, match="must be bytes"):
        encode_address("00" * 32)  # type: ignore[arg-type]


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


def test_module_is_pure() -> None:
    # The chain layer is stdlib-only and does no I/O (DEVELOPERS.md).
    import ast
    from pathlib import Path

    import p2pnode.chain.address as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= {"__future__", "p2pnode"}  # p2pnode.chain.errors, for the exception root
