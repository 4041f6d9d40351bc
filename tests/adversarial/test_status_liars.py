"""Peers that advertise better heads they never serve: a node checks each claim (fetches the signed
head) before it enters sync, penalises the liars, and keeps producing its blocks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from p2pnode.chain.encoding import sha256
from p2pnode.testing.sim import Simulation
from protocols import sync, topics

LIARS = 30
SLOTS = 40


def test_thirty_status_liars_neither_stall_production_nor_go_unpunished(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=9)
    chain_id = sim.genesis.chain_id
    liars = [f"liar-{i:02d}" for i in range(LIARS)]

    def liar(name: str):  # noqa: ANN202
        async def serve_status(peer_id: str, request: bytes) -> bytes:
            theirs = sync.decode_status(request)
            now_slot = int(trio.current_time())
            return sync.encode_status(dataclasses.replace(
                theirs, head_height=theirs.head_height + 100, head_slot=now_slot,
                head_hash=sha256(name.encode() + now_slot.to_bytes(8, "big")), justified_epoch=theirs.justified_epoch + 1))

        async def serve_nothing(peer_id: str, request: bytes) -> bytes:
            await trio.sleep(3600)  # hold the request until the caller gives up
            return b""

        return serve_status, serve_nothing

    for name in liars:
        endpoint = sim.net.endpoint(name)
        serve_status, serve_nothing = liar(name)
        endpoint.set_request_handler(topics.status_protocol(chain_id), serve_status, sync.MAX_STATUS_BYTES)
        endpoint.set_request_handler(topics.blocks_by_range_protocol(chain_id), serve_nothing, 64)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(SLOTS)
        heights = [n.chain.head.height for n in sim.nodes]
        # Every slot has one proposer among the four honest validators: nearly every slot has a block.
        assert min(heights) >= SLOTS - 4, f"block production stalled: heights {heights} after {SLOTS} slots"
        for honest in sim.nodes:
            punished = {p for p, r, _ in honest.endpoint.penalties if r.startswith("unbacked_status")}
            assert punished == set(liars), f"node {honest.index} left liars unpunished"

    sim.run(scenario)
