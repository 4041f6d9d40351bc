"""History backfill for a node that joined by checkpoint sync: the blocks below its checkpoint,
fetched from peers newest first, in the background.

The checkpoint is trusted (docs/chain.md, "Checkpoint sync"), so a block below it is verified by its
hash alone: the batch must be consecutive heights, each block's hash the next one's parent, the
newest the parent of the lowest stored block, and block 1's parent the genesis hash. The state of
those heights is not rebuilt (the node keeps only the head state anyway). A peer serving a batch
that does not link up is penalised and passed over; peers without the blocks (themselves joined
by checkpoint) are asked again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from p2pnode.chain.types import Block
from p2pnode.store.sqlite_store import Store
from protocols import codec, sync
from protocols.network import NetworkAPI, RequestError

log = logging.getLogger(__name__)

PENALTY_BAD_HISTORY = 50.0


@dataclass(frozen=True)
class BackfillConfig:
    batch: int = sync.MAX_BLOCKS_PER_REQUEST
    request_timeout_s: float = 10.0
    # Between batches: the backfill yields to the node's duties and sync.
    pause_s: float = 0.05
    # When no peer had the blocks.
    retry_s: float = 5.0


class HistoryBackfill:
    def __init__(self, *, store: Store, network: NetworkAPI, chain_id: str, config: BackfillConfig | None = None) -> None:
        self.store = store
        self.network = network
        self.chain_id = chain_id
        self.config = config or BackfillConfig()
        self.penalised: list[str] = []
        self.blocks_added = 0

    def done(self) -> bool:
        low = self.store.history_low()
        return low is None or low <= 1

    async def run(self) -> None:
        """Backfill until the history reaches block 1 (returns at once for a store that has it all)."""
        while not self.done():
            if await self.step():
                await trio.sleep(self.config.pause_s)
            else:
                await trio.sleep(self.config.retry_s)
        if self.blocks_added:
            log.info("history backfill complete: %d blocks below the checkpoint", self.blocks_added)

    async def step(self) -> bool:
        """Fetch and store one batch below the lowest stored block; False if no peer served one."""
        low = self.store.history_low()
        if low is None or low <= 1:
            return False
        above = self.store.canonical_block(low)
        assert above is not None, "the lowest stored block is canonical"
        start = max(1, low - self.config.batch)
        count = low - start
        for peer_id in sorted(self.network.connected_peers()):
            if peer_id in self.penalised:
                continue
            blocks = await self._fetch(peer_id, start, count)
            if not blocks or len(blocks) != count:
                continue  # not held (a peer joined by checkpoint itself), or cut short by the size bound
            problem = self._link_problem(blocks, start, above.header.parent)
            if problem:
                self.network.penalise(peer_id, f"bad_history:{problem}", PENALTY_BAD_HISTORY)
                self.penalised.append(peer_id)
                log.warning("history backfill: penalised %s (%s)", peer_id, problem)
                continue
            self.store.add_history(blocks)
            self.blocks_added += len(blocks)
            return True
        return False

    async def _fetch(self, peer_id: str, start: int, count: int) -> list[Block] | None:
        try:
            encoded = await sync.request_range(self.network, self.chain_id, peer_id, start, count,
                                               self.config.request_timeout_s)
            return sync.decode_blocks(encoded)
        except RequestError:
            return None
        except codec.MalformedMessage:
            self.network.penalise(peer_id, "bad_history:malformed", PENALTY_BAD_HISTORY)
            self.penalised.append(peer_id)
            return None

    def _link_problem(self, blocks: list[Block], start: int, top_hash: bytes) -> str | None:
        """Why `blocks` (asked from `start` up to just below the stored history) do not link up."""
        if len(blocks) != len(set(b.hash for b in blocks)) or any(
                b.header.height != start + i or b.header.chain != self.chain_id for i, b in enumerate(blocks)):
            return "heights"
        expected = top_hash
        for block in reversed(blocks):
            if block.hash != expected:
                return "hash_chain"
            expected = block.header.parent
        if start == 1 and expected != self.store.genesis_hash:
            return "genesis"
        return None
