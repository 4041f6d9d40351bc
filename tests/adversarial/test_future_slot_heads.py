"""A validator that builds valid blocks at slots far ahead of the clock and advertises them must not
make its peers adopt that head (otherwise no honest node can propose again: `head.slot >= slot`)."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain import consensus
from p2pnode.testing.sim import Simulation

EPOCH = 8


def test_blocks_thousands_of_slots_ahead_are_not_adopted_by_sync(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=5, passive=frozenset({3}))

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(2)
        rogue = sim.nodes[3]
        assert rogue.key is not None and rogue.node is not None
        chain, key = rogue.chain, rogue.key
        slot = rogue.node.current_slot() + 5_000
        built = 0
        for _ in range(2_000):
            slot += 1
            if consensus.proposer_for_slot(chain.head_state(), slot) == key.public_key:
                chain.import_block(chain.build_block(key, slot))
                built += 1
                if built == 40:
                    break
        assert built == 40 and chain.head.slot > 5_000
        # The rogue's Status now advertises a head 40 blocks higher than anyone's, at slot 5,000+.
        await sim.run_until_slot(4 * EPOCH)
        for honest in sim.nodes[:3]:
            node = honest.node
            assert node is not None
            assert node.head.slot <= node.current_slot() + 1, f"node {honest.index} adopted a future head"
            assert node.finalized is not None and node.finalized.epoch >= 2, "finality kept advancing"
            assert (rogue.peer_id, "future_head") in {(p, r) for p, r, _ in honest.endpoint.penalties}

    sim.run(scenario)
