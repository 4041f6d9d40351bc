"""A legal block must not kill its builder (issue 13, item 6).

Blocks may be up to `max_block_bytes` (1 MiB by default, up to 4 MiB by governance). The blocks
topic used to keep gossip's 512 KiB default and py-libp2p's 1 MiB RPC caps, so publishing a full
block raised in block production (or was dropped silently). Here a block filled with the largest
legal transactions (governance proposals with 2 KiB of text) is built, checked to import on a
second copy of the chain, and gossiped between two real hosts on loopback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from p2pnode.chain.params import GLOBAL_PARAMS
from p2pnode.chain.types import Block, Propose, randao_message
from p2pnode.net.gossip import MAX_TOPIC_MESSAGE_BYTES
from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.services.chain.block_tree import BLOCK_OVERHEAD_BYTES
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys
from p2pnode.testing.sim import Simulation
from protocols import codec
from protocols.network import Verdict
from protocols.sync import MAX_BLOCK_BYTES

pytestmark = pytest.mark.timeout(180)

TOPIC = "/p2pnode/p2pnode-test/blocks/1"
QUIET = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)
LARGEST_TX_BYTES = 2_400  # a proposal with 2,048 bytes of text, signed and encoded


def _proposal(text_seed: int) -> Propose:
    text = hashlib.sha256(b"%d" % text_seed).hexdigest() * 32  # 2,048 ASCII bytes, unique per tx
    return Propose(
        action="signal", param="", value=0, owner=b"", task="", version=0, activation_height=0, text=text
    )


def _maximal_block(tmp_path: Path, max_block_bytes: int) -> tuple[Block, bytes]:
    """A signed block filled up to `max_block_bytes` with proposals; it imports on a fresh copy."""
    genesis = make_genesis(1, 1, params={"max_block_bytes": max_block_bytes, "max_block_txs": 4_096})
    builder = open_chain(tmp_path / "builder.sqlite", genesis)
    (_, hot), user = validator_keys(1)[0], user_keys(1)[0]
    candidates = [signed(user, nonce, _proposal(nonce)) for nonce in range(max_block_bytes // 2_000 + 64)]
    slot = 1
    reveal = hot.sign(randao_message(genesis.chain_id, slot))
    draft = builder.prepare_block(hot.public_key, slot, candidates, randao_reveal=reveal, skip_invalid=True)
    block = Block(header=draft.header, sig=hot.sign(draft.header.signing_bytes()), txs=draft.txs, votes=())
    data = codec.encode(block)
    receiver = open_chain(tmp_path / "receiver.sqlite", genesis)
    receiver.import_block(codec.decode(Block, data, max_bytes=max_block_bytes))
    assert receiver.head.hash == block.hash
    return block, data


def test_gossip_limits_cover_the_largest_block_governance_allows() -> None:
    assert MAX_TOPIC_MESSAGE_BYTES == MAX_BLOCK_BYTES == GLOBAL_PARAMS["max_block_bytes"].high


@pytest.mark.parametrize("max_block_bytes", [1 << 20, 4 << 20], ids=["1MiB-default", "4MiB-governance-max"])
async def test_maximal_legal_block_gossips_between_two_hosts(tmp_path: Path, max_block_bytes: int) -> None:
    block, data = _maximal_block(tmp_path, max_block_bytes)
    # Full: no further proposal would have fitted the builder's budget.
    assert max_block_bytes - BLOCK_OVERHEAD_BYTES - LARGEST_TX_BYTES < len(data) <= max_block_bytes

    received: list[bytes] = []

    async def on_block(peer: str, payload: bytes) -> None:
        received.append(payload)

    def validate(peer: str, payload: bytes) -> Verdict:
        codec.decode(Block, payload, max_bytes=max_block_bytes)
        return Verdict.ACCEPT

    builder = LibP2PNetwork(hashlib.sha256(b"max-block-builder").digest(), config=QUIET)
    builder.subscribe(TOPIC, validate, on_block)
    builder.set_topic_max_bytes(TOPIC, max_block_bytes)
    async with builder:
        peer = LibP2PNetwork(hashlib.sha256(b"max-block-peer").digest(), bootstrap=builder.listen_addrs(), config=QUIET)
        peer.subscribe(TOPIC, validate, on_block)
        peer.set_topic_max_bytes(TOPIC, max_block_bytes)
        async with peer:
            with trio.fail_after(30):
                while peer.peer_id not in builder.mesh_peers(TOPIC):  # noqa: ASYNC110 (no mesh event)
                    await trio.sleep(0.02)
            await builder.publish(TOPIC, data)
            with trio.fail_after(60):
                while not received:  # noqa: ASYNC110 (the handler has no event to wait on)
                    await trio.sleep(0.02)
    assert received == [data]
    assert codec.decode(Block, received[0], max_bytes=max_block_bytes).hash == block.hash


def test_block_production_survives_a_failing_publish(tmp_path: Path) -> None:
    """A publish that raises (a stopped network, a limit) is logged; the proposer keeps proposing,
    the others fetch its blocks by sync. The blocks topic limit follows max_block_bytes."""
    sim = Simulation(tmp_path, nodes=4, seed=3, genesis_params={"max_block_bytes": 2 << 20})

    async def scenario(sim: Simulation) -> tuple[int, dict[str, int], int]:
        endpoint = sim.nodes[0].endpoint

        async def failing_publish(topic: str, data: bytes) -> None:
            raise RuntimeError("publish needs a running network")

        endpoint.publish = failing_publish  # type: ignore[method-assign]
        await sim.run_until_slot(24)
        node = sim.nodes[0].node
        assert node is not None
        return node.blocks_proposed, endpoint.topic_limits, sim.nodes[1].chain.head.height

    proposed, limits, other_height = sim.run(scenario)
    assert proposed >= 2
    assert limits == {"/p2pnode/p2pnode-test/blocks/1": 2 << 20}
    assert other_height >= 16  # the other three validators alone hold 18 of the 24 slots
