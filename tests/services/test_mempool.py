"""Mempool rules: admission, dedupe, nonce order, future nonces, fee priority, eviction, expiry, re-gossip."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from p2pnode.chain import consensus
from p2pnode.chain.context import BlockContext
from p2pnode.chain.types import SignedTx, Transfer
from p2pnode.services.chain import mempool as mempool_module
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.mempool import Mempool, MempoolConfig
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys
from protocols import codec

ALICE, BOB, CAROL, DAVE = user_keys(4)
HOTS = {hot.public_key: hot for _, hot in validator_keys(4)}


def ctx(chain: BlockTree) -> BlockContext:
    return BlockContext(height=chain.head.height + 1, slot=chain.head.slot + 1, proposer=bytes(32), timestamp_ms=0)


def pay(sender, nonce: int, fee: int = 1_000, amount: int = 1) -> SignedTx:  # noqa: ANN001
    return signed(sender, nonce, Transfer(to=DAVE.public_key, amount=amount), fee=fee)


def add(pool: Mempool, chain: BlockTree, stx: SignedTx, now: int = 0) -> str:
    return pool.add(codec.encode(stx), chain.head_state(), ctx(chain), now).reason


def test_admission_checks_decoding_signature_and_state(chain: BlockTree) -> None:
    pool = Mempool()
    assert add(pool, chain, pay(ALICE, 0)) == "added"
    assert add(pool, chain, pay(ALICE, 0)) == "duplicate"
    assert pool.add(b"\xff\x00", chain.head_state(), ctx(chain), 0).reason == "malformed"
    forged = SignedTx(tx=pay(BOB, 0).tx, sig=bytes(64))
    admission = pool.add(codec.encode(forged), chain.head_state(), ctx(chain), 0)
    assert admission.reason == "bad_signature" and admission.stateless_rejection
    assert add(pool, chain, pay(BOB, 0, amount=10**19)) == "insufficient_balance"
    assert add(pool, chain, pay(BOB, 0, fee=1)) == "fee_too_low"
    assert len(pool) == 1


def test_future_nonces_are_held_but_bounded(chain: BlockTree) -> None:
    pool = Mempool(MempoolConfig(max_future_per_sender=2, max_nonce_gap=10))
    assert add(pool, chain, pay(ALICE, 2)) == "added"
    assert add(pool, chain, pay(ALICE, 3)) == "added"
    assert add(pool, chain, pay(ALICE, 5)) == "too_many_future"
    assert add(pool, chain, pay(ALICE, 11)) == "nonce_too_far"
    assert pool.candidates(chain.head_state(), 10) == [], "nonce 0 is missing: nothing is executable"
    assert add(pool, chain, pay(ALICE, 0)) == "added"
    assert add(pool, chain, pay(ALICE, 1)) == "added"
    assert [s.tx.nonce for s in pool.candidates(chain.head_state(), 10)] == [0, 1, 2, 3]
    assert pool.next_nonce(ALICE.public_key, chain.head_state()) == 4


def test_replacement_needs_a_higher_fee(chain: BlockTree) -> None:
    pool = Mempool()
    assert add(pool, chain, pay(ALICE, 0, fee=10_000)) == "added"
    assert add(pool, chain, pay(ALICE, 0, fee=10_500, amount=2)) == "underpriced_replacement"
    assert add(pool, chain, pay(ALICE, 0, fee=11_000, amount=3)) == "replaced"
    assert len(pool) == 1 and pool.candidates(chain.head_state(), 5)[0].tx.fee == 11_000


def test_candidates_follow_fee_across_senders_and_nonce_within(chain: BlockTree) -> None:
    pool = Mempool()
    for stx in [pay(ALICE, 0, fee=2_000), pay(ALICE, 1, fee=9_000), pay(BOB, 0, fee=5_000), pay(CAROL, 0, fee=1_000)]:
        assert add(pool, chain, stx) == "added"
    order = [(s.tx.sender, s.tx.nonce) for s in pool.candidates(chain.head_state(), 10)]
    assert order == [
        (BOB.public_key, 0),
        (ALICE.public_key, 0),
        (ALICE.public_key, 1),
        (CAROL.public_key, 0),
    ]
    assert len(pool.candidates(chain.head_state(), 2)) == 2


def test_a_full_pool_evicts_the_lowest_fee(chain: BlockTree) -> None:
    pool = Mempool(MempoolConfig(max_txs=2))
    assert add(pool, chain, pay(ALICE, 0, fee=3_000)) == "added"
    assert add(pool, chain, pay(BOB, 0, fee=1_000)) == "added"
    assert add(pool, chain, pay(CAROL, 0, fee=1_000)) == "pool_full"
    assert add(pool, chain, pay(CAROL, 0, fee=2_000)) == "added"
    assert {s.tx.sender for s in pool.candidates(chain.head_state(), 5)} == {ALICE.public_key, CAROL.public_key}


def test_included_transactions_leave_and_old_ones_expire(chain: BlockTree) -> None:
    pool = Mempool(MempoolConfig(ttl_ms=1_000))
    first, second = pay(ALICE, 0), pay(BOB, 0)
    add(pool, chain, first, now=0)
    add(pool, chain, second, now=900)
    slot = chain.head.slot + 1
    proposer = consensus.proposer_for_slot(chain.head_state(), slot)
    chain.import_block(chain.build_block(HOTS[proposer], slot, [first]))
    assert pool.remove_applied(chain.head_state()) == 1
    assert first.id not in pool and second.id in pool
    assert pool.expire(1_500) == 0
    assert pool.expire(2_000) == 1 and len(pool) == 0


def test_pending_transactions_are_regossiped_at_intervals(chain: BlockTree) -> None:
    pool = Mempool()
    add(pool, chain, pay(ALICE, 0), now=0)
    add(pool, chain, pay(BOB, 0), now=500)
    assert pool.due_for_gossip(999, 1_000, 10) == []
    assert len(pool.due_for_gossip(1_000, 1_000, 10)) == 1
    assert len(pool.due_for_gossip(1_500, 1_000, 10)) == 1
    assert pool.due_for_gossip(1_600, 1_000, 10) == []


def test_a_block_does_not_verify_again_the_signatures_its_pooled_transactions_had(
    chain: BlockTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protocols import validation

    pool = Mempool()
    pooled, fresh = pay(ALICE, 0), pay(BOB, 0)
    assert add(pool, chain, pooled) == "added"
    chain.tx_signature_verified = lambda stx: stx.id in pool
    checked: list[SignedTx] = []
    real_checks = validation.tx_signature_checks

    def counting_checks(stx: SignedTx) -> list[validation.SignatureCheck]:
        checked.append(stx)
        return real_checks(stx)

    monkeypatch.setattr(validation, "tx_signature_checks", counting_checks)
    slot = chain.head.slot + 1
    proposer = consensus.proposer_for_slot(chain.head_state(), slot)
    assert chain.import_block(chain.build_block(HOTS[proposer], slot, [pooled, fresh])).head
    assert checked == [fresh]


def test_a_senders_pending_transactions_must_be_jointly_affordable(tmp_path: Path) -> None:
    poor = user_keys(5)[4]
    chain = open_chain(tmp_path / "poor.sqlite", make_genesis(4, 4, extra_balances=((poor.public_key, 10_000),)))
    pool = Mempool()
    assert add(pool, chain, pay(poor, 0, fee=1_000, amount=4_000)) == "added"
    assert pool.reserved(poor.public_key) == 5_000
    assert add(pool, chain, pay(poor, 1, fee=1_000, amount=4_000)) == "added"
    # 10,000 - 2 x 5,000 leaves nothing: not even the fee of a third
    assert add(pool, chain, pay(poor, 2, fee=1_000, amount=1)) == "insufficient_balance"
    # a replacement is measured against the others only
    assert add(pool, chain, pay(poor, 1, fee=1_100, amount=3_900)) == "replaced"
    assert add(pool, chain, pay(poor, 1, fee=2_000, amount=4_000)) == "insufficient_balance"


def test_future_nonces_hold_a_bounded_share_and_leave_first(chain: BlockTree) -> None:
    pool = Mempool(MempoolConfig(max_txs=4, max_future_txs=2))
    assert add(pool, chain, pay(ALICE, 5)) == "added"
    assert add(pool, chain, pay(BOB, 5)) == "added"
    assert add(pool, chain, pay(CAROL, 5)) == "future_pool_full"
    assert pool.future_count == 2
    assert add(pool, chain, pay(ALICE, 0)) == "added"
    assert add(pool, chain, pay(BOB, 0)) == "added"
    # full: an executable newcomer pushes out a future one, even at a lower fee
    assert add(pool, chain, pay(CAROL, 0, fee=1_000)) == "added"
    assert pool.future_count == 1 and len(pool) == 4
    # filling the gap makes the future ones executable
    for nonce in range(1, 5):
        pool.add(codec.encode(pay(ALICE, nonce)), chain.head_state(), ctx(chain), 0)
    assert all(not e.future for e in pool._by_id.values() if e.stx.tx.sender == ALICE.public_key)


def test_block_order_lets_senders_take_turns_at_equal_fee_and_evict_drops_failures(chain: BlockTree) -> None:
    pool = Mempool()
    for nonce in range(3):
        assert add(pool, chain, pay(ALICE, nonce)) == "added"
    assert add(pool, chain, pay(BOB, 0)) == "added"
    order = [(s.tx.sender, s.tx.nonce) for s in pool.ordered(chain.head_state())]
    assert order[:2] == [(ALICE.public_key, 0), (BOB.public_key, 0)], "the first nonces of both come first"
    first = pool.candidates(chain.head_state(), 1)[0]
    assert pool.evict([first.id], chain.head_state()) == 1
    assert [s.tx.sender for s in pool.ordered(chain.head_state())] == [BOB.public_key], "ALICE's later nonces wait"
    assert pool.future_count == 2


def test_a_full_pool_refuses_what_outranks_nothing_before_checking_its_signature(
    chain: BlockTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Mempool(MempoolConfig(max_txs=2))
    add(pool, chain, pay(ALICE, 0, fee=2_000))
    add(pool, chain, pay(BOB, 0, fee=2_000))
    checked: list[SignedTx] = []
    real_check = mempool_module.check_tx_signatures
    monkeypatch.setattr(mempool_module, "check_tx_signatures", lambda stx: checked.append(stx) or real_check(stx))
    forged = bytearray(codec.encode(pay(CAROL, 0, fee=2_000)))
    forged[-1] ^= 1
    assert pool.add(bytes(forged), chain.head_state(), ctx(chain), 0).reason == "pool_full"
    assert add(pool, chain, pay(CAROL, 0, fee=1_000)) == "pool_full"
    assert checked == [], "no signature checked for a transaction the full pool could not take"
    assert add(pool, chain, pay(CAROL, 0, fee=3_000)) == "added" and len(checked) == 1


def test_the_eviction_candidate_is_always_the_lowest_entry(tmp_path: Path) -> None:
    """The O(log n) eviction order agrees with a scan of the whole pool through adds (some restored
    from dropped blocks), replacements, evictions, inclusions and future nonces becoming executable."""
    rng = random.Random(7)
    senders = user_keys(8)
    chain = open_chain(tmp_path / "rank.sqlite", make_genesis(4, 8))
    pool = Mempool(MempoolConfig(max_txs=24, max_future_txs=8, max_future_per_sender=4))

    def scan() -> object:
        return min(pool._by_id.values(), key=lambda e: (not e.future, e.stx.tx.fee, e.restored, -e.stx.tx.nonce, e.tx_id))

    outcomes = set()
    for step in range(300):
        state = chain.head_state()
        sender = rng.choice(senders)
        nonce = state.nonce(sender.public_key) + rng.randrange(6)
        stx = pay(sender, nonce, fee=1_000 + 100 * rng.randrange(8))
        data = codec.encode(stx)
        outcomes.add(pool.add_signed(stx, data, stx.id, state, ctx(chain), 0, restored=step % 7 == 0).reason)
        if step % 25 == 24:
            pool.evict([rng.choice(list(pool._by_id))], state)
        if step % 60 == 59:  # a block takes a few of the pool's executable transactions
            slot = chain.head.slot + 1
            proposer = HOTS[consensus.proposer_for_slot(state, slot)]
            chain.import_block(chain.build_block(proposer, slot, pool.candidates(state, 5)))
            pool.remove_applied(chain.head_state())
        if pool._by_id:
            assert pool._lowest() is scan()
        assert len(pool._ranks) <= 2 * len(pool._by_id) + 1024
    assert {"added", "replaced", "pool_full", "future_pool_full"} <= outcomes


def test_removing_applied_transactions_of_named_senders_reads_only_theirs(chain: BlockTree) -> None:
    pool = Mempool()
    included, waiting = pay(ALICE, 0), pay(BOB, 0)
    add(pool, chain, included)
    add(pool, chain, waiting)
    add(pool, chain, pay(ALICE, 1))
    slot = chain.head.slot + 1
    chain.import_block(chain.build_block(HOTS[consensus.proposer_for_slot(chain.head_state(), slot)], slot, [included]))
    state = chain.head_state()
    read: list[bytes] = []
    real_nonce = state.nonce
    state.nonce = lambda who: read.append(who) or real_nonce(who)  # type: ignore[method-assign]
    assert pool.remove_applied(state, [ALICE.public_key]) == 1
    assert read == [ALICE.public_key]
    assert included.id not in pool and waiting.id in pool and len(pool) == 2


def test_a_transaction_whose_signature_this_node_verified_is_not_checked_again(
    chain: BlockTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transactions of blocks a reorganisation rolled back return to the pool this way."""
    checked: list[SignedTx] = []
    real_check = mempool_module.check_tx_signatures
    monkeypatch.setattr(mempool_module, "check_tx_signatures", lambda stx: checked.append(stx) or real_check(stx))
    pool = Mempool()
    returning, fresh = pay(ALICE, 0), pay(BOB, 0)
    for stx, verified in ((returning, True), (fresh, False)):
        data = codec.encode(stx)
        admission = pool.add_signed(stx, data, stx.id, chain.head_state(), ctx(chain), 0, signature_verified=verified)
        assert admission.added
    assert checked == [fresh]
