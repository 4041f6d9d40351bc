"""Governance on the simulator: a parameter change takes effect at its enactment block on every node."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain import governance
from p2pnode.chain.types import GovVote, Propose
from p2pnode.testing.factories import DEV_CHAIN_ID, signed, validator_keys
from p2pnode.testing.sim import Simulation
from protocols import codec

GOV = {"voting_period": 12, "enactment_delay": 4, "quorum_permille": 300, "pass_permille": 500}
COLDS = [cold for cold, _ in validator_keys(4)]


def test_parameter_change_takes_effect_at_enactment_on_every_node(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=5, genesis_params=GOV)
    observed: list[list[tuple[int, int]]] = [[] for _ in range(4)]

    def observe(_slot: int) -> None:
        for sim_node in sim.up():
            state = sim_node.chain.head_state()
            observed[sim_node.index].append((state.height, state.param("min_fee")))

    async def scenario(sim: Simulation) -> dict:
        node = sim.nodes[0].node
        assert node is not None
        body = Propose(action="set_param", param="min_fee", value=7_000, owner=b"", task="", version=0,
                       activation_height=0, text="")
        admission = await node.submit_tx(codec.encode(signed(COLDS[0], 0, body, chain_id=DEV_CHAIN_ID)))
        assert admission.added, admission.reason
        await sim.run_until_slot(6, every_slot=observe)
        state = sim.nodes[0].chain.head_state()
        assert governance.proposal_ids(state) == [1]
        for i in range(3):
            vote = signed(COLDS[i], state.nonce(COLDS[i].public_key), GovVote(proposal=1, choice="yes"),
                          chain_id=DEV_CHAIN_ID)
            assert (await node.submit_tx(codec.encode(vote))).added
        prop = governance.proposal(state, 1)
        assert prop is not None
        await sim.run_until_slot(prop.enact_at + 8, every_slot=observe)
        for sim_node in sim.up():
            assert governance.proposal(sim_node.chain.head_state(), 1).status == "enacted"  # type: ignore[union-attr]
        return prop

    prop = sim.run(scenario)
    enact_at = prop.enact_at
    for i, samples in enumerate(observed):
        assert samples, f"node {i} was never observed"
        assert any(h >= enact_at for h, _ in samples), f"node {i} never reached the enactment block"
        for height, fee in samples:
            assert fee == (7_000 if height >= enact_at else 1_000), f"node {i} at height {height}: min_fee {fee}"


def test_upgrade_activation_with_one_node_that_does_not_support_it(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=9, genesis_params=GOV)
    old_node = 3

    async def scenario(sim: Simulation) -> None:
        sim.nodes[old_node].chain.supported_versions = frozenset({1})  # an old build: knows only v1
        node = sim.nodes[0].node
        assert node is not None
        activation = GOV["voting_period"] + GOV["enactment_delay"] + 12
        body = Propose(action="upgrade", param="", value=0, owner=b"", task="", version=2,
                       activation_height=activation, text="")
        assert (await node.submit_tx(codec.encode(signed(COLDS[0], 0, body, chain_id=DEV_CHAIN_ID)))).added
        await sim.run_until_slot(4)
        state = sim.nodes[0].chain.head_state()
        for i in range(3):
            vote = signed(COLDS[i], state.nonce(COLDS[i].public_key), GovVote(proposal=1, choice="yes"),
                          chain_id=DEV_CHAIN_ID)
            assert (await node.submit_tx(codec.encode(vote))).added
        await sim.run_until_slot(activation + 24)
        upgraded = [sim.nodes[i].chain for i in range(3)]
        for chain in upgraded:
            assert chain.head.height >= activation + 4
            assert chain.store.canonical_block(activation - 1).header.version == 1  # type: ignore[union-attr]
            assert chain.store.canonical_block(activation).header.version == 2  # type: ignore[union-attr]
            assert chain.head_state().param("protocol_version") == 2
        assert len({chain.head.hash for chain in upgraded}) <= 2  # still one chain (a block may be in flight)
        old = sim.nodes[old_node].chain
        # the old node follows up to the block before activation and refuses everything after it
        assert old.head.height == activation - 1
        assert old.head.hash == upgraded[0].store.canonical_hash(activation - 1)
        # finality continues without it (3 of 4 validators)
        finalized = sim.nodes[0].chain.finalized
        assert finalized is not None and finalized.height >= activation

    sim.run(scenario)
