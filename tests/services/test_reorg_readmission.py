"""Transactions of blocks a reorganisation drops go back to the pool in nonce order and ahead of
newer transactions of equal rank, so no sender is left with a gap when the pool is full."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain.types import SignedTx, Transfer
from p2pnode.services.chain.chain_service import ChainService, NodeConfig
from p2pnode.services.chain.mempool import MempoolConfig
from p2pnode.services.clock import TrioClock
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec

ALICE, BOB, CAROL, DAVE = user_keys(4)
GENESIS = make_genesis(4, 4)


def pay(sender, nonce: int) -> SignedTx:  # noqa: ANN001
    return signed(sender, nonce, Transfer(to=DAVE.public_key, amount=1))


async def test_a_deep_reorganisation_returns_its_transactions_in_order_into_a_full_pool(tmp_path: Path) -> None:
    node = ChainService(open_chain(tmp_path / "node.sqlite", GENESIS), MemoryHub().add_peer("node"), TrioClock(),
                        config=NodeConfig(mempool=MempoolConfig(max_txs=6)))
    rival = open_chain(tmp_path / "rival.sqlite", GENESIS)
    dropped = [pay(ALICE, n) for n in range(4)]
    for slot, txs in ((1, dropped[:2]), (2, dropped[2:])):  # two blocks, Alice's nonces 0-1 then 2-3
        build_and_import(node.chain, slot, txs)
    # Newer transactions of equal fee fill the pool.
    fillers = [pay(BOB, n) for n in range(3)] + [pay(CAROL, n) for n in range(3)]
    assert all(a.added for a in await node.submit_txs([codec.encode(t) for t in fillers]))
    # A longer rival chain without Alice's transactions replaces both blocks.
    for slot in (3, 4, 5):
        node._import_one(build_and_import(rival, slot))
    assert node.chain.head.hash == rival.head.hash
    state = node.chain.head_state()
    assert state.nonce(ALICE.public_key) == 0
    assert len(node.mempool) == 6
    for stx in dropped:
        assert stx.id in node.mempool, f"Alice's nonce {stx.tx.nonce} lost"
    assert node.mempool.future_count == 0
    assert [s.tx.nonce for s in node.mempool.ordered(state) if s.tx.sender == ALICE.public_key] == [0, 1, 2, 3]
    # What made room: other senders' last nonces, so they have no gap either.
    left = {(s.tx.sender, s.tx.nonce) for s in node.mempool.ordered(state)}
    for key in (BOB, CAROL):
        nonces = sorted(n for sender, n in left if sender == key.public_key)
        assert nonces == list(range(len(nonces)))
