"""A validator's record of what it signed, on disk, so that no restart can make it equivocate.

Rules (the minimal form of Ethereum's EIP-3076 slashing protection):

- a block may be signed for a slot only above every slot signed before (or the very same block
  again for the same slot);
- a finality vote may be signed only with a target epoch above every target signed before and a
  source epoch at or above every source signed before (or the very same vote again).

The second rule excludes double votes (same target) and surround votes in both directions: a new
vote cannot be surrounded (its target is the highest) and cannot surround (its source is not lower).
Each check-and-record is one SQLite transaction with `synchronous=FULL`: the record is durable
before the signature leaves the process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from p2pnode.store.private_files import open_private_database

# Rows kept per table; only the maxima matter for the rules, recent rows answer "same again?".
KEPT_ROWS = 1024


class SigningRecordError(Exception):
    """The record cannot be used (belongs to another key, unreadable)."""


class SlashingProtection:
    """Slashing protection for one validator key in one SQLite file."""

    def __init__(self, path: str | Path, validator: bytes) -> None:
        self.path = str(path)
        try:
            self._db = open_private_database(self.path, "FULL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS proposals (slot INTEGER PRIMARY KEY, hash BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS votes (target_epoch INTEGER PRIMARY KEY,
                                                  source_epoch INTEGER NOT NULL, hash BLOB NOT NULL);
                """
            )
            row = self._db.execute("SELECT value FROM meta WHERE key='validator'").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise SigningRecordError(f"cannot open signing record {self.path}: {exc}") from None
        if row is None:
            self._db.execute("INSERT INTO meta(key, value) VALUES ('validator', ?)", (validator,))
        elif bytes(row[0]) != validator:
            raise SigningRecordError(f"signing record {self.path} belongs to another validator key")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One check-and-record: committed when the block ends, rolled back if it raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def may_propose(self, slot: int, header_hash: bytes) -> bool:
        """Record the block for `slot` and return True, or return False if signing it could
        equivocate (a lower or equal slot was signed with another block)."""
        with self._transaction() as db:
            same = db.execute("SELECT hash FROM proposals WHERE slot=?", (slot,)).fetchone()
            if same is not None:
                return bytes(same[0]) == header_hash
            highest = db.execute("SELECT MAX(slot) FROM proposals").fetchone()[0]
            if highest is not None and slot < highest:
                return False
            db.execute("INSERT INTO proposals(slot, hash) VALUES (?, ?)", (slot, header_hash))
            db.execute(
                "DELETE FROM proposals WHERE slot NOT IN (SELECT slot FROM proposals ORDER BY slot DESC LIMIT ?)",
                (KEPT_ROWS,),
            )
            return True

    def may_vote(self, source_epoch: int, target_epoch: int, vote_hash: bytes) -> bool:
        """Record the vote and return True, or return False if signing it could be a double or
        surround vote against anything signed before."""
        with self._transaction() as db:
            same = db.execute("SELECT hash FROM votes WHERE target_epoch=?", (target_epoch,)).fetchone()
            if same is not None:
                return bytes(same[0]) == vote_hash
            max_target, max_source = db.execute("SELECT MAX(target_epoch), MAX(source_epoch) FROM votes").fetchone()
            if max_target is not None and (target_epoch <= max_target or source_epoch < max_source):
                return False
            db.execute(
                "INSERT INTO votes(target_epoch, source_epoch, hash) VALUES (?, ?, ?)",
                (target_epoch, source_epoch, vote_hash),
            )
            db.execute(
                "DELETE FROM votes WHERE target_epoch NOT IN "
                "(SELECT target_epoch FROM votes ORDER BY target_epoch DESC LIMIT ?)",
                (KEPT_ROWS,),
            )
            return True
