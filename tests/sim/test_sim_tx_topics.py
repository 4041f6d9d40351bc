"""Transactions travel on the stake or the weights topic by kind; the wrong topic is rejected."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain.encoding import encode, sha256
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


def test_a_batch_of_transactions_travels_as_one_gossip_message(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=2, seed=4)
    users = user_keys(4)  # the funded accounts
    # 3 senders x 4 consecutive nonces: 12 transfers, admitted together, gossiped as one txbatch.
    batch = [codec.encode(signed(users[s], n, Transfer(to=bytes(32), amount=1))) for n in range(4) for s in range(3)]
    commit = codec.encode(signed(validator_keys(1)[0][1], 0, CommitWeights(netuid=1, commit_hash=bytes(32))))
    other = [codec.encode(signed(users[3], n, Transfer(to=bytes(32), amount=1))) for n in range(2)]

    async def scenario(sim: Simulation) -> None:
        first, second = sim.nodes[0].node, sim.nodes[1].node
        assert first is not None and second is not None
        published: list[tuple[str, bytes]] = []
        publish = sim.nodes[0].endpoint.publish

        async def recording(topic: str, data: bytes) -> None:
            published.append((topic, data))
            await publish(topic, data)

        sim.nodes[0].endpoint.publish = recording  # type: ignore[method-assign]
        heard: list[tuple[str, str]] = []
        second.admission_listeners.append(lambda source, admission: heard.append((source, admission.reason)))
        admissions = await first.submit_txs(batch)
        assert all(a.added for a in admissions), [a.reason for a in admissions]
        assert [topic for topic, _ in published] == [first.topics["txbatch"]]
        await sim.run_until_slot(6)
        assert heard[:len(batch)] == [("gossip", "added")] * len(batch)  # the one message, item by item
        for sim_node in sim.nodes:
            assert all(sim_node.chain.head_state().nonce(users[s].public_key) == 4 for s in range(3))

        # The guard: all known -> ignored; an item of the weights topic or a malformed one -> rejected;
        # not an array of at least two byte strings -> rejected.
        assert second._guard_tx_batch("peer", encode(batch[:3])).verdict == Verdict.IGNORE
        assert second._guard_tx_batch("peer", encode([other[0], commit])).reason == "wrong_topic"
        assert second._guard_tx_batch("peer", encode([other[1], b"\xff"])).reason == "malformed"
        assert second._guard_tx_batch("peer", encode([other[0]])).reason == "malformed"
        assert second._guard_tx_batch("peer", b"\xff\x00").reason == "malformed"
        # An item admitted before a rejected one stays: it is valid on its own.
        assert sha256(other[0]) in second.mempool and sha256(other[1]) in second.mempool

    sim.run(scenario)
