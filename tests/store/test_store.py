"""The SQLite store: WAL, migrations, genesis binding, atomic commits, rollback, crash safety."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2pnode.chain import consensus
from p2pnode.chain.types import Transfer
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.store import Store, StoreError
from p2pnode.store.sqlite_store import MIGRATIONS, SCHEMA_VERSION
from p2pnode.testing.factories import (
    build_and_import,
    make_genesis,
    open_chain,
    recompute_root,
    signed,
    user_keys,
    validator_keys,
)

USERS = user_keys(4)
HOTS = {hot.public_key: hot for _, hot in validator_keys(4)}


def produce(db: BlockTree, n_txs: int = 3) -> None:
    sender = USERS[0]
    nonce = db.head_state().nonce(sender.public_key)
    txs = [signed(sender, nonce + i, Transfer(to=USERS[1].public_key, amount=1)) for i in range(n_txs)]
    build_and_import(db, txs=txs)


def test_store_uses_wal_and_current_schema(chain: BlockTree) -> None:
    mode = chain.store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert chain.store.schema_version() == SCHEMA_VERSION


def test_migrations_upgrade_an_old_store(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript(MIGRATIONS[0])
    raw.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    store.remember_peer("12D3KooWpeer", ["/ip4/127.0.0.1/tcp/1"], 5)  # table from migration 2
    assert store.known_peers() == [("12D3KooWpeer", ["/ip4/127.0.0.1/tcp/1"])]


def test_store_from_a_newer_node_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Store(path).set_meta("schema_version", str(SCHEMA_VERSION + 1).encode())
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_store_of_another_genesis_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_chain(path, make_genesis(chain_id="net-a")).store.close()
    with pytest.raises(StoreError, match="another network"):
        open_chain(path, make_genesis(chain_id="net-b"))
    assert open_chain(path, make_genesis(chain_id="net-a")).head.height == 0


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a valid database|cannot open"):
        Store(path)


def test_blocks_by_hash_and_height_and_rollback(chain: BlockTree) -> None:
    roots = [chain.head.state_root]
    for _ in range(3):
        produce(chain)
        roots.append(chain.head.state_root)
    assert chain.store.head_height == 3
    b2 = chain.store.canonical_block(2)
    assert b2 is not None and chain.store.block(b2.hash) == b2
    assert len(chain.store.canonical_range_bytes(1, 10)) == 3
    undone = chain.store.rollback_head()
    assert undone.height == 3 and chain.store.head_height == 2
    assert recompute_root(chain.store.state_items()) == roots[2] == chain.head.state_root
    chain.store.rollback_head()
    assert recompute_root(chain.store.state_items()) == roots[1]
    assert chain.store.has_block(undone.hash)  # the block is kept; only the canonical chain moved
    produce(chain)
    assert chain.store.head_height == 2


def test_failed_commit_leaves_previous_block(chain: BlockTree) -> None:
    produce(chain)
    head = chain.head.hash
    state = chain.head_state()
    slot = chain.head.slot + 1
    block = chain.build_block(HOTS[consensus.proposer_for_slot(state, slot)], slot, [])
    state = chain.head_state()
    from p2pnode.chain.transition import apply_block

    apply_block(state, block)
    changes = state.changes()
    changes[b"\x00poison"] = None
    original = chain.store._apply_changes

    def failing(ch: dict) -> None:
        original(ch)
        raise RuntimeError("disk full")

    chain.store._apply_changes = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        chain.store.commit_block(block, changes, state.accumulator())
    chain.store._apply_changes = original  # type: ignore[method-assign]
    assert chain.head.hash == head
    assert recompute_root(chain.store.state_items()) == chain.head.state_root


def test_killed_writer_leaves_store_at_a_block_boundary(tmp_path: Path, new_chain: Callable[[str], BlockTree]) -> None:
    path = tmp_path / "crash.sqlite"
    writer = Path(__file__).with_name("crash_writer.py")
    rng = random.Random(1234)
    last_reported = 0
    for _round in range(12):
        child = subprocess.Popen([sys.executable, str(writer), str(path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for _ in range(rng.randint(1, 4)):
            line = child.stdout.readline()
            assert line, "writer exited early"
            last_reported = int(line)
        # Kill at a random instant inside the next block's build/commit (not a wait for an event).
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        store = Store(path)
        assert store.integrity_check() == "ok"
        assert store.head_height >= last_reported
        head = store.header(store.head_hash)
        assert head is not None
        assert recompute_root(store.state_items()) == head.state_root
        store.close()
    # Replaying the stored blocks from genesis reproduces the same head state.
    final = Store(path)
    replay = new_chain("replay")
    for height in range(1, final.head_height + 1):
        block = final.canonical_block(height)
        assert block is not None
        replay.import_block(block)
    assert replay.head.hash == final.head_hash


def test_get_many_answers_as_get_does_across_select_chunks(tmp_path: Path) -> None:
    from p2pnode.store import sqlite_store

    store = sqlite_store.Store(tmp_path / "many.sqlite")
    present = {bytes([1, i % 256, i // 256]): bytes([i % 256]) for i in range(1200)}
    with store.transaction():
        store._apply_changes(dict(present))  # noqa: SLF001
    keys = [*present, b"absent", bytes([1, 0, 0])]
    assert sqlite_store._KEYS_PER_SELECT < len(keys)  # noqa: SLF001 (several statements)
    assert store.get_many(keys) == {key: store.get(key) for key in keys}
    store.close()


def _prune_steps(store: Store, below: int) -> int:
    """SQLite virtual-machine steps `prune_undo(below)` takes (the work it does, load-independent)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store._db.set_progress_handler(count, 1)
    try:
        store.prune_undo(below)
    finally:
        store._db.set_progress_handler(None, 1)
    return steps[0]


def test_prune_undo_drops_records_below_a_height_at_a_cost_that_does_not_grow_with_the_chain(chain: BlockTree) -> None:
    for _ in range(40):
        produce(chain, n_txs=1)
    store = chain.store
    store.prune_undo(30)
    for height in range(1, 41):
        record = store.undo_record(store.canonical_hash(height))  # type: ignore[arg-type]
        assert (record is None) == (height < 30), height
    short = _prune_steps(store, 35)
    for _ in range(200):
        produce(chain, n_txs=1)
    store.prune_undo(230)
    long = _prune_steps(store, 235)  # the same 10 or so records, over 6 times the history
    assert store.undo_record(store.canonical_hash(234)) is None  # type: ignore[arg-type]
    assert store.undo_record(store.canonical_hash(235)) is not None  # type: ignore[arg-type]
    assert long < 2 * short, (short, long)
