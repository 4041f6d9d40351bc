"""Transactions travel on the stake or the weights topic by kind; the wrong topic is rejected."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain.types import CommitWeights, Transfer
from p2pnode.testing.factories import signed, user_keys, validator_keys
from p2pnode.testing.sim import Simulation
from protocols import codec
from protocols.network import Verdict


def test_transactions_are_validated_against_their_topic(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=2, seed=3)
    transfer = codec.encode(signed(user_keys(1)[0], 0, Transfer(to=bytes(32), amount=1)))
    commit = codec.encode(signed(validator_keys(1)[0][1], 0, CommitWeights(netuid=1, commit_hash=bytes(32))))

    async def scenario(sim: Simulation) -> None:
        node = sim.nodes[0].node
        assert node is not None
        assert node._guard_weights_tx("peer", transfer).verdict == Verdict.REJECT
        assert node._guard_stake_tx("peer", commit).reason == "wrong_topic"
        accepted = node._guard_stake_tx("peer", transfer)
        assert accepted.verdict == Verdict.ACCEPT and codec.encode(accepted.value) == transfer
        assert node._guard_stake_tx("peer", transfer).verdict == Verdict.IGNORE  # already pending
        assert node._guard_stake_tx("peer", b"\xff" * 10).verdict == Verdict.REJECT
        # a transaction submitted locally reaches the other node over its topic and gets included
        sender = user_keys(2)[1]
        assert (await node.submit_tx(codec.encode(signed(sender, 0, Transfer(to=bytes(32), amount=1))))).added
        await sim.run_until_slot(4)
        for sim_node in sim.nodes:
            assert sim_node.chain.head_state().nonce(sender.public_key) == 1

    sim.run(scenario)
