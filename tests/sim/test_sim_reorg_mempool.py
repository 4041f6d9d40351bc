"""A transaction included only in blocks that a reorganisation drops is not lost: it goes back to
the mempool and lands on the chain that wins."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain.types import Transfer
from p2pnode.testing.factories import signed, user_keys
from p2pnode.testing.sim import Simulation
from protocols import codec


def test_transactions_of_rolled_back_blocks_are_included_after_the_reorg(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=21)
    sender = user_keys(1)[0]
    peers = [n.peer_id for n in sim.nodes]

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(4)
        sim.net.partition([peers[0]], peers[1:])  # node 0 alone: its blocks will be dropped
        lone = sim.nodes[0].node
        assert lone is not None
        tx = signed(sender, 0, Transfer(to=bytes(32), amount=5))
        assert (await lone.submit_tx(codec.encode(tx))).added
        await sim.run_until_slot(30)
        assert sim.nodes[0].chain.head_state().nonce(sender.public_key) == 1  # in node 0's own blocks
        assert sim.nodes[1].chain.head_state().nonce(sender.public_key) == 0  # unknown to the others
        sim.net.heal()
        await sim.run_until_slot(90)
        heads = {n.chain.head.hash for n in sim.up()}
        assert len(heads) == 1
        for sim_node in sim.up():
            assert sim_node.chain.head_state().nonce(sender.public_key) == 1, f"node {sim_node.index}"

    sim.run(scenario)
