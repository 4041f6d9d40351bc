"""When each block became this node's head (benchmarks measure propagation from it; opt-in)."""

from __future__ import annotations

import time

from p2pnode.services.chain.block_tree import BlockTree

MAX_ARRIVALS = 5000


class ArrivalLog:
    """(height, block hash hex, local ms) per new head, the newest `MAX_ARRIVALS` kept."""

    def __init__(self, chain: BlockTree) -> None:
        self._chain = chain
        self.entries: list[tuple[int, str, int]] = []
        chain.head_listeners.append(self._record)

    def _record(self, head: bytes) -> None:
        self.entries.append((self._chain.head.height, head.hex(), int(time.time() * 1000)))
        del self.entries[:-MAX_ARRIVALS]

    def recent(self, limit: int = 2000) -> list[tuple[int, str, int]]:
        return self.entries[-limit:]
