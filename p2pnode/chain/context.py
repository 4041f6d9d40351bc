"""What a transaction or block step may know about the block it is in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    slot: int
    proposer: bytes
    timestamp_ms: int
