"""The node's SQLite store: blocks, the canonical chain, state at the head, undo records, peers.

One writer connection in WAL mode. A block and its state changes commit in one SQL transaction,
so a process killed at any instant leaves the store at the previous block or the new one. Undo
records (the old value of every changed key) let a reorganisation roll state back through the
store, inside the same transaction as the roll-forward.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from p2pnode.chain import accumulator
from p2pnode.chain.encoding import decode, encode
from p2pnode.chain.state import DictReader
from p2pnode.chain.types import Block, Header
from p2pnode.store.private_files import open_private_database
from protocols import codec

SCHEMA_VERSION = 2

# Migration i brings the schema from version i to i+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE blocks (hash BLOB PRIMARY KEY, height INTEGER NOT NULL, parent BLOB NOT NULL,
                         slot INTEGER NOT NULL, data BLOB NOT NULL);
    CREATE INDEX blocks_by_height ON blocks(height);
    CREATE INDEX blocks_by_parent ON blocks(parent);
    CREATE TABLE canonical (height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    CREATE TABLE state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE undo (hash BLOB PRIMARY KEY, acc_before BLOB NOT NULL, data BLOB NOT NULL);
    """,
    """
    CREATE TABLE peers (peer_id TEXT PRIMARY KEY, addrs TEXT NOT NULL, last_seen_ms INTEGER NOT NULL);
    """,
]


MAX_CACHED_HEADERS = 1024
# Keys bound in one SELECT ... IN (...) (SQLite builds before 3.32 allow at most 999 variables).
_KEYS_PER_SELECT = 500


class StoreError(Exception):
    """The store cannot be used as asked (wrong genesis, newer schema, corrupt)."""


class Store:
    """A chain store in one SQLite file. Not thread-safe: one owner task uses it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = open_private_database(self.path, "NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._in_tx = False
        # Headers by block hash: a block's header never changes, and fork choice and the head view
        # read them constantly (each read would decode the whole block). Filled as blocks are
        # written or read, bounded, and emptied when a transaction rolls back.
        self._headers: dict[bytes, Header] = {}
        self._migrate()

    # ---------------------------------------------------------------- schema

    def schema_version(self) -> int:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        try:
            version = self.schema_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path} is not a valid database: {exc}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema {version}, newer than this node's {SCHEMA_VERSION}")
        for target in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(target + 1),)
                )

    def close(self) -> None:
        self._db.close()

    # ---------------------------------------------------------------- transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit: all writes inside commit together or not at all (nesting joins)."""
        if self._in_tx:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._headers.clear()  # it may hold headers of blocks the rollback removed
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_tx = False

    # ---------------------------------------------------------------- meta

    def meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ---------------------------------------------------------------- validator-set walk

    _VSET_STEP = "vset_step:"

    def add_vset_step(self, epoch: int, data: bytes) -> None:
        """One step of the validator-set walk checkpoint sync serves (an encoded
        `protocols.sync.ValidatorSetStep`), by the epoch of its checkpoint."""
        self.set_meta(f"{self._VSET_STEP}{epoch:020d}", data)

    def vset_steps(self, after_epoch: int, limit: int) -> list[bytes]:
        """Stored steps of checkpoints after `after_epoch`, oldest first, at most `limit`."""
        rows = self._db.execute(
            "SELECT value FROM meta WHERE key > ? AND key < ? ORDER BY key LIMIT ?",
            (f"{self._VSET_STEP}{after_epoch:020d}", f"{self._VSET_STEP}~", limit)).fetchall()
        return [bytes(row[0]) for row in rows]

    # ---------------------------------------------------------------- genesis

    def initialise(self, genesis_header: Header, genesis_state: DictReader, acc: int | None) -> None:
        """Write genesis into an empty store, or check that the store was made for this genesis.

        `acc` None: the genesis state was not hashed (a pinned root, for checkpoint sync, which
        replaces the state); a later call with the accumulator completes it while still at genesis."""
        genesis_hash = genesis_header.hash
        stored = self.meta("genesis_hash")
        if stored is not None:
            if stored != genesis_hash:
                raise StoreError(
                    f"store {self.path} belongs to another network (genesis {stored.hex()[:16]}, "
                    f"expected {genesis_hash.hex()[:16]}); use another data directory"
                )
            if acc is not None and self.meta(self._UNHASHED) == b"1" and self.head_height == 0:
                with self.transaction():
                    self.set_meta("acc", accumulator.to_bytes(acc))
                    self.set_meta(self._UNHASHED, b"")
            return
        genesis_block = Block(header=genesis_header, sig=bytes(64), txs=(), votes=())
        with self.transaction():
            self.set_meta("genesis_hash", genesis_hash)
            self.set_meta("chain_id", genesis_header.chain.encode())
            self._db.executemany("INSERT INTO state(key, value) VALUES (?, ?)", genesis_state.data.items())
            self._put_block(genesis_block)
            self._db.execute("INSERT INTO canonical(height, hash) VALUES (0, ?)", (genesis_hash,))
            self.set_meta("head", genesis_hash)
            self.set_meta("acc", accumulator.to_bytes(accumulator.EMPTY if acc is None else acc))
            self.set_meta(self._UNHASHED, b"1" if acc is None else b"")

    # Meta key: "1" while the genesis state's accumulator is not known (see `initialise`).
    _UNHASHED = "genesis_unhashed"

    def genesis_unhashed(self) -> bool:
        return self.meta(self._UNHASHED) == b"1"

    def _required_meta(self, key: str, what: str) -> bytes:
        value = self.meta(key)
        if value is None:
            raise StoreError(f"store has no {what}")
        return value

    @property
    def genesis_hash(self) -> bytes:
        return self._required_meta("genesis_hash", "genesis")

    # ---------------------------------------------------------------- blocks

    def _put_block(self, block: Block) -> None:
        h = block.header
        self._db.execute(
            "INSERT OR IGNORE INTO blocks(hash, height, parent, slot, data) VALUES (?, ?, ?, ?, ?)",
            (h.hash, h.height, h.parent, h.slot, codec.encode(block)),
        )
        self._remember_header(h)

    def _remember_header(self, header: Header) -> None:
        if len(self._headers) >= MAX_CACHED_HEADERS:
            del self._headers[next(iter(self._headers))]
        self._headers[header.hash] = header

    def put_block(self, block: Block) -> None:
        """Keep a verified block that is not (yet) on the canonical chain."""
        with self.transaction():
            self._put_block(block)

    def has_block(self, block_hash: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM blocks WHERE hash=?", (block_hash,)).fetchone() is not None

    def block(self, block_hash: bytes) -> Block | None:
        row = self._db.execute("SELECT data FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else codec.decode(Block, bytes(row[0]), max_bytes=1 << 26)

    def header(self, block_hash: bytes) -> Header | None:
        header = self._headers.get(block_hash)
        if header is not None:
            return header
        block = self.block(block_hash)
        if block is None:
            return None
        self._remember_header(block.header)
        return block.header

    def canonical_hash(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def canonical_block(self, height: int) -> Block | None:
        block_hash = self.canonical_hash(height)
        return None if block_hash is None else self.block(block_hash)

    def canonical_range_bytes(self, start: int, count: int) -> list[bytes]:
        """Canonical blocks from `start`, in height order, stopping at the first missing height
        (a store installed from a checkpoint has no history below its base)."""
        rows = self._db.execute(
            "SELECT c.height, b.data FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "WHERE c.height >= ? AND c.height < ? ORDER BY c.height",
            (start, start + count),
        ).fetchall()
        out: list[bytes] = []
        for expected, (height, data) in enumerate(rows, start):
            if height != expected:
                break
            out.append(bytes(data))
        return out

    def children(self, block_hash: bytes) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT hash FROM blocks WHERE parent=?", (block_hash,))]

    @property
    def head_hash(self) -> bytes:
        return self._required_meta("head", "head")

    @property
    def head_height(self) -> int:
        row = self._db.execute("SELECT MAX(height) FROM canonical").fetchone()
        return int(row[0])

    def head_accumulator(self) -> int:
        return accumulator.from_bytes(self._required_meta("acc", "state accumulator"))

    # ---------------------------------------------------------------- state

    def get(self, key: bytes) -> bytes | None:
        """`StateReader` over the state at the head."""
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes | None]:
        """`get` of every key, in a few statements (a block's accounts read at once)."""
        out: dict[bytes, bytes | None] = dict.fromkeys(keys)
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = keys[start : start + _KEYS_PER_SELECT]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM state WHERE key IN ({marks})", chunk):
                out[bytes(key)] = bytes(value)
        return out

    def state_items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        upper = prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else None
        if upper is None:
            cursor = self._db.execute("SELECT key, value FROM state ORDER BY key")
        else:
            cursor = self._db.execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper)
            )
        for key, value in cursor:
            yield bytes(key), bytes(value)

    def state_items_after(self, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` head-state items with keys above `after`, in key order."""
        rows = self._db.execute(
            "SELECT key, value FROM state WHERE key > ? ORDER BY key LIMIT ?", (after, limit)
        ).fetchall()
        return [(bytes(k), bytes(v)) for k, v in rows]

    def _apply_changes(self, changes: dict[bytes, bytes | None]) -> None:
        deletes = [(k,) for k, v in changes.items() if v is None]
        upserts = [(k, v) for k, v in changes.items() if v is not None]
        if deletes:
            self._db.executemany("DELETE FROM state WHERE key=?", deletes)
        if upserts:
            self._db.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", upserts)

    def commit_block(self, block: Block, changes: dict[bytes, bytes | None], acc: int,
                     old_values: list[list[bytes | None]] | None = None) -> None:
        """Make `block` (a child of the head) the new head with its state changes, atomically.

        `old_values`: [key, value at the head] for every changed key, in `changes`' order, when the
        caller read them already (the undo record); read here otherwise."""
        header = block.header
        with self.transaction():
            if header.parent != self.head_hash:
                raise StoreError("block does not extend the head")
            if old_values is None:
                old_values = [[k, self.get(k)] for k in changes]
            self._db.execute(
                "INSERT OR REPLACE INTO undo(hash, acc_before, data) VALUES (?, ?, ?)",
                (header.hash, self.meta("acc"), encode(old_values)),
            )
            self._apply_changes(changes)
            self._put_block(block)
            self._db.execute("INSERT OR REPLACE INTO canonical(height, hash) VALUES (?, ?)", (header.height, header.hash))
            self.set_meta("head", header.hash)
            self.set_meta("acc", accumulator.to_bytes(acc))

    def install_snapshot(self, block: Block, items: Iterator[tuple[bytes, bytes]] | list[tuple[bytes, bytes]],
                         acc: int, finalized: bytes) -> None:
        """Make `block` the head with `items` as the whole state, in one transaction: the base of a
        store joined by checkpoint sync. `finalized` is the encoded finalized checkpoint (`block`).

        Only a store still at genesis may take a snapshot (history would not link up otherwise)."""
        with self.transaction():
            if self.head_height != 0:
                raise StoreError("a snapshot can only be installed into a store at genesis")
            self._db.execute("DELETE FROM state")
            self._db.executemany("INSERT INTO state(key, value) VALUES (?, ?)", items)
            self._db.execute("DELETE FROM undo")
            self._put_block(block)
            self._db.execute("INSERT OR REPLACE INTO canonical(height, hash) VALUES (?, ?)",
                             (block.header.height, block.hash))
            self.set_meta("head", block.hash)
            self.set_meta("acc", accumulator.to_bytes(acc))
            self.set_meta("finalized", finalized)
            self.set_meta("snapshot_base", block.hash)
            self.set_meta(self._UNHASHED, b"")
            self.set_meta("history_low", str(block.header.height).encode())

    def history_low(self) -> int | None:
        """The lowest height above genesis from which the canonical chain is complete, for a store
        installed from a snapshot (None: a store that replayed from genesis has all its history)."""
        value = self.meta("history_low")
        return None if value is None else int(value)

    def add_history(self, blocks: list[Block]) -> None:
        """Canonical blocks just below `history_low` (heights consecutive, hash-linked to the block
        above them, checked by the caller), in one transaction."""
        if not blocks:
            return
        with self.transaction():
            low = self.history_low()
            if low is None or blocks[-1].header.height != low - 1:
                raise StoreError("history blocks must end just below the lowest stored height")
            for block in blocks:
                self._put_block(block)
                self._db.execute("INSERT OR REPLACE INTO canonical(height, hash) VALUES (?, ?)",
                                 (block.header.height, block.hash))
            self.set_meta("history_low", str(blocks[0].header.height).encode())

    def rollback_head(self) -> Header:
        """Undo the head block's state changes; its parent becomes the head. Returns the undone header."""
        with self.transaction():
            head = self.head_hash
            header = self.header(head)
            assert header is not None
            if header.height == 0:
                raise StoreError("cannot roll back genesis")
            row = self._db.execute("SELECT acc_before, data FROM undo WHERE hash=?", (head,)).fetchone()
            if row is None:
                raise StoreError("no undo record for the head block")
            old_values: list[Any] = decode(bytes(row[1]))
            self._apply_changes({k: v for k, v in old_values})
            self._db.execute("DELETE FROM undo WHERE hash=?", (head,))
            self._db.execute("DELETE FROM canonical WHERE height=?", (header.height,))
            self.set_meta("head", header.parent)
            self.set_meta("acc", bytes(row[0]))
        return header

    def undo_record(self, block_hash: bytes) -> tuple[int, list[tuple[bytes, bytes | None]]] | None:
        """(accumulator before the block, [(key, value before the block)]) of a canonical block, if kept."""
        row = self._db.execute("SELECT acc_before, data FROM undo WHERE hash=?", (block_hash,)).fetchone()
        if row is None:
            return None
        return accumulator.from_bytes(bytes(row[0])), [(k, v) for k, v in decode(bytes(row[1]))]

    def prune_undo(self, below_height: int) -> None:
        """Drop undo records of finalized blocks: they can never be rolled back."""
        # Driven by the undo table (a few epochs of blocks, all canonical), not by the canonical
        # table below the height: that one grows with the chain and this runs at every finality
        # (CROSS JOIN keeps undo the outer loop; the planner would scan blocks by height).
        with self.transaction():
            self._db.execute(
                "DELETE FROM undo WHERE hash IN "
                "(SELECT u.hash FROM undo u CROSS JOIN blocks b ON b.hash = u.hash WHERE b.height < ?)", (below_height,)
            )

    # ---------------------------------------------------------------- peers

    def remember_peer(self, peer_id: str, addrs: list[str], seen_ms: int) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO peers(peer_id, addrs, last_seen_ms) VALUES (?, ?, ?)",
                (peer_id, "\n".join(addrs[:16]), seen_ms),
            )
            # Bounded: keep the most recently seen peers only.
            self._db.execute(
                "DELETE FROM peers WHERE peer_id NOT IN "
                "(SELECT peer_id FROM peers ORDER BY last_seen_ms DESC LIMIT 256)"
            )

    def known_peers(self, limit: int = 64) -> list[tuple[str, list[str]]]:
        rows = self._db.execute(
            "SELECT peer_id, addrs FROM peers ORDER BY last_seen_ms DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], [a for a in r[1].split("\n") if a]) for r in rows]

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])
