"""The inputs and outputs of recent subnet epochs, kept so that anyone can check a reward receipt.

One SQLite file beside the chain store. A row is one epoch of one subnet as run by one block
(forks run epochs too; readers pick the row of the canonical block). Only the newest `keep` epoch
indices of each subnet are kept, as many as the chain keeps receipts in state, so the file stays
bounded. The rows are written after the block commits: a crash in between loses that epoch's
record (explain then says so), never the chain.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from p2pnode.chain.encoding import decode, encode
from p2pnode.chain.receipts import RECEIPTS_KEPT, EpochRecord
from p2pnode.store.private_files import open_private_database

log = logging.getLogger("p2pnode.store")


class EpochRecordError(Exception):
    """The record file cannot be used (unreadable, not a database)."""


class EpochRecordStore:
    def __init__(self, path: str | Path, keep: int = RECEIPTS_KEPT) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = str(path)
        self.keep = keep
        try:
            self._db = open_private_database(self.path, "NORMAL")
            self._db.execute(
                """CREATE TABLE IF NOT EXISTS epoch_records (
                       netuid INTEGER NOT NULL, epoch INTEGER NOT NULL, block_hash BLOB NOT NULL,
                       height INTEGER NOT NULL, data BLOB NOT NULL,
                       PRIMARY KEY (netuid, epoch, block_hash))"""
            )
        except (sqlite3.DatabaseError, OSError) as exc:
            raise EpochRecordError(f"cannot open epoch records {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def add(self, block_hash: bytes, height: int, records: list[EpochRecord]) -> None:
        """Keep the records of the epochs `block_hash` ran, then drop epochs older than `keep`.

        Called after the block committed: a failure here (a full disk) is logged and loses these
        records only; the block import it follows stands.
        """
        try:
            for record in records:
                self.put_document(record.netuid, record.epoch, block_hash, height, record.to_document())
            for netuid in {r.netuid for r in records}:
                newest = self._db.execute("SELECT MAX(epoch) FROM epoch_records WHERE netuid=?", (netuid,)).fetchone()[0]
                self._db.execute("DELETE FROM epoch_records WHERE netuid=? AND epoch<=?", (netuid, newest - self.keep))
        except sqlite3.Error as exc:
            log.warning("epoch records of block %s not kept: %s", block_hash.hex()[:16], exc)

    def put_document(self, netuid: int, epoch: int, block_hash: bytes, height: int, document: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO epoch_records(netuid, epoch, block_hash, height, data) VALUES (?, ?, ?, ?, ?)",
            (netuid, epoch, block_hash, height, encode(document)),
        )

    def documents(self, netuid: int, epoch: int) -> list[tuple[bytes, int, Any]]:
        """(block hash, height, record document) of every kept run of this epoch (forks included)."""
        rows = self._db.execute(
            "SELECT block_hash, height, data FROM epoch_records WHERE netuid=? AND epoch=? ORDER BY height",
            (netuid, epoch),
        ).fetchall()
        return [(bytes(h), height, decode(bytes(data))) for h, height, data in rows]

    def raw_record(self, netuid: int, epoch: int, block_hash: bytes) -> bytes | None:
        """The stored record bytes (canonical CBOR) of one epoch run by one block."""
        row = self._db.execute(
            "SELECT data FROM epoch_records WHERE netuid=? AND epoch=? AND block_hash=?", (netuid, epoch, block_hash)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def epochs(self, netuid: int) -> list[int]:
        rows = self._db.execute("SELECT DISTINCT epoch FROM epoch_records WHERE netuid=? ORDER BY epoch", (netuid,))
        return [row[0] for row in rows]
