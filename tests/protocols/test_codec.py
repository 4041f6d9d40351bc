"""The strict codec: canonical round trips, and nothing but MalformedMessage on bad bytes."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.chain import types as t
from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import ENCODED_ATTR, to_plain
from p2pnode.testing.factories import signed, user_keys
from protocols import codec
from protocols.codec import MalformedMessage

KEY = user_keys(1)[0]
b32 = st.binary(min_size=32, max_size=32)
u16 = st.integers(0, 65535)
u64 = st.integers(0, 2**64 - 1)
height = st.integers(0, 2**63 - 1)
text = st.text(max_size=16)  # at most 64 bytes of UTF-8
chain_id = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)

checkpoint = st.builds(t.Checkpoint, epoch=height, height=height, hash=b32)
vote = st.builds(t.FinalityVote, chain=chain_id, validator=b32, source=checkpoint, target=checkpoint)
signed_vote = st.builds(t.SignedVote, vote=vote, sig=st.binary(min_size=64, max_size=64))
header = st.builds(
    t.Header, chain=chain_id, version=st.integers(0, 2**32 - 1), height=height, slot=height, parent=b32, proposer=b32,
    state_root=b32, tx_root=b32, timestamp_ms=u64, randao_reveal=st.binary(min_size=64, max_size=64),
)
signed_header = st.builds(t.SignedHeader, header=header, sig=st.binary(min_size=64, max_size=64))
weights = st.lists(st.tuples(u16, u16), max_size=8)
bodies = st.one_of(
    st.builds(t.Transfer, to=b32, amount=u64),
    st.builds(t.AddStake, hotkey=b32, amount=u64),
    st.builds(t.RemoveStake, hotkey=b32, amount=u64),
    st.builds(t.SetTake, hotkey=b32, take=u16),
    st.builds(t.Register, netuid=u16, hotkey=b32, max_burn=u64),
    st.builds(t.Serve, netuid=u16, peer_id=text, model=text),
    weights.map(lambda w: t.SetWeights(netuid=1, uids=tuple(u for u, _ in w), values=tuple(v for _, v in w), version_key=0)),
    st.builds(t.CommitWeights, netuid=u16, commit_hash=b32),
    weights.map(lambda w: t.RevealWeights(netuid=2, uids=tuple(u for u, _ in w), values=tuple(v for _, v in w), salt=b"s", version_key=1)),
    st.builds(t.CreateSubnet, hotkey=b32, task=text, max_lock=u64),
    st.builds(t.SetHyperparameter, netuid=u16, name=text, value=u64),
    st.builds(t.Propose, action=st.sampled_from(sorted(t.PROPOSAL_ACTIONS)), param=text, value=u64,
              owner=st.binary(max_size=32), task=text, version=st.integers(0, 2**32 - 1), activation_height=height, text=text),
    st.builds(t.GovVote, proposal=u64, choice=st.sampled_from(sorted(t.VOTE_CHOICES))),
    st.builds(t.SlashDoubleProposal, first=signed_header, second=signed_header),
    st.builds(t.SlashVote, first=signed_vote, second=signed_vote),
)
signed_tx = st.builds(
    lambda body, nonce, fee, sig: t.SignedTx(tx=t.make_tx("c", KEY.public_key, nonce, fee, body), sig=sig),
    bodies, u64, u64, st.binary(min_size=64, max_size=64),
)
block = st.builds(t.Block, header=header, sig=st.binary(min_size=64, max_size=64),
                  txs=st.lists(signed_tx, max_size=3).map(tuple), votes=st.lists(signed_vote, max_size=3).map(tuple))


@settings(max_examples=150, deadline=None)
@given(block)
def test_every_object_round_trips(obj: t.Block) -> None:
    data = codec.encode(obj)
    assert codec.decode(t.Block, data) == obj
    assert codec.encode_fields(codec.decode(t.Block, data)) == data


@settings(max_examples=100, deadline=None)
@given(block)
def test_decoded_objects_keep_the_bytes_they_were_read_from(obj: t.Block) -> None:
    data = codec.encode_fields(obj)
    decoded = codec.decode(t.Block, data)
    assert decoded.__dict__[ENCODED_ATTR] is data  # the block's own bytes, not a copy
    kept = [decoded.header, *decoded.txs, *(s.tx for s in decoded.txs), *decoded.votes, *(v.vote for v in decoded.votes)]
    for item in kept:
        assert item.__dict__[ENCODED_ATTR] == codec.encode_fields(item)
    # Hashes, ids and signing bytes read from the kept bytes equal those of the objects encoded.
    assert decoded.hash == obj.hash and decoded.header.signing_bytes() == obj.header.signing_bytes()
    assert [s.id for s in decoded.txs] == [s.id for s in obj.txs]
    assert [s.tx.signing_bytes() for s in decoded.txs] == [s.tx.signing_bytes() for s in obj.txs]
    assert [v.id for v in decoded.votes] == [v.id for v in obj.votes]
    assert [v.vote.signing_bytes() for v in decoded.votes] == [v.vote.signing_bytes() for v in obj.votes]
    assert t.body_root(decoded.txs, decoded.votes) == t.body_root(obj.txs, obj.votes)


def test_an_encoding_is_memoised_per_object_never_shared() -> None:
    stx = signed(KEY, 0, t.Transfer(to=bytes(32), amount=1))
    first = codec.encode(stx)
    assert codec.encode(stx) is first  # encoded once
    other = dataclasses.replace(stx, tx=dataclasses.replace(stx.tx, nonce=1))
    assert codec.encode(other) != first and other.id != stx.id
    assert other == codec.decode(t.SignedTx, codec.encode(other))  # equality ignores the memo
    assert hash(codec.decode(t.SignedTx, first)) == hash(stx)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_malformed(data: bytes) -> None:
    for cls in (t.Block, t.SignedTx, t.SignedVote):
        try:
            codec.decode(cls, data)
        except MalformedMessage:
            pass


@settings(max_examples=300, deadline=None)
@given(signed_tx, st.data())
def test_mutated_encodings_only_raise_malformed(obj: t.SignedTx, data: st.DataObject) -> None:
    raw = bytearray(codec.encode(obj))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = codec.decode(t.SignedTx, bytes(raw))
    except MalformedMessage:
        return
    assert codec.encode_fields(decoded) == bytes(raw)  # whatever is accepted is canonical


def _tx_plain() -> dict:
    return to_plain(signed(KEY, 0, t.Transfer(to=bytes(32), amount=1)))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p["tx"].update(extra=1), "unknown fields"),
        (lambda p: p["tx"].pop("fee"), "missing fields"),
        (lambda p: p["tx"].update(fee="1"), "expected u64"),
        (lambda p: p["tx"].update(fee=-1), "u64 out of range"),
        (lambda p: p["tx"]["body"].update(to=b"short"), "expected 32 bytes"),
        (lambda p: p["tx"].update(kind="mint"), "is not one of"),
        (lambda p: p.update(sig=b"x"), "expected 64 bytes"),
    ],
)
def test_schema_violations_name_the_field(mutate, reason: str) -> None:
    plain = _tx_plain()
    mutate(plain)
    with pytest.raises(MalformedMessage, match=reason):
        codec.decode(t.SignedTx, canonical_encode(plain))


def test_non_canonical_forms_are_rejected() -> None:
    plain = _tx_plain()
    canonical = canonical_encode(plain)
    assert codec.decode(t.SignedTx, canonical)
    # unsorted keys (insertion order, not canonical order)
    unsorted = cbor2.dumps({"tx": plain["tx"], "sig": plain["sig"]})
    assert unsorted != canonical
    with pytest.raises(MalformedMessage, match="canonical"):
        codec.decode(t.SignedTx, unsorted)
    # integer in a longer form than needed: 1000 as a 64-bit argument
    long_int = canonical.replace(b"\x19\x03\xe8", b"\x1b" + (1000).to_bytes(8, "big"), 1)
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, long_int)
    # duplicate map key: {"sig": x, "sig": x, "tx": ...} built by hand
    dup = b"\xa3" + canonical_encode("sig") + canonical_encode(plain["sig"]) + canonical[1:]
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, dup)
    # indefinite-length map
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, b"\xbf" + canonical[1:] + b"\xff")
    # a float where an integer belongs
    plain["tx"]["fee"] = 1.0
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, cbor2.dumps(plain, canonical=True))


def test_integers_beyond_u64_are_rejected() -> None:
    plain = _tx_plain()
    plain["tx"]["fee"] = 2**64  # cbor2 writes a bignum tag
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, cbor2.dumps(plain, canonical=True))


def test_oversized_input_is_rejected_before_parsing() -> None:
    data = codec.encode(signed(KEY, 0, t.Transfer(to=bytes(32), amount=1)))
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        codec.decode(t.SignedTx, data, max_bytes=len(data) - 1)


def test_deep_nesting_is_rejected() -> None:
    nested = b"\x81" * 100_000 + b"\x00"
    with pytest.raises(MalformedMessage):
        codec.decode(t.SignedTx, nested)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc4\x82\x21\xc2\x41\x01", "tags are not allowed"),  # decimal fraction (tag 4)
        (b"\xc2\x41\x01", "tags are not allowed"),  # bignum
        (b"\xf9\x3c\x00", "floats are not allowed"),
        (b"\xfb" + bytes(8), "floats are not allowed"),
        (b"\xf7", "simple value 23"),  # undefined
        (b"\xf8\x20", "simple value 24"),
        (b"\x9f\x00\xff", "indefinite lengths"),
        (b"\x7f\x60\xff", "indefinite lengths"),
        (b"\x1c", "reserved"),
        (b"\x18\x17", "non-minimal"),
        (b"\x82\x18\x01\x00", "non-minimal"),  # inside an array (inline path)
        (b"\x81\x19\x00\xff", "non-minimal"),
        (b"\x1b" + (5).to_bytes(8, "big"), "non-minimal"),
        (b"\x5b" + (1 << 62).to_bytes(8, "big"), "exceeds the remaining"),
        (b"\x7a\xff\xff\xff\xff" + b"a", "exceeds the remaining"),
        (b"\x9b" + (1 << 62).to_bytes(8, "big"), "cannot fit"),
        (b"\xba\x00\x01\x00\x01" + b"\x00" * 300_000, "cannot fit"),  # more entries than allowed
        (b"\xa1\x01\x02", "map keys must be text"),
        (b"\xa2\x61b\x00\x61a\x00", "out of order"),
        (b"\xa2\x61a\x00\x61a\x00", "duplicated"),
        (b"\x62\xc3\x28", "not valid UTF-8"),
        (b"\x63\xed\xa0\x80", "not valid UTF-8"),  # an encoded surrogate
        (b"\x00\x00", "trailing bytes"),
        (b"\x82\x19\x01\x00", "truncated"),
        (b"\x19\x01", "truncated"),
    ],
)
def test_strict_decoder_refuses_what_the_schemas_never_use(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        codec.decode_plain(data)


def test_strict_decoder_admits_the_plain_data_model() -> None:
    value = {"a": [0, 23, 24, 255, 256, 65535, 65536, 2**32, 2**64 - 1, -1, -(2**64)], "b": b"\x00" * 300,
             "c": "é€😀", "d": [True, False, None], "e": {}}
    data = canonical_encode(value)
    assert codec.decode_plain(data) == value
    assert cbor2.loads(data) == value  # the same reading as a general decoder


def test_chain_ids_are_printable_ascii_within_the_signed_length_byte() -> None:
    wide = "\U0001f600" * 64  # 64 characters, 256 bytes of UTF-8
    stx = signed(KEY, 0, t.Transfer(to=bytes(32), amount=1))
    plain = to_plain(stx)
    for bad in (wide, "é", "a\nb", "x" * 65):
        plain["tx"]["chain"] = bad
        with pytest.raises(MalformedMessage, match="chain"):
            codec.decode(t.SignedTx, canonical_encode(plain))
        with pytest.raises(t.BadChainId):
            t.signing_message(t.DOMAIN_TX, bad, b"")
    assert t.signing_message(t.DOMAIN_TX, "x" * 64, b"")[len(t.DOMAIN_TX)] == 64


def test_text_is_bounded_in_bytes() -> None:
    plain = to_plain(signed(KEY, 0, t.Serve(netuid=1, peer_id="p", model="m")))
    plain["tx"]["body"]["model"] = "é" * 65  # 65 characters, 130 bytes
    with pytest.raises(MalformedMessage, match="longer than 128 bytes"):
        codec.decode(t.SignedTx, canonical_encode(plain))


def test_heights_and_slots_stay_below_two_to_the_63() -> None:
    from protocols import sync

    header = dict(chain="dev", version=1, height=1, slot=1, parent=bytes(32), proposer=bytes(32),
                  state_root=bytes(32), tx_root=bytes(32), timestamp_ms=0, randao_reveal=bytes(64))
    block = {"header": header, "sig": bytes(64), "txs": [], "votes": []}
    assert codec.decode(t.Block, canonical_encode(block)).header.height == 1
    for field in ("height", "slot"):
        for value in (2**63, 2**64 - 1):
            bad = {**block, "header": {**header, field: value}}
            with pytest.raises(MalformedMessage, match=f"header.{field}: u63 out of range"):
                codec.decode(t.Block, canonical_encode(bad))
    with pytest.raises(MalformedMessage, match="start"):
        sync.handle_blocks_by_range(canonical_encode({"start": 2**63, "count": 4}), lambda s, c: [])
    asked = []
    sync.handle_blocks_by_range(canonical_encode({"start": 2**63 - 2, "count": 64}),
                                lambda s, c: asked.append((s, c)) or [])
    assert asked == [(2**63 - 2, 1)]  # start + count never leaves the height range


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=300) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=30), inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None)
@given(plain_values)
def test_strict_decoder_reads_back_every_canonical_encoding(value: object) -> None:
    assert codec.decode_plain(canonical_encode(value)) == value


@settings(max_examples=200, deadline=None)
@given(plain_values, st.data())
def test_strict_decoder_agrees_with_a_general_decoder_on_what_it_accepts(value: object, data: st.DataObject) -> None:
    raw = bytearray(canonical_encode(value))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = codec.decode_plain(bytes(raw))
    except MalformedMessage:
        return
    # Whatever it accepts, a general decoder reads the same way, and it is canonical.
    assert cbor2.loads(bytes(raw)) == decoded
    assert canonical_encode(decoded) == bytes(raw)


def _reference_decode(cls: type, data: bytes) -> object:
    """Decoding in two steps, generic then schema: what `codec.decode` does in one pass."""
    from p2pnode.chain.schema import SchemaError, from_plain

    try:
        return from_plain(cls, codec.decode_plain(data))
    except (MalformedMessage, SchemaError):
        return MalformedMessage


@settings(max_examples=300, deadline=None)
@given(block, st.data())
def test_decoding_into_the_schema_agrees_with_decoding_then_checking(obj: t.Block, data: st.DataObject) -> None:
    raw = bytearray(codec.encode(obj))
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    for cls in (t.Block, t.SignedTx, t.Header):
        try:
            got: object = codec.decode(cls, bytes(raw))
        except MalformedMessage:
            got = MalformedMessage
        assert got == _reference_decode(cls, bytes(raw))
