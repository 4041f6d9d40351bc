"""Casper-FFG finality in state, vote validity, slashing evidence, and burning with exact supply."""

from __future__ import annotations

import pytest

from p2pnode.chain import consensus, finality
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.types import (
    Checkpoint,
    FinalityVote,
    SignedHeader,
    SignedVote,
    SlashDoubleProposal,
    SlashVote,
    Transfer,
    randao_message,
)
from p2pnode.services.chain.block_tree import BlockTree, sign_block
from p2pnode.testing.factories import (
    DEV_CHAIN_ID,
    build_and_import,
    signed,
    validator_keys,
)

VALS = validator_keys(4)
EPOCH = 8


def vote_of(hot_index: int, source: Checkpoint, target: Checkpoint) -> SignedVote:
    key = VALS[hot_index][1]
    vote = FinalityVote(chain=DEV_CHAIN_ID, validator=key.public_key, source=source, target=target)
    return SignedVote(vote=vote, sig=key.sign(vote.signing_bytes()))


def produce(chain: BlockTree, slot: int, votes: list[SignedVote] = (), txs: list = ()) -> None:  # type: ignore[assignment]
    build_and_import(chain, slot, txs, votes)


def run_epochs(chain: BlockTree, epochs: int, voters: list[int]) -> None:
    """One block per slot; at each epoch's middle slot `voters` vote, included in the next block."""
    pending: list[SignedVote] = []
    for slot in range(chain.head.slot + 1, chain.head.slot + 1 + epochs * EPOCH):
        produce(chain, slot, pending)
        pending = []
        if slot % EPOCH == EPOCH // 2:
            state, head = chain.head_state(), chain.head
            target = finality.vote_target(state, head.hash, head.height, head.slot, slot // EPOCH)
            source = finality.justified_checkpoint(state)
            assert target is not None and source is not None
            if source.epoch < target.epoch:  # epoch 0's target is genesis itself
                pending = [vote_of(i, source, target) for i in voters]


def test_three_quarters_of_the_stake_justify_and_finalize(chain: BlockTree) -> None:
    run_epochs(chain, 4, voters=[0, 1, 2])
    state = chain.head_state()
    assert finality.justified_checkpoint(state).epoch == 3
    finalized = finality.finalized_checkpoint(state)
    assert finalized.epoch == 2 and finalized.height == 2 * EPOCH
    assert chain.store.canonical_hash(finalized.height) == finalized.hash
    assert chain.finalized == finalized


def test_half_of_the_stake_justifies_nothing(chain: BlockTree) -> None:
    run_epochs(chain, 4, voters=[0, 1])
    state = chain.head_state()
    assert finality.justified_checkpoint(state).epoch == 0
    assert finality.finalized_checkpoint(state).epoch == 0


def test_the_checkpoint_is_the_last_block_at_or_before_the_boundary(chain: BlockTree) -> None:
    for slot in (1, 2, 5, 7, 11):  # no block at slot 8: epoch 1's checkpoint is the block at slot 7
        produce(chain, slot)
    cp = finality.checkpoint_of(chain.head_state(), 1)
    assert cp is not None and cp.height == 4 and cp.hash == chain.store.canonical_hash(4)


def test_a_block_with_an_inapplicable_vote_is_invalid(chain: BlockTree) -> None:
    run_epochs(chain, 1, voters=[])
    produce(chain, EPOCH + 1)
    state, head = chain.head_state(), chain.head
    source = finality.justified_checkpoint(state)
    good_target = finality.checkpoint_of(state, 1)
    assert good_target is not None and source is not None
    wrong_target = Checkpoint(epoch=1, height=good_target.height, hash=b"\x07" * 32)
    slot = head.slot + 1
    for bad, reason in [
        (vote_of(0, source, wrong_target), "target_not_on_chain"),
        (vote_of(0, good_target, good_target), "source_not_before_target"),
        (vote_of(0, Checkpoint(epoch=0, height=0, hash=b"\x01" * 32), good_target), "source_not_justified"),
    ]:
        problem = finality.vote_problem(state, bad.vote, slot, consensus.validator_set_for_epoch(state, 1))
        assert problem == reason
        with pytest.raises(BlockInvalid, match="bad_vote"):
            produce(chain, slot, [bad])
    produce(chain, slot, [vote_of(0, source, good_target)])
    with pytest.raises(BlockInvalid, match="duplicate_vote"):
        produce(chain, slot + 1, [vote_of(0, source, good_target)])


def test_double_and_surround_votes_are_slashable_pairs() -> None:
    def v(s: int, t: int, h: bytes = b"\x01" * 32) -> FinalityVote:
        return FinalityVote(
            chain=DEV_CHAIN_ID,
            validator=b"\x05" * 32,
            source=Checkpoint(epoch=s, height=s, hash=h),
            target=Checkpoint(epoch=t, height=t, hash=h),
        )

    assert finality.is_slashable_pair(v(1, 3), v(2, 3, b"\x02" * 32))  # double
    assert finality.is_slashable_pair(v(1, 4), v(2, 3))  # surround
    assert finality.is_slashable_pair(v(2, 3), v(1, 4))  # surrounded
    assert not finality.is_slashable_pair(v(1, 2), v(2, 3))
    assert not finality.is_slashable_pair(v(1, 2), v(1, 2))


def test_slashing_evidence_burns_stake_keeps_supply_and_ejects(chain: BlockTree) -> None:
    produce(chain, 1)
    offender_slot = next(s for s in range(2, 100) if consensus.proposer_for_slot(chain.head_state(), s) == VALS[0][1].public_key)
    key = VALS[0][1]
    # Timestamp and reveal are fixed by the slot: the two blocks differ in their transactions.
    reveal = key.sign(randao_message(DEV_CHAIN_ID, offender_slot))
    transfer = signed(key, chain.head_state().nonce(key.public_key), Transfer(to=key.public_key, amount=1))
    first = chain.prepare_block(key.public_key, offender_slot, randao_reveal=reveal)
    second = chain.prepare_block(key.public_key, offender_slot, [transfer], randao_reveal=reveal)
    headers = [SignedHeader(header=b.header, sig=key.sign(b.header.signing_bytes())) for b in (first, second)]
    evidence = signed(VALS[1][1], 0, SlashDoubleProposal(first=headers[0], second=headers[1]))
    before = chain.head_state()
    stake, burned_before = before.total_stake(key.public_key), before.supply().burned
    produce(chain, offender_slot + 1, txs=[evidence])
    after = chain.head_state()
    burned = stake * after.param("slash_permille") // 1000
    assert consensus.is_slashed(after, key.public_key)
    assert after.total_stake(key.public_key) == stake - burned
    assert after.supply().burned == burned_before + burned
    assert key.public_key not in [hot for hot, _ in consensus.compute_validator_set(after)]
    from p2pnode.chain.transition import validate_tx
    from p2pnode.testing.factories import recompute_root

    ctx = chain.head_state()
    with pytest.raises(TxInvalid, match="already_slashed"):
        again = signed(VALS[2][1], 0, SlashDoubleProposal(first=headers[0], second=headers[1]))
        validate_tx(ctx, again.tx, _ctx(chain))
    with pytest.raises(TxInvalid, match="not_equivocation"):
        same = signed(VALS[2][1], 0, SlashDoubleProposal(first=headers[0], second=headers[0]))
        validate_tx(ctx, same.tx, _ctx(chain))
    assert recompute_root(chain.store.state_items()) == chain.head.state_root


def test_vote_evidence_must_be_slashable(chain: BlockTree) -> None:
    cp0 = Checkpoint(epoch=0, height=0, hash=b"\x01" * 32)
    a = vote_of(0, cp0, Checkpoint(epoch=1, height=8, hash=b"\x02" * 32))
    b = vote_of(0, cp0, Checkpoint(epoch=2, height=16, hash=b"\x03" * 32))
    from p2pnode.chain.transition import validate_tx

    with pytest.raises(TxInvalid, match="not_slashable"):
        validate_tx(chain.head_state(), signed(VALS[1][1], 0, SlashVote(first=a, second=b)).tx, _ctx(chain))
    c = vote_of(0, cp0, Checkpoint(epoch=1, height=8, hash=b"\x04" * 32))
    validate_tx(chain.head_state(), signed(VALS[1][1], 0, SlashVote(first=a, second=c)).tx, _ctx(chain))


def _ctx(chain: BlockTree):  # noqa: ANN202
    from p2pnode.chain.context import BlockContext

    return BlockContext(height=chain.head.height + 1, slot=chain.head.slot + 1, proposer=bytes(32), timestamp_ms=0)


def test_sign_block_keeps_everything_but_the_signature(chain: BlockTree) -> None:
    draft = chain.prepare_block(VALS[0][1].public_key, 3, randao_reveal=bytes(64))
    block = sign_block(draft, b"\x01" * 64)
    assert block.header == draft.header and block.sig == b"\x01" * 64
