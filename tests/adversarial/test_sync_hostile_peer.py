"""Issue 13 item 1: a peer that serves a block carrying a chain id of 64 four-byte characters, or
gossips a block at a height beyond SQLite's INTEGER, must not kill the node.

At c068d92 the schema bounded chain ids in characters, `signing_message` wrote their UTF-8 length
in one byte and raised OverflowError on the sync import path; heights of 2^63 and more overflowed
SQLite. Now chain ids are printable ASCII and heights, slots and epochs stay below 2^63, so both
are refused as malformed at decoding and the peer is penalised.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from p2pnode.chain import types as t
from p2pnode.chain.encoding import sha256
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import make_genesis, open_chain
from p2pnode.testing.sim import Simulation
from protocols import codec, sync, topics
from protocols.codec import MalformedMessage

WIDE_CHAIN_ID = "\U0001f600" * 64  # 64 characters, 256 bytes of UTF-8
EVIL = dev_keypair("hostile-sync-peer")


def hostile_block(chain_id: str, height: int, slot: int, parent: bytes, version: int) -> t.Block:
    """A block signed by EVIL whose one transaction names WIDE_CHAIN_ID (its signature is junk: the
    old code raised while building the bytes to verify, before looking at the signature)."""
    tx = t.Tx(chain=WIDE_CHAIN_ID, kind="transfer", sender=EVIL.public_key, nonce=0, fee=1,
              body=t.Transfer(to=bytes(32), amount=1))
    stx = t.SignedTx(tx=tx, sig=bytes(64))
    header = t.Header(chain=chain_id, version=version, height=height, slot=slot, parent=parent,
                      proposer=EVIL.public_key, state_root=bytes(32), tx_root=t.body_root((stx,), ()),
                      timestamp_ms=0, randao_reveal=bytes(64))
    return t.Block(header=header, sig=EVIL.sign(header.signing_bytes()), txs=(stx,), votes=())


def test_a_peer_serving_poisoned_blocks_is_refused_and_the_node_keeps_producing(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=2, validators=1, seed=11)

    async def scenario(sim: Simulation) -> dict[str, object]:
        honest = sim.nodes[0].node
        assert honest is not None
        evil = sim.nodes[1].endpoint
        await sim.run_until_slot(3)
        start_height = honest.head.height
        served: list[int] = []

        async def serve_status(peer: str, request: bytes) -> bytes:
            mine = honest.local_status()  # the same chain, a much better head
            better = dataclasses.replace(mine, head_height=mine.head_height + 50, head_slot=honest.current_slot(),
                                         head_hash=sha256(b"nowhere"), justified_epoch=mine.justified_epoch + 5)
            return sync.encode_status(better)

        async def serve_range(peer: str, request: bytes) -> bytes:
            req = codec.decode(sync.BlocksByRangeRequest, request)
            served.append(req.start)
            parent = honest.chain.store.canonical_hash(req.start - 1) or bytes(32)
            block = hostile_block(honest.chain_id, req.start, honest.current_slot(), parent, honest.head.version)
            return codec.encode(sync.BlocksByRangeResponse(blocks=(codec.encode(block),)))

        evil.set_request_handler(topics.status_protocol(honest.chain_id), serve_status, sync.MAX_STATUS_BYTES)
        evil.set_request_handler(topics.blocks_by_range_protocol(honest.chain_id), serve_range, 64)
        # and a gossip block at height 2^63, validly signed by its (unscheduled) proposer
        beyond = t.Header(chain=honest.chain_id, version=honest.head.version, height=2**63, slot=2**63,
                          parent=honest.head.hash, proposer=EVIL.public_key, state_root=bytes(32),
                          tx_root=t.body_root((), ()), timestamp_ms=0, randao_reveal=bytes(64))
        await evil.publish(honest.topics["blocks"],
                           codec.encode(t.Block(header=beyond, sig=EVIL.sign(beyond.signing_bytes()), txs=(), votes=())))
        await sim.run_until_slot(30)
        return {"start": start_height, "end": honest.head.height, "served": served,
                "penalised": [reason for peer, reason, _ in sim.nodes[0].endpoint.penalties if peer == "node-01"],
                "up": sim.nodes[0].node is not None}

    result = sim.run(scenario)
    assert result["served"], "the honest node never asked the hostile peer for blocks"
    assert result["up"]
    assert result["end"] > result["start"] + 10, result  # it kept producing its own blocks
    assert result["penalised"], "the hostile peer was not penalised"


def test_range_requests_beyond_the_height_range_are_refused_by_name(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "chain.sqlite", make_genesis(1, 1))
    read = chain.store.canonical_range_bytes
    assert len(sync.decode_range_response(sync.handle_blocks_by_range(sync.encode_range_request(0, 4), read), 4)) == 1
    for start in (2**63, 2**64 - 1):
        request = codec.encode(sync.BlocksByRangeRequest(start=start, count=4))
        with pytest.raises(MalformedMessage, match="start"):
            sync.handle_blocks_by_range(request, read)
    # the last heights: start + count would pass 2^63 - 1, so the count is cut, not the store overflowed
    near = codec.encode(sync.BlocksByRangeRequest(start=2**63 - 1, count=64))
    assert sync.decode_range_response(sync.handle_blocks_by_range(near, read), 64) == []


def test_wide_chain_ids_are_malformed_wherever_they_appear() -> None:
    block = hostile_block("p2pnode-test", 1, 1, bytes(32), 1)
    with pytest.raises(MalformedMessage, match="chain"):
        codec.decode(t.Block, codec.encode(block), max_bytes=sync.MAX_BLOCK_BYTES)
    cp = t.Checkpoint(epoch=0, height=0, hash=bytes(32))
    vote = t.FinalityVote(chain=WIDE_CHAIN_ID, validator=EVIL.public_key, source=cp, target=cp)
    with pytest.raises(MalformedMessage, match="chain"):
        codec.decode(t.SignedVote, codec.encode(t.SignedVote(vote=vote, sig=bytes(64))))
    with pytest.raises(t.BadChainId):
        vote.signing_bytes()
