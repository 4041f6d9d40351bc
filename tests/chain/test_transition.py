"""The state transition: every rejection reason, replay protection, all-or-nothing blocks."""

from __future__ import annotations

import pytest

from p2pnode.chain import consensus
from p2pnode.chain.context import BlockContext
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.types import AddStake, RemoveStake, SetTake, SignedTx, Transfer, make_tx
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.testing.factories import (
    DEV_CHAIN_ID,
    build_and_import,
    recompute_root,
    signed,
    user_keys,
    validator_keys,
)
from protocols.validation import InvalidSignature, check_tx_signatures

ALICE, BOB, CAROL, _ = user_keys(4)
VALS = validator_keys(4)
HOTS = {hot.public_key: hot for _, hot in VALS}


def ctx_for(db: BlockTree) -> BlockContext:
    return BlockContext(height=db.head.height + 1, slot=db.head.slot + 1, proposer=VALS[0][1].public_key, timestamp_ms=0)


def produce(db: BlockTree, txs: list[SignedTx]) -> None:
    build_and_import(db, txs=txs)


def reject(db: BlockTree, stx: SignedTx) -> str:
    from p2pnode.chain.transition import validate_tx

    with pytest.raises(TxInvalid) as info:
        validate_tx(db.head_state(), stx.tx, ctx_for(db))
    return info.value.reason


def test_transfer_moves_balance_pays_fee_and_bumps_nonce(chain: BlockTree) -> None:
    before = chain.head_state()
    a0, b0 = before.balance(ALICE.public_key), before.balance(BOB.public_key)
    produce(chain, [signed(ALICE, 0, Transfer(to=BOB.public_key, amount=500), fee=7_000)])
    after = chain.head_state()
    assert after.balance(ALICE.public_key) == a0 - 7_500
    assert after.balance(BOB.public_key) == b0 + 500
    assert after.nonce(ALICE.public_key) == 1


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: signed(ALICE, 0, Transfer(to=BOB.public_key, amount=10**30 % 2**64)), "insufficient_balance"),
        (lambda: signed(ALICE, 0, Transfer(to=BOB.public_key, amount=0)), "zero_amount"),
        (lambda: signed(ALICE, 5, Transfer(to=BOB.public_key, amount=1)), "future_nonce"),
        (lambda: signed(ALICE, 0, Transfer(to=BOB.public_key, amount=1), fee=1), "fee_too_low"),
        (lambda: signed(ALICE, 0, Transfer(to=BOB.public_key, amount=1), chain_id="other-chain"), "wrong_chain"),
        (lambda: signed(user_keys(9)[8], 0, Transfer(to=BOB.public_key, amount=1)), "insufficient_balance"),
        (lambda: signed(ALICE, 0, RemoveStake(hotkey=VALS[0][1].public_key, amount=1)), "insufficient_stake"),
        (lambda: signed(ALICE, 0, RemoveStake(hotkey=VALS[0][1].public_key, amount=0)), "zero_amount"),
        (lambda: signed(ALICE, 0, AddStake(hotkey=VALS[0][1].public_key, amount=1)), "stake_below_minimum"),
        (lambda: signed(ALICE, 0, AddStake(hotkey=ALICE.public_key, amount=10**9)), "unknown_hotkey"),
        (lambda: signed(ALICE, 0, SetTake(hotkey=VALS[0][1].public_key, take=0)), "not_hotkey_owner"),
        (lambda: signed(VALS[0][0], 0, SetTake(hotkey=VALS[0][1].public_key, take=65535)), "take_too_high"),
    ],
)
def test_rejection_reasons(chain: BlockTree, build, reason: str) -> None:
    assert reject(chain, build()) == reason


def test_stale_nonce_and_replay_of_the_same_tx(chain: BlockTree) -> None:
    stx = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=1))
    produce(chain, [stx])
    assert reject(chain, stx) == "stale_nonce"
    with pytest.raises(BlockInvalid, match="stale_nonce"):
        produce(chain, [stx])


def test_a_tx_signed_for_another_chain_fails_here_twice_over(chain: BlockTree) -> None:
    foreign = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=1), chain_id="other-chain")
    assert reject(chain, foreign) == "wrong_chain"
    # relabelling it with our chain id breaks the signature, which covers the chain id
    relabelled = SignedTx(tx=make_tx(DEV_CHAIN_ID, ALICE.public_key, 0, 1_000, foreign.tx.body), sig=foreign.sig)
    with pytest.raises(InvalidSignature, match="bad_signature"):
        check_tx_signatures(relabelled)


def test_tampered_amount_breaks_signature() -> None:
    stx = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=1))
    forged = SignedTx(tx=make_tx(DEV_CHAIN_ID, ALICE.public_key, 0, 1_000, Transfer(to=BOB.public_key, amount=2)), sig=stx.sig)
    check_tx_signatures(stx)
    with pytest.raises(InvalidSignature):
        check_tx_signatures(forged)


def test_block_applies_all_or_nothing(chain: BlockTree) -> None:
    good = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=5))
    bad = signed(ALICE, 1, Transfer(to=BOB.public_key, amount=10**18))
    head, root = chain.head.hash, chain.head.state_root
    with pytest.raises(BlockInvalid, match="insufficient_balance"):
        produce(chain, [good, bad])
    assert chain.head.hash == head and chain.head.state_root == root
    assert chain.head_state().nonce(ALICE.public_key) == 0


def test_stake_delegation_moves_balance_to_stake(chain: BlockTree) -> None:
    hot = VALS[1][1].public_key
    produce(chain, [signed(ALICE, 0, AddStake(hotkey=hot, amount=50 * 10**9))])
    s = chain.head_state()
    assert s.stake(ALICE.public_key, hot) == 50 * 10**9
    assert s.total_stake(hot) == 1_050 * 10**9
    assert ALICE.public_key in s.stakers(hot)
    produce(chain, [signed(ALICE, 1, RemoveStake(hotkey=hot, amount=50 * 10**9))])
    s = chain.head_state()
    assert s.stake(ALICE.public_key, hot) == 0 and ALICE.public_key not in s.stakers(hot)


def test_block_rejects_wrong_proposer_and_bad_root(chain: BlockTree) -> None:
    state = chain.head_state()
    slot = 1
    right = consensus.proposer_for_slot(state, slot)
    wrong = next(k for k in HOTS.values() if k.public_key != right)
    block = chain.build_block(HOTS[right], slot)
    from dataclasses import replace

    from p2pnode.chain.types import Block, randao_message

    forged_header = replace(
        block.header, proposer=wrong.public_key, randao_reveal=wrong.sign(randao_message(state.chain_id, slot))
    )
    forged = Block(header=forged_header, sig=wrong.sign(forged_header.signing_bytes()), txs=(), votes=())
    with pytest.raises(BlockInvalid, match="wrong_proposer"):
        chain.import_block(forged)
    for stamp in (0, block.header.timestamp_ms + 1, 2**64 - 1):
        late_header = replace(block.header, timestamp_ms=stamp)
        late = Block(header=late_header, sig=HOTS[right].sign(late_header.signing_bytes()), txs=(), votes=())
        with pytest.raises(BlockInvalid, match="wrong_timestamp"):
            chain.import_block(late)
    for reveal in (bytes(64), HOTS[right].sign(randao_message(state.chain_id, slot + 1))):
        ground_header = replace(block.header, randao_reveal=reveal)
        ground = Block(header=ground_header, sig=HOTS[right].sign(ground_header.signing_bytes()), txs=(), votes=())
        with pytest.raises(BlockInvalid, match="bad_randao_reveal"):
            chain.import_block(ground)
    bad_root_header = replace(block.header, state_root=bytes(32))
    bad_root = Block(header=bad_root_header, sig=HOTS[right].sign(bad_root_header.signing_bytes()), txs=(), votes=())
    with pytest.raises(BlockInvalid, match="bad_state_root"):
        chain.import_block(bad_root)
    unsigned = Block(header=block.header, sig=bytes(64), txs=(), votes=())
    with pytest.raises(BlockInvalid, match="bad_signature"):
        chain.import_block(unsigned)
    chain.import_block(block)
    assert chain.head.height == 1


def test_incremental_root_equals_recomputation(chain: BlockTree) -> None:
    for i in range(5):
        produce(chain, [signed(ALICE, i, Transfer(to=CAROL.public_key, amount=i + 1)),
                        signed(BOB, i, Transfer(to=ALICE.public_key, amount=3))])
        assert recompute_root(chain.store.state_items()) == chain.head.state_root
    # two different states never share a root
    assert len({chain.store.canonical_block(h).header.state_root for h in range(6)}) == 6
