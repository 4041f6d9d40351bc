"""Fork choice and reorganisation through the store; finality bounds what may be reverted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.forkchoice import BlockInfo, choose_head, head_key, is_better
from p2pnode.chain.types import SignedVote, Transfer
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.testing.factories import (
    build_and_import,
    finality_votes,
    recompute_root,
    signed,
    user_keys,
    validator_keys,
)

VALS = validator_keys(4)
ALICE, BOB = user_keys(2)


def info(h: int, height: int, justified: int) -> BlockInfo:
    return BlockInfo(bytes([h]) * 32, bytes(32), height, height, justified)


def test_the_order_is_justified_then_height_then_lowest_hash() -> None:
    assert is_better(info(9, 5, 2), info(1, 50, 1)), "a later justified checkpoint beats length"
    assert is_better(info(9, 6, 1), info(1, 5, 1)), "then the longer chain"
    assert is_better(info(1, 5, 1), info(2, 5, 1)), "then the lower hash"
    assert choose_head([info(3, 5, 1), info(2, 5, 1), info(4, 4, 1)]) == info(2, 5, 1)
    assert head_key(info(1, 5, 1)) > head_key(info(2, 5, 1))


def test_a_longer_fork_reorganises_state_both_ways(new_chain: Callable[[str], BlockTree]) -> None:
    a = new_chain("a")
    b = new_chain("b")
    fork_a = [build_and_import(a, 1, [signed(ALICE, 0, Transfer(to=BOB.public_key, amount=5))]), build_and_import(a, 2), build_and_import(a, 3)]
    fork_b = [build_and_import(b, 2, [signed(ALICE, 0, Transfer(to=BOB.public_key, amount=7))]), build_and_import(b, 3), build_and_import(b, 4), build_and_import(b, 5)]
    results = [a.import_block(block) for block in fork_b]
    # At equal height (3) the lower hash wins, so fork b may already take over at its third block.
    wins_tie = int.from_bytes(fork_b[2].hash, "big") < int.from_bytes(fork_a[2].hash, "big")
    assert [r.head for r in results] == [False, False, wins_tie, True]
    assert max(r.reorged for r in results) == 3
    assert a.head.hash == b.head.hash
    assert a.head_state().balance(BOB.public_key) == b.head_state().balance(BOB.public_key)
    assert recompute_root(a.store.state_items()) == b.head.state_root
    # The old branch was kept, verified: extending it past the new head switches back.
    assert a.is_known(fork_a[-1].hash, 3)
    c = new_chain("c")
    for block in fork_a:
        c.import_block(block)
    for slot in (6, 7, 8):
        build_and_import(c, slot)
    back = [a.import_block(c.store.canonical_block(height)) for height in range(4, 7)]
    assert back[-1].head and max(r.reorged for r in back) == 4  # all four blocks of fork b
    assert a.head.hash == c.head.hash
    assert recompute_root(a.store.state_items()) == c.head.state_root


def test_an_unknown_parent_is_refused(new_chain: Callable[[str], BlockTree]) -> None:
    a = new_chain("a")
    b = new_chain("b")
    build_and_import(b, 1)
    orphan = build_and_import(b, 2)
    with pytest.raises(BlockInvalid, match="unknown_parent"):
        a.import_block(orphan)


def _finalize(chain: BlockTree, epochs: int) -> None:
    pending: list[SignedVote] = []
    for slot in range(chain.head.slot + 1, chain.head.slot + 1 + 8 * epochs):
        build_and_import(chain, slot, votes=pending)
        pending = []
        if slot % 8 == 4 and slot > 8:
            pending = finality_votes(chain, slot // 8)


def test_nothing_at_or_below_finality_is_reverted(new_chain: Callable[[str], BlockTree]) -> None:
    a = new_chain("a")
    rival = new_chain("rival")
    build_and_import(rival, 2)  # a builds on slot 1: the chains differ from height 1
    long_fork = [build_and_import(rival, s) for s in range(3, 60)]
    _finalize(a, 4)
    finalized = a.finalized
    assert finalized is not None and finalized.height >= 16
    with pytest.raises(BlockInvalid, match="conflicts_with_finality"):
        a.import_block(rival.store.canonical_block(1))
    with pytest.raises(BlockInvalid):
        for block in long_fork:
            a.import_block(block)
    assert a.store.canonical_hash(finalized.height) == finalized.hash
    # Undo records are pruned at and below the oldest finalized checkpoint whose state is still
    # served to joiners (a few before the latest) and kept above it.
    oldest = a.earlier_finalized[-1]
    assert a.previous_finalized is not None and oldest.epoch <= a.previous_finalized.epoch < finalized.epoch
    assert a.store.undo_record(a.store.canonical_hash(oldest.height)) is None, "undo pruned below finality"
    assert a.store.undo_record(a.store.canonical_hash(oldest.height + 1)) is not None
    assert a.store.undo_record(a.head.hash) is not None
