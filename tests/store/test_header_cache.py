"""The store's header cache: a header read once is not decoded again, and a rolled-back write
leaves no header behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain import consensus
from p2pnode.store import sqlite_store
from p2pnode.testing.factories import make_genesis, open_chain, validator_keys


def test_headers_are_cached_and_a_rollback_forgets_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = open_chain(tmp_path / "chain.sqlite", make_genesis(4, 1))
    hots = {hot.public_key: hot for _, hot in validator_keys(4)}
    proposer = hots[consensus.proposer_for_slot(chain.head_state(), 1)]
    block = chain.build_block(proposer, 1, [])
    store = chain.store

    with pytest.raises(RuntimeError), store.transaction():
        store.put_block(block)
        assert store.header(block.hash) == block.header
        raise RuntimeError("abort")
    assert store.header(block.hash) is None  # the rollback removed the block and its cached header

    chain.import_block(block)
    decoded = []
    real_block = store.block
    monkeypatch.setattr(store, "block", lambda h: decoded.append(h) or real_block(h))
    assert store.header(block.hash) == block.header
    assert decoded == []  # written by this store: no decode

    fresh = sqlite_store.Store(store.path)  # another handle: reads the block once, then caches it
    monkeypatch.setattr(fresh, "block", lambda h: decoded.append(h) or sqlite_store.Store.block(fresh, h))
    assert fresh.header(block.hash) == block.header == fresh.header(block.hash)
    assert decoded == [block.hash]
