from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.chain.encoding import decode, encode

plain = st.recursive(
    st.one_of(st.integers(-(2**64), 2**64 - 1), st.binary(max_size=40), st.text(max_size=20), st.booleans(), st.none()),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(plain)
def test_encoding_is_deterministic_cbor_and_round_trips(value: object) -> None:
    data = encode(value)
    # Text-keyed maps: RFC 8949 bytewise key order coincides with cbor2's canonical (length-first) order.
    assert data == cbor2.dumps(value, canonical=True)
    assert decode(data) == value


# Every integer width of the canonical form, at its edges (the pair and integer fast paths).
edge_ints = st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25, -(2**64)])
pair_items = st.one_of(edge_ints, st.integers(-(2**64), 2**64 - 1), st.booleans(), st.none(), st.binary(max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(pair_items, min_size=2, max_size=2), edge_ints, st.lists(edge_ints, max_size=4)))
def test_pairs_and_integers_encode_and_decode_like_everything_else(value: object) -> None:
    data = encode(value)
    assert data == cbor2.dumps(value, canonical=True)
    assert decode(data) == value and type(decode(data)) is type(value)


def test_a_truncated_pair_does_not_decode() -> None:
    data = encode([2**40, 2**40])
    for cut in range(1, len(data)):
        try:
            decoded = decode(data[:cut])
        except ValueError:
            continue
        raise AssertionError(f"{data[:cut].hex()} decoded as {decoded!r}")


def test_map_key_order_does_not_change_bytes() -> None:
    assert encode({"b": 1, "a": 2, "aa": 3}) == encode({"aa": 3, "a": 2, "b": 1})
