"""POST /txs: a batch of encoded transactions admitted in one request, with a result per transaction."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio

from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.encoding import sha256
from p2pnode.chain.types import Transfer
from p2pnode.cli.client import ApiError, post_bytes, post_txs
from p2pnode.services.api.routes import MAX_BATCH_TXS
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.chain.mempool import Mempool
from p2pnode.services.clock import TrioClock
from p2pnode.testing.chain_api import serve_chain_api
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec


def node_at(tmp_path: Path) -> ChainService:
    return ChainService(open_chain(tmp_path / "chain.sqlite", make_genesis(4, 4)), MemoryHub().add_peer("batch"), TrioClock())



async def test_batch_admits_valid_and_names_each_refusal(tmp_path: Path) -> None:
    node = node_at(tmp_path)
    alice, bob = user_keys(2)
    # 40 transfers of one sender in nonce order: each sees the ones before it pending.
    run = [codec.encode(signed(alice, n, Transfer(to=bob.public_key, amount=1))) for n in range(40)]
    forged = bytearray(codec.encode(signed(bob, 0, Transfer(to=alice.public_key, amount=1))))
    forged[-1] ^= 1  # the signature's last byte
    stale = codec.encode(signed(alice, 0, Transfer(to=bob.public_key, amount=2)))  # nonce 0 again, same fee
    batch = run + [bytes(forged), b"\xa0", run[3], stale]
    async with trio.open_nursery() as nursery:
        api = await serve_chain_api(nursery, node)
        answer = await trio.to_thread.run_sync(post_txs, api, batch)
        nursery.cancel_scope.cancel()
    assert answer["added"] == 40
    reasons = [r["reason"] for r in answer["results"]]
    assert reasons == ["added"] * 40 + ["bad_signature", "malformed", "duplicate", "underpriced_replacement"]
    assert [r["tx"] for r in answer["results"][:40]] == [sha256(d).hex() for d in run]
    assert len(node.mempool) == 40 and node.mempool.next_nonce(alice.public_key, node.chain.head_state()) == 40


async def test_bad_batches_are_named_400s(tmp_path: Path) -> None:
    node = node_at(tmp_path)
    alice, bob = user_keys(2)
    one = codec.encode(signed(alice, 0, Transfer(to=bob.public_key, amount=1)))
    bad = {
        "bad_batch": [b"\xff", canonical_encode({"txs": [one]}), canonical_encode([one, 7]), one + b"\x00"],
        "empty_batch": [canonical_encode([])],
        "batch_too_large": [canonical_encode([one] * (MAX_BATCH_TXS + 1))],
    }
    async with trio.open_nursery() as nursery:
        api = await serve_chain_api(nursery, node)
        for name, bodies in bad.items():
            for body in bodies:
                with pytest.raises(ApiError, match=rf"\(400\): {name}"):
                    await trio.to_thread.run_sync(partial(post_bytes, api, "/txs", body))
        nursery.cancel_scope.cancel()
    assert len(node.mempool) == 0  # nothing of a refused batch is admitted


async def test_batch_admission_equals_one_by_one(tmp_path: Path) -> None:
    """`add_batch` gives the same admissions and pool as offering each transaction in turn."""
    node = node_at(tmp_path)
    keys = user_keys(6)
    datas = [codec.encode(signed(keys[i % 5], i // 5 + (i % 7 == 3), Transfer(to=keys[5].public_key, amount=i)))
             for i in range(60)]
    datas += datas[:5]
    state, ctx = node.chain.head_state(), node._next_context()
    one_by_one, batched = Mempool(), Mempool()
    expected = [one_by_one.add(d, state, ctx, 0) for d in datas]
    assert batched.add_batch(datas, state, ctx, 0) == expected
    assert [stx.id for stx in batched.ordered(state)] == [stx.id for stx in one_by_one.ordered(state)]
    assert {a.reason for a in expected} >= {"added", "duplicate"}
