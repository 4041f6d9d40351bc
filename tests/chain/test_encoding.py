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


def test_map_key_order_does_not_change_bytes() -> None:
    assert encode({"b": 1, "a": 2, "aa": 3}) == encode({"aa": 3, "a": 2, "b": 1})
