"""Finality votes handed straight to the coming proposers (`vote_delivery`), on the simulator:
they reach the proposers and get included, a vote nobody took is gossiped, hostile requests are
refused by name, and a double vote split between proposers is still caught through the blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain import consensus, finality
from p2pnode.chain.types import Checkpoint, FinalityVote, SignedVote
from p2pnode.services.chain import chain_service
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.testing.sim import SimNode, Simulation
from protocols import codec, topics
from protocols.crypto import Keypair
from protocols.network import RequestError, RequestTimeout
from protocols.validation import vote_signature_ok

EPOCH = 8  # the simulator's genesis


def counted_votes(node: ChainService) -> dict[bytes, set[int]]:
    """validator -> target epochs of its votes that the canonical chain carries."""
    counted: dict[bytes, set[int]] = {}
    for height in range(1, node.head.height + 1):
        block = node.chain.store.canonical_block(height)
        assert block is not None
        for signed_vote in block.votes:
            counted.setdefault(signed_vote.vote.validator, set()).add(signed_vote.vote.target.epoch)
    return counted


def own_vote(node: ChainService, key: Keypair, target_hash: bytes | None = None, epoch: int | None = None) -> SignedVote:
    """`key`'s vote for the current epoch's target on `node`'s head (another target hash: a double vote)."""
    state = node.chain.head_state()
    epoch = node.current_slot() // node.epoch_slots if epoch is None else epoch
    head = node.head
    target = finality.vote_target(state, head.hash, head.height, head.slot, epoch)
    source = finality.justified_checkpoint(state)
    assert target is not None and source is not None
    if target_hash is not None:
        target = Checkpoint(epoch=target.epoch, height=target.height, hash=target_hash)
    vote = FinalityVote(chain=node.chain_id, validator=key.public_key, source=source, target=target)
    return SignedVote(vote=vote, sig=key.sign(vote.signing_bytes()))


async def hand_in(sender: SimNode, target: SimNode, data: bytes) -> str:
    answer = await sender.endpoint.request(target.peer_id, topics.vote_protocol(sender.chain.head_state().chain_id), data,
                                           timeout=2, max_response_bytes=64)
    return answer.decode()


def test_votes_reach_the_proposers_directly_get_included_and_finalize(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=6, seed=5, direct_votes=True)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(7 * EPOCH)
        nodes = [n.node for n in sim.up()]
        assert all(n is not None for n in nodes)
        for node in nodes:
            assert node is not None and node.vote_delivery is not None
            assert node.votes_cast >= 5
            assert node.vote_delivery.sent_direct == node.votes_cast, "every vote was taken by the proposers"
            assert node.vote_delivery.gossiped == 0 and node.status()["votes_gossiped"] == 0
            assert node.vote_delivery.gossiped_uncounted == 0, "the chain counted every vote in time"
        assert sum(n.vote_delivery.served.get("accepted", 0) for n in nodes if n and n.vote_delivery) > 0
        first = nodes[0]
        assert first is not None and first.finalized is not None and first.finalized.epoch >= 4
        assert len({n.finalized for n in nodes if n is not None}) == 1
        counted = counted_votes(first)
        for node in nodes:
            assert node is not None and node.signer is not None
            # The vote of the last epoch may still wait for its block.
            assert len(counted.get(node.signer.public_key, set())) >= node.votes_cast - 1

    sim.run(scenario)


def test_a_vote_no_proposer_takes_is_gossiped_and_still_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Simulation(tmp_path, nodes=5, seed=6, direct_votes=True)

    async def unreachable(*args: object, **kwargs: object) -> bytes:
        raise RequestError("unreachable")

    async def scenario(sim: Simulation) -> None:
        node = sim.nodes[0].node
        assert node is not None and node.vote_delivery is not None and node.signer is not None
        # Only node 0's vote requests fail (its sync requests and gossip still work).
        monkeypatch.setattr(node.vote_delivery, "network", type("Cut", (), {"request": unreachable})())
        await sim.run_until_slot(6 * EPOCH)
        # Where node 0 proposes next itself, one acknowledgement (its own) can be enough.
        assert node.vote_delivery.gossiped >= node.votes_cast - 2 > 0
        counted = counted_votes(node)
        assert len(counted[node.signer.public_key]) >= node.votes_cast - 1
        assert node.finalized is not None and node.finalized.epoch >= 3

    sim.run(scenario)


def test_hostile_vote_requests_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=7, direct_votes=True, passive=frozenset({3}))
    checks = [0]

    def counted_check(signed_vote: SignedVote) -> bool:
        checks[0] += 1
        return vote_signature_ok(signed_vote)

    monkeypatch.setattr(chain_service, "vote_signature_ok", counted_check)

    async def scenario(sim: Simulation) -> None:
        target, hostile, other = sim.nodes[0], sim.nodes[3], sim.nodes[1]
        node = target.node
        assert node is not None and hostile.key is not None and other.key is not None
        await sim.run_until_slot(2 * EPOCH + 2)

        def penalised(reason: str) -> bool:
            return any(p == hostile.peer_id and r == reason for p, r, _ in target.endpoint.penalties)

        assert await hand_in(hostile, target, b"\xff\x00") == "malformed"
        assert penalised("vote_malformed")
        good = own_vote(node, hostile.key)
        foreign = FinalityVote(chain="another-chain", validator=good.vote.validator, source=good.vote.source,
                               target=good.vote.target)
        signed_foreign = SignedVote(vote=foreign, sig=hostile.key.sign(foreign.signing_bytes()))
        assert await hand_in(hostile, target, codec.encode(signed_foreign)) == "wrong_chain"
        # Someone else's (valid) vote: relaying is gossip's business; no penalty, no signature check.
        before = checks[0]
        assert await hand_in(hostile, target, codec.encode(own_vote(node, other.key))) == "not_own_vote"
        assert not penalised("vote_not_own_vote") and checks[0] == before
        forged = SignedVote(vote=good.vote, sig=bytes(64))
        assert await hand_in(hostile, target, codec.encode(forged)) == "bad_signature"
        assert penalised("vote_bad_signature")
        far = own_vote(node, hostile.key, epoch=node.current_slot() // EPOCH + 5)
        assert await hand_in(hostile, target, codec.encode(far)) == "epoch_out_of_window"
        assert await hand_in(hostile, target, codec.encode(good)) == "accepted"
        assert node.vote_pool.holds(good)
        before = checks[0]
        assert await hand_in(hostile, target, codec.encode(good)) == "held"
        assert checks[0] == before, "pooled bytes are not verified again"
        # A second vote for the same target epoch: refused, and turned into slashing evidence.
        assert await hand_in(hostile, target, codec.encode(own_vote(node, hostile.key, b"\x07" * 32))) == "duplicate"
        # Past its rate the peer gets `rate_limited`, cheaply, and a penalty once per window.
        flood = own_vote(node, hostile.key, b"\x08" * 32)  # would need a signature check each time
        before = checks[0]
        answers = [await hand_in(hostile, target, codec.encode(flood)) for _ in range(12)]
        assert "rate_limited" in answers
        assert checks[0] - before == sum(1 for a in answers if a != "rate_limited"), "refused before any check"
        assert sum(1 for p, r, _ in target.endpoint.penalties if p == hostile.peer_id and r == "vote_flood") == 1
        await sim.run_until_slot(5 * EPOCH)
        assert node.evidence_submitted == 1
        for sim_node in sim.up():
            if sim_node.node is not None and sim_node.node.signer is not None:
                assert consensus.is_slashed(sim_node.chain.head_state(), hostile.key.public_key)

    sim.run(scenario)


def test_a_double_vote_split_between_proposers_is_caught_through_the_blocks(tmp_path: Path) -> None:
    """Vote A goes to nodes 0 and 1 only, the conflicting vote B to node 2 only: nobody got both,
    but node 2 sees A in the block that carries it, and the voter is slashed."""
    sim = Simulation(tmp_path, nodes=4, seed=8, direct_votes=True, passive=frozenset({3}))

    async def scenario(sim: Simulation) -> None:
        voter = sim.nodes[3]
        assert voter.key is not None and sim.nodes[0].node is not None
        await sim.run_until_slot(2 * EPOCH + 1)
        vote_a = own_vote(sim.nodes[0].node, voter.key)
        vote_b = own_vote(sim.nodes[0].node, voter.key, b"\x09" * 32)
        assert await hand_in(voter, sim.nodes[0], codec.encode(vote_a)) == "accepted"
        assert await hand_in(voter, sim.nodes[1], codec.encode(vote_a)) == "accepted"
        assert await hand_in(voter, sim.nodes[2], codec.encode(vote_b)) == "accepted"
        await sim.run_until_slot(6 * EPOCH)
        node_2 = sim.nodes[2].node
        assert node_2 is not None and node_2.evidence_submitted == 1
        for sim_node in sim.up():
            assert consensus.is_slashed(sim_node.chain.head_state(), voter.key.public_key)

    sim.run(scenario)


def test_a_proposer_that_answers_late_is_presumed_to_have_the_vote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No gossip on top of requests that merely time out: on a busy machine the request usually
    arrived, and gossiping every such vote too is the load that made the answers late."""
    sim = Simulation(tmp_path, nodes=4, seed=9, direct_votes=True)

    async def late(*args: object, **kwargs: object) -> bytes:
        raise RequestTimeout("timeout")

    async def scenario(sim: Simulation) -> None:
        node = sim.nodes[0].node
        assert node is not None and node.vote_delivery is not None
        monkeypatch.setattr(node.vote_delivery, "network", type("Slow", (), {"request": late})())
        await sim.run_until_slot(4 * EPOCH)
        assert node.votes_cast >= 3
        assert node.vote_delivery.gossiped == 0 and node.vote_delivery.sent_direct == node.votes_cast
        assert node.vote_delivery.asked["late"] > 0 and node.vote_delivery.asked["acked"] == 0

    sim.run(scenario)


def test_a_vote_proposers_acknowledge_but_drop_is_gossiped_once_the_chain_lacks_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proposers that answer `accepted` (or hold the request past its timeout) and drop the vote
    must not keep it off the chain: once the slots it was handed to have passed and the head has
    not counted it, the voter gossips it."""
    sim = Simulation(tmp_path, nodes=5, seed=10, direct_votes=True)

    async def lying(*args: object, **kwargs: object) -> bytes:
        return b"accepted"  # and the vote never reaches them

    async def scenario(sim: Simulation) -> None:
        node = sim.nodes[0].node
        assert node is not None and node.vote_delivery is not None and node.signer is not None
        own = node.signer.public_key
        monkeypatch.setattr(node.vote_delivery, "network", type("Liars", (), {"request": lying})())
        # As if node 0 proposed no block while its votes can be included (its own blocks carry them).
        pooled = node.vote_pool.for_inclusion
        monkeypatch.setattr(node.vote_pool, "for_inclusion",
                            lambda epoch: [v for v in pooled(epoch) if v.vote.validator != own])
        await sim.run_until_slot(6 * EPOCH)
        assert node.votes_cast >= 4
        assert node.vote_delivery.sent_direct == node.votes_cast, "every vote looked delivered"
        counted = counted_votes(sim.nodes[1].node)  # type: ignore[arg-type]
        assert len(counted.get(own, set())) >= node.votes_cast - 1
        assert node.vote_delivery.gossiped_uncounted >= node.votes_cast - 1

    sim.run(scenario)


def test_an_uncounted_vote_is_not_gossiped_while_blocks_arrive_late(tmp_path: Path) -> None:
    """The check after the proposers' slots gossips an uncounted vote, except while the recent
    blocks arrived more than half a slot late: an overloaded network, where gossiping every late
    vote adds to the load."""
    sim = Simulation(tmp_path, nodes=4, seed=12, direct_votes=True, passive=frozenset({3}))
    sent: list[bytes] = []

    async def scenario(sim: Simulation) -> None:
        node, voter = sim.nodes[0].node, sim.nodes[3]
        assert node is not None and node.vote_delivery is not None and voter.key is not None
        await sim.run_until_slot(2 * EPOCH + 2)
        delivery = node.vote_delivery

        async def record(data: bytes) -> None:
            sent.append(data)

        delivery.gossip = record
        uncounted = own_vote(node, voter.key)  # the passive validator's vote: no block has it
        slot = node.current_slot()
        assert not await delivery.gossip_if_uncounted(uncounted, slot, block_delay_ms=2_000)
        assert sent == [] and delivery.held_back_overloaded == 1
        assert await delivery.gossip_if_uncounted(uncounted, slot, block_delay_ms=120)
        assert sent == [codec.encode(uncounted)] and delivery.gossiped_uncounted == 1

    sim.run(scenario)
