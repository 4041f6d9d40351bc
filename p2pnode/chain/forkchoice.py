"""Fork choice: which verified block is the head.

The rule (docs/chain.md): the chain with the latest justified checkpoint, then the longest chain, then
the lowest block hash. Justified epochs only grow along a chain and heights strictly grow, so the
best chain ends in the best block by that key, and comparing each newly verified block with the
current head is enough to follow it. Blocks at or below the finalized checkpoint that are not on
the finalized chain are never candidates (the store refuses them before they get here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What fork choice needs to know about a verified block and the state after it."""

    hash: bytes
    parent: bytes
    height: int
    slot: int
    justified_epoch: int


def head_key(info: BlockInfo) -> tuple[int, int, int]:
    """Larger is better: justified epoch, then height, then the lower hash."""
    return (info.justified_epoch, info.height, -int.from_bytes(info.hash, "big"))


def is_better(candidate: BlockInfo, current: BlockInfo) -> bool:
    return head_key(candidate) > head_key(current)


def choose_head(blocks: Iterable[BlockInfo]) -> BlockInfo:
    """The best of `blocks` (non-empty)."""
    return max(blocks, key=head_key)


def status_key(justified_epoch: int, height: int, block_hash: bytes) -> tuple[int, int, int]:
    """The same order for a peer's advertised head (sync decides from it whom to follow)."""
    return (justified_epoch, height, -int.from_bytes(block_hash, "big"))
