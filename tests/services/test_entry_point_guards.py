"""One guard per remote entry point: an exception inside any of them is a named refusal plus a
penalty for the peer that sent the input, and the node keeps serving (simulator, virtual time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain.types import Checkpoint, FinalityVote, SignedVote, Transfer
from p2pnode.services.chain import guards
from p2pnode.testing.factories import signed, user_keys
from p2pnode.testing.sim import Simulation
from protocols import codec, sync, topics
from protocols.network import GUARD_FAILED, RequestError


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("injected fault")


def test_an_exception_at_any_entry_point_is_refused_penalised_and_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=11)
    guards.failures.clear()

    async def scenario(sim: Simulation) -> None:
        target, sender = sim.nodes[0], sim.nodes[1]
        node = target.node
        assert node is not None and sender.node is not None
        penalties = target.endpoint.penalties
        await sim.run_until_slot(3)

        def penalised(reason: str) -> bool:
            return (sender.peer_id, reason) in {(p, r) for p, r, _ in penalties}

        def forgive() -> None:
            """Each phase starts with clean scores (a peer that trips faults this often is banned)."""
            penalties.clear()
            target.endpoint.scores.clear()
            target.endpoint.banned.clear()
            node.sync.bad_until.clear()

        # gossip guard of the blocks topic (the next block comes from whichever node proposes)
        with monkeypatch.context() as patch:
            patch.setattr(node.chain, "check_header_on_parent", boom)
            await sim.run_until_slot(6)
        assert any(reason == GUARD_FAILED for _, reason, _ in penalties)
        # block import, after the guard accepted
        forgive()
        with monkeypatch.context() as patch:
            patch.setattr(node.chain, "import_block", boom)
            await sim.run_until_slot(9)
        assert any(reason in ("invalid_block", "invalid") for _, reason, _ in penalties)  # gossip or sync
        assert guards.failures[("block import", "RuntimeError")] > 0
        # gossip guards of a transaction topic and of the votes topic
        forgive()
        tx = signed(user_keys(1)[0], 0, Transfer(to=bytes(32), amount=1))
        with monkeypatch.context() as patch:
            patch.setattr(node.mempool, "add_signed", boom)
            await sender.endpoint.publish(node.topics["stake"], codec.encode(tx))
            await sim.run_until_slot(10)
        assert penalised(GUARD_FAILED)
        forgive()
        checkpoint = Checkpoint(epoch=0, height=0, hash=bytes(32))
        vote = FinalityVote(chain=node.chain_id, validator=bytes(32), source=checkpoint, target=checkpoint)
        with monkeypatch.context() as patch:
            patch.setattr(node, "_known_validator", boom)
            await sender.endpoint.publish(node.topics["votes"], codec.encode(SignedVote(vote=vote, sig=bytes(64))))
            await sim.run_until_slot(11)
        assert penalised(GUARD_FAILED)
        # request handlers: status and blocks_by_range
        for protocol, attribute, request in (
            (topics.status_protocol(node.chain_id), "local_status", sync.encode_status(sender.node.local_status())),
            (topics.blocks_by_range_protocol(node.chain_id), "read_range", sync.encode_range_request(1, 2)),
        ):
            forgive()
            with monkeypatch.context() as patch:
                patch.setattr(node.sync, attribute, boom)
                with pytest.raises(RequestError):
                    await sender.endpoint.request(target.peer_id, protocol, request, timeout=2, max_response_bytes=1 << 20)
            assert penalised("request_failed")
            assert await sender.endpoint.request(target.peer_id, protocol, request, timeout=2, max_response_bytes=1 << 20)
        # a malformed request is refused by name and penalised
        forgive()
        with pytest.raises(RequestError):
            await sender.endpoint.request(
                target.peer_id, topics.status_protocol(node.chain_id), b"\xff", timeout=2, max_response_bytes=512
            )
        assert penalised("malformed_request")
        forgive()
        # sync import: the sync task survives an exception in the middle of a round
        sim.net.partition([target.peer_id], [n.peer_id for n in sim.nodes[1:]])
        await sim.run_until_slot(15)
        sim.net.heal()
        with monkeypatch.context() as patch:
            patch.setattr(node.sync, "import_block", boom)
            await sim.run_until_slot(18)
            assert node.head.hash != sender.chain.head.hash, "node 0 cannot import the others' blocks"
        assert any(entry.startswith("sync ") for entry, _ in guards.failures)
        # the node caught up and kept its duties through all of it
        proposed = node.blocks_proposed
        await sim.run_until_slot(28)
        heads = {n.chain.head.hash for n in sim.up()}
        assert len(heads) == 1, "node 0 is back in agreement"
        assert node.blocks_proposed > proposed or node.votes_cast > 0

    sim.run(scenario)


def test_a_head_claim_needs_a_known_validator_only_within_the_sets_the_node_knows(tmp_path: Path) -> None:
    from p2pnode.chain.types import Block, Header, body_root, randao_message
    from p2pnode.genesis_file import dev_keypair

    sim = Simulation(tmp_path, nodes=1, seed=2)
    stranger = dev_keypair("not-a-validator")

    async def scenario(sim: Simulation) -> None:
        node = sim.nodes[0].node
        assert node is not None
        await sim.run_until_slot(40)  # five epochs of 8 slots

        def claim(slot: int) -> Block:
            head = node.head
            header = Header(chain=head.chain, version=head.version, height=head.height + 100, slot=slot,
                            parent=bytes(32), proposer=stranger.public_key, state_root=bytes(32),
                            tx_root=body_root((), ()), timestamp_ms=0,
                            randao_reveal=stranger.sign(randao_message(head.chain, slot)))
            return Block(header=header, sig=stranger.sign(header.signing_bytes()), txs=(), votes=())

        near = claim(node.current_slot())
        assert node.head_claim_problem(near, near.hash) == "unknown_proposer"
        assert node.head_claim_problem(near, bytes(32)) == "head_not_served"
        # A node far behind cannot know the validator sets of later epochs: a signed head is enough.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(type(node), "head", property(lambda self: self.chain.store.canonical_block(0).header))
            assert node.head_claim_problem(near, near.hash) is None
        ahead = claim(node.current_slot() + 5)
        assert node.head_claim_problem(ahead, ahead.hash) == "future_head"

    sim.run(scenario)
