"""A validator that builds valid blocks thousands of slots ahead of the clock and advertises them,
against a real peer process on loopback: the peer does not adopt that head, penalises the
advertiser and keeps producing (before, it synced the future chain and could propose no more).
About 80 s on a busy machine, so marked slow; `test_future_slot_heads.py` is the short version."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio

from p2pnode.chain import consensus
from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair, genesis_from_json
from p2pnode.net.host import LibP2PNetwork
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.testing.factories import open_chain
from p2pnode.testing.live_peer import LivePeer, get_json, json_request, start_live_peer
from protocols import sync, topics

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SLOT_MS = 500
AHEAD = 5_000
FUTURE_BLOCKS = 40
DEADLINE_S = 60.0


def build_future_chain(chain: BlockTree, genesis_ms: int) -> None:
    """FUTURE_BLOCKS valid blocks of validator-1, from AHEAD slots past now."""
    key = dev_keypair("validator-1-hot")
    slot = (int(time.time() * 1000) - genesis_ms) // SLOT_MS + AHEAD
    built = 0
    for _ in range(100 * FUTURE_BLOCKS):
        slot += 1
        if consensus.proposer_for_slot(chain.head_state(), slot) == key.public_key:
            chain.import_block(chain.build_block(key, slot))
            built += 1
            if built == FUTURE_BLOCKS:
                return
    raise AssertionError("validator-1 owns too few slots")


def make_rogue(chain: BlockTree, bootstrap: str) -> LibP2PNetwork:
    net = LibP2PNetwork(os.urandom(32), bootstrap=[bootstrap])
    genesis = chain.store.canonical_block(0)
    assert genesis is not None

    def local() -> sync.Status:
        head = chain.head
        return sync.Status(chain=head.chain, genesis=genesis.hash, head_height=head.height, head_slot=head.slot,
                           head_hash=head.hash, justified_epoch=0, finalized_epoch=0, finalized_height=0,
                           finalized_hash=genesis.hash)

    async def serve_status(peer_id: str, request: bytes) -> bytes:
        return sync.handle_status(request, local, lambda status: None)

    async def serve_range(peer_id: str, request: bytes) -> bytes:
        return sync.handle_blocks_by_range(request, chain.store.canonical_range_bytes)

    chain_id = genesis.header.chain
    net.set_request_handler(topics.status_protocol(chain_id), serve_status, sync.MAX_STATUS_BYTES)
    net.set_request_handler(topics.blocks_by_range_protocol(chain_id), serve_range, sync.MAX_RANGE_REQUEST_BYTES)
    return net


async def attack(peer: LivePeer, rogue: LibP2PNetwork) -> dict:
    async with trio.open_nursery() as nursery:
        await nursery.start(rogue.run)
        start = await get_json(peer, "/status")
        started = time.monotonic()
        worst_lead = 0
        # Another process keeps the scores: poll its API with a deadline.
        while True:
            now = await get_json(peer, "/status")
            worst_lead = max(worst_lead, now["head_slot"] - now["current_slot"])
            view = await get_json(peer, f"/peers/{rogue.peer_id}")
            if view["score"] < 0 or view["banned"] or time.monotonic() - started > DEADLINE_S:
                break
            await trio.sleep(0.5)
        await trio.sleep(3)  # a few more slots of production after the rogue was penalised
        end = await get_json(peer, "/status")
        worst_lead = max(worst_lead, end["head_slot"] - end["current_slot"])
        nursery.cancel_scope.cancel()
    return {"start": start, "end": end, "view": view, "worst_lead": worst_lead}


def test_a_live_peer_does_not_adopt_blocks_thousands_of_slots_ahead(tmp_path: Path) -> None:
    genesis_doc = make_genesis(2, market=False, slot_ms=SLOT_MS)
    peer = start_live_peer(tmp_path, genesis=genesis_doc)
    try:
        genesis, _ = genesis_from_json(genesis_doc)
        rogue_chain = open_chain(tmp_path / "rogue.sqlite", genesis)
        build_future_chain(rogue_chain, genesis.genesis_time_ms)
        status = json_request(peer, "GET", "/status")[1]
        bootstrap = [a for a in status["listen_addrs"] if "/tcp/" in a][0]
        result = trio.run(attack, peer, make_rogue(rogue_chain, bootstrap))
    finally:
        peer.stop()
    start, end = result["start"], result["end"]
    assert result["worst_lead"] <= 1, f"the peer adopted a head {result['worst_lead']} slots ahead of its clock"
    assert result["view"]["score"] < 0 or result["view"]["banned"], f"the rogue was not penalised: {result['view']}"
    assert end["head_height"] > start["head_height"], "the peer stopped producing"
