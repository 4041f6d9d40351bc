"""Validator-signed junk (slots the signer does not own, unknown parents) is not relayed, and cannot
push a proposer's first header out of the equivocation watch: a double proposal made across a flood
of 256 junk blocks still ends in slashing evidence on chain."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain import consensus
from p2pnode.chain.encoding import sha256
from p2pnode.chain.types import (
    Block,
    Header,
    SignedTx,
    SlashDoubleProposal,
    Transfer,
    body_root,
    make_tx,
    randao_message,
)
from p2pnode.services.chain.block_tree import sign_block
from p2pnode.services.chain.votes import EquivocationWatch
from p2pnode.testing.sim import Simulation
from protocols import codec
from protocols.network import Verdict

FLOODERS = 64
JUNK_PER_FLOODER = 4
# A small watch window, so that the junk's distinct slots (a few dozen this early in the chain)
# would be more than enough to flush a watch that evicts by count.
WATCH_SLOTS = 16


def test_junk_is_not_relayed_and_a_double_proposal_across_it_is_slashed(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=13, passive=frozenset({3}))
    flooders = [sim.net.endpoint(f"flooder-{i:02d}") for i in range(FLOODERS)]

    async def scenario(sim: Simulation) -> None:
        rogue = sim.nodes[3]
        assert rogue.key is not None and rogue.node is not None
        key = rogue.key
        evidence: list[SlashDoubleProposal] = []
        for honest in sim.nodes[:3]:
            node = honest.node
            assert node is not None
            node.watch = EquivocationWatch(keep_slots=WATCH_SLOTS)
            node._queue_evidence = _recording(node._queue_evidence, evidence)  # type: ignore[method-assign]
        await sim.run_until_slot(24)
        chain = rogue.chain
        slot = rogue.node.current_slot() + 2
        while consensus.proposer_for_slot(chain.head_state(), slot) != key.public_key:
            slot += 1
        await sim.run_until_slot(slot - 1)  # just before the rogue's slot starts
        # Timestamp and reveal are fixed by the slot: the two blocks differ in their transactions.
        state = chain.head_state()
        transfer = make_tx(state.chain_id, key.public_key, state.nonce(key.public_key), state.param("min_fee"),
                           Transfer(to=key.public_key, amount=1))
        reveal = key.sign(randao_message(state.chain_id, slot))
        drafts = [
            chain.prepare_block(key.public_key, slot, txs, randao_reveal=reveal)
            for txs in ((), (SignedTx(tx=transfer, sig=key.sign(transfer.signing_bytes())),))
        ]
        first, second = (sign_block(d, key.sign(d.header.signing_bytes())) for d in drafts)
        topic = rogue.node.topics["blocks"]
        await rogue.endpoint.publish(topic, codec.encode(first))
        await sim.run_until_slot(slot)

        head = sim.nodes[0].chain.head
        owned = {s for s in range(1, slot + 2) if consensus.proposer_for_slot(chain.head_state(), s) == key.public_key}
        free_slots = [s for s in range(1, slot + 2) if s not in owned]
        junk = []
        for n in range(FLOODERS * JUNK_PER_FLOODER):
            on_head = n % 2 == 0
            header = Header(
                chain=head.chain, version=head.version, height=head.height + 1 + (0 if on_head else n),
                slot=free_slots[n % len(free_slots)],
                parent=head.hash if on_head else sha256(b"nowhere" + n.to_bytes(4, "big")),
                proposer=key.public_key, state_root=sha256(n.to_bytes(4, "big")), tx_root=body_root((), ()),
                timestamp_ms=0, randao_reveal=key.sign(randao_message(head.chain, free_slots[n % len(free_slots)])),
            )
            junk.append(codec.encode(Block(header=header, sig=key.sign(header.signing_bytes()), txs=(), votes=())))
        for index, data in enumerate(junk):
            await flooders[index // JUNK_PER_FLOODER].publish(topic, data)
        await sim.run_until_slot(slot + 1)
        await rogue.endpoint.publish(topic, codec.encode(second))
        await sim.run_until_slot(slot + 6)

        assert any(e.first.header.slot == slot for e in evidence), "the double proposal produced no evidence"
        for honest in sim.nodes[:3]:
            node = honest.node
            assert node is not None
            assert consensus.is_slashed(node.chain.head_state(), key.public_key), f"node {honest.index}: no slashing"
            assert all(node._guard_block("anyone", data).verdict is not Verdict.ACCEPT for data in junk), "junk relayed"
        assert sum(n.node.evidence_submitted for n in sim.nodes[:3] if n.node is not None) >= 1

    sim.run(scenario)


def _recording(queue_evidence, seen: list):  # noqa: ANN001, ANN202
    def record(evidence) -> None:  # noqa: ANN001
        seen.append(evidence)
        queue_evidence(evidence)

    return record
