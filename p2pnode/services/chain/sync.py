"""Sync: status handshakes, range sync from several peers, and the orphan pool.

Catch-up is pull-based, so no block the chain needs depends on gossip alone:

- Every connected peer is asked for its `Status` when first seen; after that, each round refreshes
  the `status_refresh_per_round` stalest views older than `status_interval_ms` (a Status a peer
  sends us when it asks refreshes its view too). No peer is asked more than once per
  `status_interval_ms`, answered or not.
  A peer on another chain or genesis is penalised and ignored; a Status whose head slot is beyond
  the clock (plus `future_slots`) is ignored, and penalised when far beyond (`lying_slots`).
- A Status claim is verified before it can start a sync round: the advertised head block is
  fetched from that peer and must hash to the claimed head, be signed by a known validator, and
  sit at a slot the clock has reached (`head_claim_problem`). A peer that cannot show its head is
  penalised and left out; a verified head is remembered, so other peers advertising it cost nothing
  (a new head is asked of one claimant at a time, not of all at once).
  The node is `syncing` (and does not propose) only once a round has imported a block, until the
  round ends.
- When a verified peer's head is better by fork choice order (justified epoch, height, lower hash), a sync
  round downloads blocks by height from all peers that advertise that same head, `batch` blocks per
  request and up to `parallel` requests at once, and imports them in order; each block is fully
  verified on import. A first block whose parent is unknown means the peer's chain forks below our
  head: the round steps back (doubling) towards our finalized checkpoint.
- A peer that serves an undecodable or invalid block, or a range that does not link up, is
  penalised (`NetworkAPI.penalise`) and left out of sync for `bad_peer_ms`; so is a source whose
  round made no progress; a peer that times out is only left out. Blocks beyond the clock are
  never imported (`ImportOutcome.FUTURE`).
- Request handlers run under `guards.guard_request` and every step of the loop under one catch:
  remote input cannot end the sync task.
- Gossip blocks with an unknown parent wait in a bounded `OrphanPool` and wake the sync task.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from p2pnode.chain.forkchoice import status_key
from p2pnode.chain.types import Block
from p2pnode.services.chain.guards import guard_request, record_failure
from p2pnode.services.clock import Clock
from protocols import codec, sync, topics
from protocols.network import NetworkAPI, RequestError

log = logging.getLogger(__name__)

# Penalties (the adapter disconnects a peer whose score falls too low; see protocols.network).
PENALTY_BAD_BLOCK = 50.0
PENALTY_BAD_RESPONSE = 20.0
PENALTY_WRONG_CHAIN = 100.0
PENALTY_UNBACKED_STATUS = 25.0  # a Status head the peer cannot show
PENALTY_NO_PROGRESS = 10.0
PENALTY_FUTURE_HEAD = 25.0
# Verified head hashes remembered (claims several peers share are checked once).
MAX_VERIFIED_HEADS = 256


class OrphanPool:
    """Blocks whose parent is unknown, bounded; the oldest is dropped first."""

    def __init__(self, max_blocks: int = 256) -> None:
        self.max_blocks = max_blocks
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def add(self, block: Block) -> None:
        block_hash = block.hash
        if block_hash in self._blocks:
            return
        self._blocks[block_hash] = block
        while len(self._blocks) > self.max_blocks:
            self._blocks.popitem(last=False)

    def pop_children(self, parent_hash: bytes) -> list[Block]:
        children = [b for b in self._blocks.values() if b.header.parent == parent_hash]
        for child in children:
            del self._blocks[child.hash]
        children.sort(key=lambda b: b.hash)
        return children

    def drop_below(self, height: int) -> None:
        for block_hash in [h for h, b in self._blocks.items() if b.header.height <= height]:
            del self._blocks[block_hash]


@dataclass
class PeerView:
    status: sync.Status
    updated_ms: int


class ImportOutcome:
    """What importing one block from a peer gave (the node's import callback returns one)."""

    OK = "ok"  # imported or already known
    UNKNOWN_PARENT = "unknown_parent"
    INVALID = "invalid"  # the block is invalid: the peer that served it is at fault
    REFUSED = "refused"  # conflicts with our finality or pools are full: not provably the peer's fault
    FUTURE = "future"  # a slot the clock has not reached: never imported, whoever signed it


@dataclass(frozen=True)
class SyncConfig:
    status_interval_ms: int = 8_000
    # Known peers whose Status is refreshed per round, stalest first (a peer never asked is always
    # asked at once). Asking every peer every round costs O(peers) requests per node each
    # interval, all nodes at the same slot phase: O(peers^2) requests in one burst network-wide.
    status_refresh_per_round: int = 8
    # A claimed head is checked with one peer at a time, at most this many per round.
    head_checks_per_round: int = 3
    batch: int = 32
    parallel: int = 3
    request_timeout_s: float = 2.0
    bad_peer_ms: int = 30_000
    # Phase of the periodic wakeup inside a slot: away from the producer (slot start) and the
    # voter (mid slot), so a node's duties never race its own sync at one instant.
    phase_permille: int = 750
    # Status heads and synced blocks at most this many slots ahead of the clock (clock skew).
    future_slots: int = 1
    # A Status head this far ahead is no clock skew: the peer is penalised.
    lying_slots: int = 32


def _decode_block(data: bytes) -> Block | None:
    """A block from a peer's range; None when it does not decode."""
    try:
        return codec.decode(Block, data, max_bytes=sync.MAX_BLOCK_BYTES)
    except Exception:  # MalformedMessage, or a decoder failure nobody foresaw
        return None


class SyncService:
    """Keeps the node's chain caught up with its peers (see the module docstring)."""

    def __init__(
        self,
        *,
        network: NetworkAPI,
        clock: Clock,
        chain_id: str,
        genesis_hash: bytes,
        slot_ms: int,
        genesis_ms: int,
        local_status: Callable[[], sync.Status],
        is_known: Callable[[bytes, int], bool],
        finalized_height: Callable[[], int],
        import_block: Callable[[Block, str], Awaitable[str]],
        read_range: Callable[[int, int], list[bytes]],
        head_claim_problem: Callable[[Block, bytes], str | None],
        config: SyncConfig | None = None,
        expect_blocks: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self.network = network
        self.clock = clock
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.slot_ms = slot_ms
        self.genesis_ms = genesis_ms
        self.local_status = local_status
        self.is_known = is_known
        self.finalized_height = finalized_height
        self.import_block = import_block
        self.read_range = read_range
        self.head_claim_problem = head_claim_problem
        # Told the raw blocks of each fetched batch before they are imported, in order (the chain
        # checks their signatures ahead, on another core where it has one).
        self.expect_blocks = expect_blocks
        self.config = config or SyncConfig()
        # Both keyed by connected peers only (pruned in `_refresh_statuses`).
        self.peers: dict[str, PeerView] = {}
        self.bad_until: dict[str, int] = {}
        # When each connected peer was last asked for its Status: a peer is asked at most once per
        # `status_interval_ms`, answered or not (a wakeup must not re-ask peers that time out).
        self._status_asked_ms: dict[str, int] = {}
        self._verified_heads: OrderedDict[bytes, None] = OrderedDict()
        self.claims_refuted = 0
        self.syncing = False
        self.blocks_imported = 0
        self._wakeup = trio.Event()

    # ---------------------------------------------------------------- serving

    def register_handlers(self) -> None:
        penalise = self.network.penalise
        self.network.set_request_handler(
            topics.status_protocol(self.chain_id),
            guard_request("status handler", self._serve_status, penalise),
            sync.MAX_STATUS_BYTES,
        )
        self.network.set_request_handler(
            topics.blocks_by_range_protocol(self.chain_id),
            guard_request("blocks_by_range handler", self._serve_range, penalise),
            sync.MAX_RANGE_REQUEST_BYTES,
        )

    async def _serve_status(self, peer_id: str, request: bytes) -> bytes:
        def remember(status: sync.Status) -> None:
            if self._acceptable(peer_id, status):
                self.peers[peer_id] = PeerView(status, self.clock.now_ms())
                if status_key(status.justified_epoch, status.head_height, status.head_hash) > self._our_key():
                    self.request_sync()

        return sync.handle_status(request, self.local_status, remember)

    async def _serve_range(self, peer_id: str, request: bytes) -> bytes:
        return sync.handle_blocks_by_range(request, self.read_range)

    # ---------------------------------------------------------------- running

    def request_sync(self) -> None:
        """Wake the sync task (an orphan arrived, or a peer announced a better head)."""
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.register_handlers()
        task_status.started()
        while True:
            for step in (self._refresh_statuses, self._sync_round):
                try:
                    await step()
                except Exception as exc:
                    record_failure(f"sync {step.__name__}", exc)
            await self._wait_for_next_round()

    async def _wait_for_next_round(self) -> None:
        now = self.clock.now_ms()
        interval = self.config.status_interval_ms
        phase = self.slot_ms * self.config.phase_permille // 1000
        # Next wakeup: a slot-aligned instant plus the phase, at least one slot away.
        base = now - self.genesis_ms
        next_tick = (base // interval + 1) * interval + phase + self.genesis_ms
        with trio.move_on_after(max(0, next_tick - now) / 1000):
            await self._wakeup.wait()
        self._wakeup = trio.Event()

    def _our_key(self) -> tuple[int, int, int]:
        status = self.local_status()
        return status_key(status.justified_epoch, status.head_height, status.head_hash)

    def current_slot(self) -> int:
        return max(0, (self.clock.now_ms() - self.genesis_ms) // self.slot_ms)

    def _acceptable(self, peer_id: str, status: sync.Status) -> bool:
        if status.chain != self.chain_id or status.genesis != self.genesis_hash:
            self.network.penalise(peer_id, "wrong_chain", PENALTY_WRONG_CHAIN)
            self.peers.pop(peer_id, None)
            return False
        ahead = status.head_slot - self.current_slot()
        if ahead > self.config.future_slots:
            if ahead > self.config.lying_slots:
                self.network.penalise(peer_id, "future_head", PENALTY_FUTURE_HEAD)
            self.peers.pop(peer_id, None)
            return False
        return True

    async def _refresh_statuses(self) -> None:
        now = self.clock.now_ms()
        connected = self.network.connected_peers()
        for gone in [p for p in self.peers if p not in connected]:
            del self.peers[gone]
        for gone in [p for p in self.bad_until if p not in connected]:
            del self.bad_until[gone]
        for gone in [p for p in self._status_asked_ms if p not in connected]:
            del self._status_asked_ms[gone]
        interval = self.config.status_interval_ms

        def askable(peer_id: str) -> bool:
            asked = self._status_asked_ms.get(peer_id)
            return asked is None or now - asked >= interval

        new = [p for p in connected if p not in self.peers and askable(p)]
        stale = sorted(
            (p for p in connected if p in self.peers and now - self.peers[p].updated_ms >= interval and askable(p)),
            key=lambda p: (self.peers[p].updated_ms, p),
        )
        due = new + stale[: self.config.status_refresh_per_round]
        if not due:
            return
        for peer_id in due:
            self._status_asked_ms[peer_id] = now
        async with trio.open_nursery() as nursery:
            for peer_id in due:
                nursery.start_soon(self._ask_status, peer_id)

    async def _ask_status(self, peer_id: str) -> None:
        request = sync.encode_status(self.local_status())
        try:
            data = await self.network.request(
                peer_id,
                topics.status_protocol(self.chain_id),
                request,
                timeout=self.config.request_timeout_s,
                max_response_bytes=sync.MAX_STATUS_BYTES,
            )
            status = sync.decode_status(data)
        except RequestError:
            return
        except Exception:  # MalformedMessage, or a decoder failure nobody foresaw
            self.network.penalise(peer_id, "bad_status", PENALTY_BAD_RESPONSE)
            return
        if self._acceptable(peer_id, status):
            self.peers[peer_id] = PeerView(status, self.clock.now_ms())

    def _usable(self, peer_id: str) -> bool:
        return self.bad_until.get(peer_id, -1) <= self.clock.now_ms()

    def _mark_bad(self, peer_id: str, reason: str, penalty: float) -> None:
        if penalty:
            self.network.penalise(peer_id, reason, penalty)
        self.bad_until[peer_id] = self.clock.now_ms() + self.config.bad_peer_ms
        log.info("sync: leaving out peer %s (%s)", peer_id, reason)

    def _better_peers(self) -> list[tuple[str, sync.Status]]:
        ours = self._our_key()
        return [
            (p, v.status)
            for p, v in self.peers.items()
            if self._usable(p) and status_key(v.status.justified_epoch, v.status.head_height, v.status.head_hash) > ours
        ]

    async def _verify_claims(self, better: list[tuple[str, sync.Status]]) -> list[tuple[str, sync.Status]]:
        """The better peers whose advertised head is shown to be real (see the module docstring).

        Each head not yet verified is asked of the peers claiming it one at a time (heads in
        parallel) until one shows it, at most `head_checks_per_round` per head and round: one
        request per new head, not one per peer (when a block is new, most peers advertise it).
        A peer that cannot show its head is penalised and left out."""
        unverified: dict[bytes, list[tuple[str, sync.Status]]] = {}
        for peer_id, status in better:
            if status.head_hash not in self._verified_heads:
                unverified.setdefault(status.head_hash, []).append((peer_id, status))
        if unverified:
            async with trio.open_nursery() as nursery:
                for claims in unverified.values():
                    nursery.start_soon(self._verify_head, claims[: self.config.head_checks_per_round])
        return [(p, s) for p, s in better if s.head_hash in self._verified_heads and self._usable(p)]

    async def _verify_head(self, claims: list[tuple[str, sync.Status]]) -> None:
        for peer_id, status in claims:
            if await self._verify_claim(peer_id, status):
                return

    async def _verify_claim(self, peer_id: str, status: sync.Status) -> bool:
        try:
            blocks = sync.decode_blocks(await sync.request_range(
                self.network, self.chain_id, peer_id, status.head_height, 1, self.config.request_timeout_s))
            if len(blocks) == 1:
                problem = self.head_claim_problem(blocks[0], status.head_hash) or ""
            else:
                problem = "head_not_served"
        except RequestError:
            problem = "head_not_served"  # a peer that advertises a head answers for it
        except codec.MalformedMessage:
            problem = "malformed_head"
        if problem:
            self.claims_refuted += 1
            self.peers.pop(peer_id, None)
            self._mark_bad(peer_id, f"unbacked_status:{problem}", PENALTY_UNBACKED_STATUS)
            return False
        self._verified_heads[status.head_hash] = None
        while len(self._verified_heads) > MAX_VERIFIED_HEADS:
            self._verified_heads.popitem(last=False)
        return True

    async def _sync_round(self) -> None:
        """Download and import from the best verified peers until we are as good as them or they fail."""
        back_off = self.config.batch
        while True:
            better = await self._verify_claims(self._better_peers())
            if not better:
                return
            ours = self._our_key()
            best = max(better, key=lambda ps: (status_key(ps[1].justified_epoch, ps[1].head_height, ps[1].head_hash), ps[0]))[1]
            sources = sorted(p for p, s in better if s.head_hash == best.head_hash)
            local = self.local_status()
            anchor = min(local.head_height + 1, best.head_height)
            start = max(self.finalized_height() + 1, anchor - (back_off - self.config.batch))
            imported_before = self.blocks_imported
            try:
                progress = await self._fetch_and_import(start, best.head_height, sources)
            finally:
                self.syncing = False
            if progress == "fork_below":
                if start <= self.finalized_height() + 1:
                    # The peer's chain does not contain our finalized block: not ours to follow.
                    for peer_id in sources:
                        self._mark_bad(peer_id, "conflicting_finality", 0)
                    continue
                back_off *= 2
                continue
            if progress == "stalled":
                continue  # the failing sources were left out; try the others
            if self.blocks_imported == imported_before and self._our_key() <= ours:
                # The advertised head did not materialise (stale status or a lying peer).
                for peer_id in sources:
                    self._mark_bad(peer_id, "no_progress", PENALTY_NO_PROGRESS)
                continue
            back_off = self.config.batch

    async def _fetch_and_import(self, start: int, end: int, sources: list[str]) -> str:
        """Fetch heights start..end in batches from `sources`, in parallel, and import in order.

        Returns "done", "fork_below" (the first block's parent is unknown) or "stalled"."""
        batch, parallel = self.config.batch, self.config.parallel
        height = start
        while height <= end:
            usable = [p for p in sources if self._usable(p)]
            if not usable:
                return "stalled"
            plan = []
            for i in range(parallel):
                first = height + i * batch
                if first > end:
                    break
                plan.append((first, min(batch, end - first + 1), usable[i % len(usable)]))
            results: list[list[bytes] | None] = [None] * len(plan)

            async with trio.open_nursery() as nursery:
                for index, (first, count, peer_id) in enumerate(plan):
                    nursery.start_soon(self._fetch_into, results, index, peer_id, first, count)
            # Decoded up front (None: undecodable) so that the chain can check the round's
            # signatures ahead of importing it.
            decoded = [None if raw is None else [_decode_block(data) for data in raw] for raw in results]
            if self.expect_blocks is not None:
                self.expect_blocks([b for blocks in decoded if blocks for b in blocks if b is not None])
            for (first, count, peer_id), blocks in zip(plan, decoded, strict=True):
                if blocks is None:
                    return "stalled"
                if not blocks:
                    return "done"  # the peer's head moved back (reorg); statuses refresh soon
                for offset, block in enumerate(blocks):
                    outcome = await self._import_decoded(peer_id, block, first + offset)
                    if outcome == ImportOutcome.UNKNOWN_PARENT and first + offset == start:
                        return "fork_below"
                    if outcome != ImportOutcome.OK:
                        penalty = 0.0 if outcome == ImportOutcome.REFUSED else PENALTY_BAD_BLOCK
                        self._mark_bad(peer_id, outcome, penalty)
                        return "stalled"
                height = first + len(blocks)
                if len(blocks) < count:
                    return "done"
        return "done"

    async def _fetch_into(
        self, results: list[list[bytes] | None], index: int, peer_id: str, start: int, count: int
    ) -> None:
        results[index] = await self._fetch_range(peer_id, start, count)

    async def _fetch_range(self, peer_id: str, start: int, count: int) -> list[bytes] | None:
        try:
            return await sync.request_range(self.network, self.chain_id, peer_id, start, count,
                                            self.config.request_timeout_s)
        except RequestError:
            self._mark_bad(peer_id, "request_failed", 0)
            return None
        except Exception:  # MalformedMessage, or a decoder failure nobody foresaw
            self._mark_bad(peer_id, "malformed_range", PENALTY_BAD_RESPONSE)
            return None

    async def _import_bytes(self, peer_id: str, data: bytes, expected_height: int) -> str:
        """Decode and import one block of a peer's range (what a round does for each block)."""
        return await self._import_decoded(peer_id, _decode_block(data), expected_height)

    async def _import_decoded(self, peer_id: str, block: Block | None, expected_height: int) -> str:
        if block is None:
            return ImportOutcome.INVALID
        if block.header.height != expected_height or block.header.chain != self.chain_id:
            return ImportOutcome.INVALID
        if block.header.slot > self.current_slot() + self.config.future_slots:
            return ImportOutcome.FUTURE
        if self.is_known(block.hash, block.header.height):
            return ImportOutcome.OK
        outcome = await self.import_block(block, peer_id)
        if outcome == ImportOutcome.OK:
            self.blocks_imported += 1
            # Syncing (and so not proposing) starts with the first block a source delivers: a peer
            # that only promises blocks cannot keep the node from its duties.
            self.syncing = True
        return outcome
