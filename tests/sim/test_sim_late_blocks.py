"""A proposer whose head is not yet the previous slot's block waits up to a third of its slot for
it: blocks that arrive a little after their successor's slot began are built on, not forked off."""

from __future__ import annotations

from pathlib import Path

from p2pnode.services.chain.chain_service import NodeConfig
from p2pnode.testing.sim import Simulation

SLOTS = 40


def canonical_blocks(tmp_path: Path, wait_permille: int) -> tuple[int, int]:
    """(canonical blocks after SLOTS slots, reorganisations seen) when every message takes
    0.7-1.15 slots to arrive."""
    sim = Simulation(tmp_path, nodes=4, seed=5, min_latency_ms=700, max_latency_ms=1_150,
                     config=NodeConfig(previous_block_wait_permille=wait_permille))

    async def scenario(sim: Simulation) -> tuple[int, int]:
        await sim.run_until_slot(SLOTS)
        node = sim.nodes[0].node
        assert node is not None
        return node.head.height, int(node.metrics.reorgs._value.get())

    return sim.run(scenario)


def test_a_late_previous_block_is_waited_for(tmp_path: Path) -> None:
    waited, waited_reorgs = canonical_blocks(tmp_path / "wait", 333)
    eager, eager_reorgs = canonical_blocks(tmp_path / "eager", 0)
    assert waited >= SLOTS - 1 and waited_reorgs == 0  # 40 of 40 here
    assert eager <= SLOTS - 3 and eager_reorgs > 0  # without waiting: 34 blocks, 5 reorganisations
