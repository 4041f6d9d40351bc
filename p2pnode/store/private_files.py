"""Files only their owner may read: the data directory (0700) and every database in it (0600).

The chain store is public data, but the signing record decides what a validator may sign and the
directory also holds the validator's state; nothing there is for other local users to read or edit.
SQLite gives its -wal and -shm files the database file's mode, so creating the database 0600 first
covers them too.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_directory(path: str | Path) -> Path:
    """Create `path` (and parents) if needed and make it owner-only."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(directory, PRIVATE_DIR_MODE)
    return directory


def open_private_database(path: str, synchronous: str) -> sqlite3.Connection:
    """The SQLite database at `path`, owner-only, in WAL mode with the given `synchronous` level
    (NORMAL, or FULL where a lost write could let a validator sign twice), autocommit, usable from
    the worker threads the services hand it to. Raises sqlite3.DatabaseError or OSError."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    private_database(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


def private_database(path: str | Path) -> None:
    """Create the database file owner-only before SQLite opens it; tighten an existing one and its journals."""
    if str(path) == ":memory:":
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            os.chmod(candidate, PRIVATE_FILE_MODE)
