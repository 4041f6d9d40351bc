"""Status liars against a real peer process on loopback: four libp2p peers advertise better heads
and hold every block request until it times out. The peer (a lone validator, 500 ms slots) checks
each claim before it enters sync, penalises the liars and keeps producing its blocks."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import trio

from p2pnode.chain.encoding import sha256
from p2pnode.net.host import LibP2PNetwork
from p2pnode.testing.live_peer import LivePeer, get_json, json_request, start_live_peer
from protocols import sync, topics

pytestmark = pytest.mark.timeout(300)

LIARS = 4
DEADLINE_S = 90.0


def make_liar(chain_id: str, bootstrap: str) -> LibP2PNetwork:
    net = LibP2PNetwork(os.urandom(32), bootstrap=[bootstrap])

    async def serve_status(peer_id: str, request: bytes) -> bytes:
        theirs = sync.decode_status(request)
        return sync.encode_status(dataclasses.replace(
            theirs, head_height=theirs.head_height + 100, head_hash=sha256(net.peer_id.encode() + request),
            justified_epoch=theirs.justified_epoch + 1))

    async def serve_nothing(peer_id: str, request: bytes) -> bytes:
        await trio.sleep(3600)  # hold the request until the caller gives up
        return b""

    net.set_request_handler(topics.status_protocol(chain_id), serve_status, sync.MAX_STATUS_BYTES)
    net.set_request_handler(topics.blocks_by_range_protocol(chain_id), serve_nothing, sync.MAX_RANGE_REQUEST_BYTES)
    return net


async def run_liars(peer: LivePeer, chain_id: str, bootstrap: str) -> dict:
    liars = [make_liar(chain_id, bootstrap) for _ in range(LIARS)]
    async with trio.open_nursery() as nursery:
        for net in liars:
            await nursery.start(net.run)
        start = await get_json(peer, "/status")
        started = time.monotonic()
        # Another process keeps the scores: poll its API with a deadline.
        while True:
            views = [await get_json(peer, f"/peers/{net.peer_id}") for net in liars]
            if all(v["score"] < 0 or v["banned"] for v in views) or time.monotonic() - started > DEADLINE_S:
                break
            await trio.sleep(0.5)
        end = await get_json(peer, "/status")
        nursery.cancel_scope.cancel()
    return {"start": start, "end": end, "views": views}


def test_status_liars_are_penalised_and_the_live_peer_keeps_producing(tmp_path: Path) -> None:
    peer = start_live_peer(tmp_path, market=False)
    try:
        status = json_request(peer, "GET", "/status")[1]
        bootstrap = [a for a in status["listen_addrs"] if "/tcp/" in a][0]
        result = trio.run(run_liars, peer, status["chain_id"], bootstrap)
    finally:
        peer.stop()
    start, end = result["start"], result["end"]
    assert all(v["score"] < 0 or v["banned"] for v in result["views"]), f"liars left unpunished: {result['views']}"
    slots = end["current_slot"] - start["current_slot"]
    produced = end["head_height"] - start["head_height"]
    print(f"{produced} blocks in {slots} slots with {LIARS} liars")
    # The lone validator owns every slot; a busy machine may cost it a few.
    assert produced >= slots * 3 // 4, f"{produced} blocks in {slots} slots"
