"""The network's default block capacity: 2,048 transfers per block (docs/decisions.md, "Default
block capacity"). A full block of transfers stays under half of `max_block_bytes`, imports on a
peer that never saw its transactions, and one transaction more is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.params import GLOBAL_PARAMS
from p2pnode.chain.transition import apply_block_body, body_root
from p2pnode.chain.types import Transfer
from p2pnode.services.chain.mempool import MempoolConfig
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys
from protocols import codec

SENDERS = 33


def test_default_capacity_and_the_pool_that_follows_it() -> None:
    block_txs = GLOBAL_PARAMS["max_block_txs"].default
    assert block_txs == 2_048
    # The pool holds four full blocks: what the network has pending plus a block's worth of room.
    assert MempoolConfig().max_txs == 4 * block_txs


def test_a_full_default_block_fits_imports_and_one_more_is_refused(tmp_path: Path) -> None:
    genesis = make_genesis(4, SENDERS)
    proposer, follower = (open_chain(tmp_path / f"{name}.sqlite", genesis) for name in ("proposer", "follower"))
    state = proposer.head_state()
    cap = state.param("max_block_txs")
    keys = user_keys(SENDERS)
    sink = keys[-1].public_key
    per_sender = cap // (SENDERS - 1) + 1
    txs = [signed(keys[s], n, Transfer(to=sink, amount=1)) for n in range(per_sender) for s in range(SENDERS - 1)]
    assert len(txs) > cap
    block = build_and_import(proposer, 1, txs[:cap])
    size = len(codec.encode(block))
    assert size < state.param("max_block_bytes") // 2, size
    follower.import_block(block)  # every signature checked: nothing of it was pooled here
    assert follower.head.hash == block.hash
    # One transaction more than the cap, with a body root that matches it: refused by count.
    extra = txs[cap]
    over = dataclasses.replace(block, txs=(*block.txs, extra),
                               header=dataclasses.replace(block.header, tx_root=body_root((*block.txs, extra), block.votes)))
    with pytest.raises(BlockInvalid) as refused:
        apply_block_body(open_chain(tmp_path / "third.sqlite", genesis).head_state().child(), over)
    assert refused.value.reason == "too_many_txs"
