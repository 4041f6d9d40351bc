"""Vote pool, equivocation watch, orphan pool, and the sync messages' limits."""

from __future__ import annotations

import pytest

from p2pnode.chain.types import Block, Checkpoint, FinalityVote, Header, SignedHeader, SignedVote, body_root
from p2pnode.services.chain.sync import OrphanPool
from p2pnode.services.chain.votes import EquivocationWatch, VotePool
from p2pnode.testing.factories import DEV_CHAIN_ID, validator_keys
from protocols import codec, sync, topics

KEY = validator_keys(1)[0][1]


def vote(source: int, target: int, target_hash: bytes = b"\x01" * 32) -> SignedVote:
    v = FinalityVote(
        chain=DEV_CHAIN_ID,
        validator=KEY.public_key,
        source=Checkpoint(epoch=source, height=source * 8, hash=b"\x00" * 32),
        target=Checkpoint(epoch=target, height=target * 8, hash=target_hash),
    )
    return SignedVote(vote=v, sig=KEY.sign(v.signing_bytes()))


def header(slot: int, parent: bytes = b"\x00" * 32, stamp: int = 0, height: int = 1) -> Header:
    return Header(
        chain=DEV_CHAIN_ID,
        version=1,
        height=height,
        slot=slot,
        parent=parent,
        proposer=KEY.public_key,
        state_root=b"\x00" * 32,
        tx_root=body_root((), ()),
        timestamp_ms=stamp,
        randao_reveal=bytes(64),
    )


def test_the_watch_turns_double_and_surround_votes_into_evidence() -> None:
    watch = EquivocationWatch()
    assert watch.see_vote(vote(1, 3)) is None
    assert watch.see_vote(vote(1, 3)) is None, "the same vote again is no offence"
    double = watch.see_vote(vote(1, 3, b"\x02" * 32))
    assert double is not None and double.first == vote(1, 3)
    assert watch.see_vote(vote(3, 4)) is None
    assert watch.see_vote(vote(0, 5)) is not None, "0->5 surrounds 1->3"


def test_the_watch_catches_two_headers_for_one_slot() -> None:
    watch = EquivocationWatch()
    first = SignedHeader(header=header(7), sig=b"\x01" * 64)
    assert watch.see_header(first, 7) is None
    assert watch.see_header(first, 7) is None
    evidence = watch.see_header(SignedHeader(header=header(7, stamp=1), sig=b"\x02" * 64), 7)
    assert evidence is not None and evidence.first == first
    assert watch.see_header(SignedHeader(header=header(8, stamp=1), sig=b"\x02" * 64), 8) is None


def test_the_vote_pool_keeps_the_first_vote_per_epoch_and_forgets_old_epochs() -> None:
    pool = VotePool(keep_epochs=1)
    assert pool.add(vote(1, 3)) and not pool.add(vote(1, 3, b"\x02" * 32))
    assert pool.add(vote(3, 4))
    assert len(pool.for_inclusion(4)) == 2 and len(pool.for_inclusion(6)) == 0
    pool.prune(5)
    assert len(pool) == 1


def test_the_orphan_pool_is_bounded_and_releases_children() -> None:
    pool = OrphanPool(max_blocks=3)
    blocks = [Block(header=header(s, parent=bytes([s % 2]) * 32), sig=b"\x00" * 64, txs=(), votes=()) for s in range(1, 6)]
    for block in blocks:
        pool.add(block)
    assert len(pool) == 3
    children = pool.pop_children(b"\x01" * 32)
    assert {b.header.slot for b in children} == {3, 5}
    assert len(pool) == 1


def test_range_requests_and_responses_are_bounded() -> None:
    request = sync.encode_range_request(10, 1000)
    assert codec.decode(sync.BlocksByRangeRequest, request).count == sync.MAX_BLOCKS_PER_REQUEST
    served = sync.handle_blocks_by_range(request, lambda start, count: [bytes([start % 256]) * 10] * count)
    assert len(sync.decode_range_response(served, 64)) == 64
    with pytest.raises(codec.MalformedMessage):
        sync.decode_range_response(served, 10)
    with pytest.raises(codec.MalformedMessage):
        sync.handle_blocks_by_range(b"\xa0", lambda s, c: [])
    with pytest.raises(codec.MalformedMessage):
        sync.decode_status(b"\x00" * 600)


def test_topics_and_protocol_ids_name_the_chain() -> None:
    assert topics.topic("net-1", "blocks") == "/p2pnode/net-1/blocks/1"
    assert topics.status_protocol("net-1") == "/p2pnode/net-1/req/status/1"
    assert topics.topic("net-1", "weights") == "/p2pnode/net-1/weights/1"
    assert topics.tx_topic_kind("commit_weights") == "weights" and topics.tx_topic_kind("transfer") == "stake"
    with pytest.raises(ValueError):
        topics.topic("net-1", "txs")


def test_no_flood_of_headers_pushes_a_first_header_out_of_the_watch() -> None:
    watch = EquivocationWatch(keep_slots=256, max_headers=64)
    first = SignedHeader(header=header(300), sig=b"\x01" * 64)
    assert watch.see_header(first, 300) is None
    for slot in range(100, 400):  # many other (proposer, slot) keys, more than the cap
        watch.see_header(SignedHeader(header=header(slot, stamp=7), sig=b"\x03" * 64), 300)
    assert len(watch) == 64
    assert watch.see_header(SignedHeader(header=header(300, stamp=1), sig=b"\x02" * 64), 301) is not None
    # only old slots leave: 256 slots later the first header is gone
    assert watch.see_header(SignedHeader(header=header(300, stamp=2), sig=b"\x02" * 64), 557) is None
    assert len(watch) == 0
