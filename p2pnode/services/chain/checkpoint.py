"""Checkpoint sync: join a chain at a recent finalized checkpoint instead of replaying from genesis.

Serving (`StateChunkServer`, every node): the `state_chunk` protocol hands out the state after the
node's current finalized checkpoint (or one of the few before it, `EARLIER_SERVED_CHECKPOINTS`, so
that a join that began there can finish after finality moves on) in key-ordered chunks (bounded items and bytes), rate-limited per
peer; a request for any other block is refused with `not_current_checkpoint`. The `vset_walk`
protocol serves, under the same limits, the validator-set walk to that checkpoint
(`vset_walk.ValidatorSetHistory`).

Joining (`CheckpointSync.join`, a fresh store only):

1. Ask connected peers for their Status; pick the finalized checkpoint most of them advertise (the
   highest epoch first), or the `trusted_checkpoint` hash when one is given (weak subjectivity).
2. Fetch the checkpoint block (blocks_by_range at its height; it must hash to the checkpoint) and
   the validator-set walk from the genesis set to the set that finalized it (`vset_walk`: each
   step attested by 2/3 of the stake of the set before it, the last step the checkpoint with its
   finality link). A source whose walk fails a check is penalised and the next one asked. If no
   source keeps a walk, the finality evidence is read from the blocks after the checkpoint: their
   votes linking the checkpoint (source) to the next epoch's checkpoint (target) must carry 2/3 of
   the genesis set's stake. With a trusted checkpoint hash neither is needed (weak subjectivity).
3. Fetch the state in chunks, spread over the peers that advertise the checkpoint, accumulate the
   LtHash root, and compare it with the header's state_root. On a mismatch each source is tried on
   its own; a source whose whole snapshot does not match is penalised, and so is every peer whose
   chunk differs from the one of a matching snapshot.
4. Install block and state as the store's base in one transaction (`Store.install_snapshot`).

Afterwards the node follows the head by normal range sync from the checkpoint, and fetches the
blocks below the checkpoint in the background (`p2pnode.services.chain.backfill`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import trio

from p2pnode.chain import accumulator, finality
from p2pnode.chain.encoding import encode
from p2pnode.chain.state import VSET_KEY, VSET_NEXT_KEY, compose_root
from p2pnode.chain.types import Block, Checkpoint
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.guards import guard_request
from p2pnode.services.chain.vset_walk import ValidatorSetHistory, WalkError, WalkVerifier
from p2pnode.services.clock import Clock
from p2pnode.services.ratelimit import TokenBuckets
from p2pnode.store.sqlite_store import Store
from protocols import codec, sync, topics
from protocols.network import NetworkAPI, RequestError
from protocols.validation import vote_signature_ok

log = logging.getLogger(__name__)

PENALTY_BAD_SNAPSHOT = 50.0
PENALTY_BAD_EVIDENCE = 50.0
PENALTY_BAD_RESPONSE = 20.0


class CheckpointSyncError(Exception):
    """Checkpoint sync cannot proceed (no peer, no evidence, no matching snapshot); `reason` names why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class StateChunkServer:
    """Serves the finalized state in chunks, rate-limited per peer (see the module docstring)."""

    def __init__(self, chain: BlockTree, network: NetworkAPI, clock: Clock, chain_id: str,
                 *, rate_per_s: float = 10.0, burst: float = 20.0, total_rate_per_s: float = 40.0) -> None:
        self.chain = chain
        self.network = network
        self.clock = clock
        self.chain_id = chain_id
        self.buckets: TokenBuckets[str] = TokenBuckets(rate_per_s, burst, max_entries=4096)
        # All peers together: many peer ids cannot buy more than this (a chunk is up to ~1 MiB to encode).
        self.total: TokenBuckets[str] = TokenBuckets(total_rate_per_s, max(1.0, 2 * total_rate_per_s), max_entries=1)
        # Only tests set this: the server then flips a byte of every value it serves.
        self.corrupt = False
        # The validator-set walk to this node's finalized checkpoint (kept as finality moves).
        self.walk = ValidatorSetHistory(chain)

    def register(self) -> None:
        self.network.set_request_handler(
            topics.state_chunk_protocol(self.chain_id),
            guard_request("state_chunk handler", self.serve, self.network.penalise),
            sync.MAX_STATE_CHUNK_REQUEST_BYTES,
        )
        self.network.set_request_handler(
            topics.vset_walk_protocol(self.chain_id),
            guard_request("vset_walk handler", self.serve_walk, self.network.penalise),
            sync.MAX_WALK_REQUEST_BYTES,
        )

    def _within_rate(self, peer_id: str) -> bool:
        """Take one request from the peer's bucket and the shared one; False when either is empty."""
        now = self.clock.now_ms()
        return self.buckets.allow(peer_id, now) and self.total.allow("all", now)

    async def serve_walk(self, peer_id: str, request: bytes) -> bytes:
        return self.answer_walk(peer_id, sync.decode_walk_request(request))

    def answer_walk(self, peer_id: str, req: sync.ValidatorSetWalkRequest) -> bytes:
        if not self._within_rate(peer_id):
            return sync.encode_walk_error("rate_limited")
        return self.walk.answer(req)

    async def serve(self, peer_id: str, request: bytes) -> bytes:
        return self.answer(peer_id, sync.decode_state_chunk_request(request))

    def answer(self, peer_id: str, req: sync.StateChunkRequest) -> bytes:
        if not self._within_rate(peer_id):
            return sync.encode_state_chunk_error("rate_limited")
        # The finalized checkpoint, or one of the few before it: a join that began on one of those
        # gets more epochs to finish when finality moves on meanwhile.
        served = [cp for cp in (self.chain.finalized, *self.chain.earlier_finalized) if cp is not None]
        checkpoint = next((cp for cp in served if cp.hash == req.block), None)
        if checkpoint is None:
            return sync.encode_state_chunk_error("not_current_checkpoint")
        items, done = self.chain.finalized_state_chunk(req.after, max(1, req.max_items), sync.STATE_CHUNK_BYTES,
                                                       checkpoint)
        if self.corrupt:
            items = [(k, v[:-1] + bytes([v[-1] ^ 1]) if v else b"\x01") for k, v in items]
        return sync.encode_state_chunk(items, done)


@dataclass(frozen=True)
class CheckpointConfig:
    request_timeout_s: float = 10.0
    chunk_items: int = sync.MAX_STATE_CHUNK_ITEMS
    # Blocks after the checkpoint searched for its finality votes (they arrive within two epochs).
    max_evidence_blocks: int = 1024
    # How long to wait for peers that advertise a finalized checkpoint.
    peer_wait_s: float = 60.0
    # Once one is found, a moment more for others (a choice among several peers is safer).
    settle_s: float = 2.0
    retries_per_chunk: int = 4
    attempts: int = 4
    # Validator-set walk steps accepted from one source (each one a change of the set).
    max_walk_steps: int = 4096
    # A server's per-peer limit (10 requests/s by default) is waited out, this often at most per chunk.
    rate_limit_waits: int = 40
    rate_limit_wait_s: float = 0.25


@dataclass
class JoinReport:
    checkpoint: Checkpoint
    items: int
    sources: list[str]
    penalised: list[str]
    # Steps of the validator-set walk verified (0: a trusted hash, or the genesis set's votes alone).
    walk_steps: int = 0


class CheckpointSync:
    """A fresh node's join at a finalized checkpoint (see the module docstring)."""

    def __init__(self, *, store: Store, network: NetworkAPI, clock: Clock, chain_id: str, genesis_hash: bytes,
                 local_status: sync.Status, trusted_stake: dict[bytes, int],
                 trusted_checkpoint: bytes | None = None, config: CheckpointConfig | None = None) -> None:
        self.store = store
        self.network = network
        self.clock = clock
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.local_status = local_status
        self.trusted_stake = trusted_stake
        self.trusted_checkpoint = trusted_checkpoint
        self.config = config or CheckpointConfig()
        self.penalised: list[str] = []
        # Peers left out of later attempts without a penalty (their checkpoint had no evidence we
        # can check: they may be honest on a validator set we do not know).
        self.excluded: set[str] = set()
        # Peers that answered `not_current_checkpoint` in this attempt: finality moved past it.
        self.moved_on: set[str] = set()

    # ---------------------------------------------------------------- the steps

    async def join(self) -> JoinReport:
        """Join, retrying with a fresh choice of checkpoint (and without penalised peers) when an
        attempt fails: the checkpoint moved on while it was fetched, or its sources misbehaved."""
        earlier: CheckpointSyncError | None = None
        for attempt in range(1, self.config.attempts + 1):
            try:
                return await self._join_once()
            except CheckpointSyncError as exc:
                if exc.reason == "no_checkpoint_peers" and earlier is not None:
                    raise earlier from None  # every peer left was tried: the first failure says why
                if attempt == self.config.attempts or exc.reason == "no_checkpoint_peers":
                    raise
                earlier = earlier or exc
                log.warning("checkpoint sync attempt %d failed (%s); trying again", attempt, exc)
        raise AssertionError("unreachable")

    async def _join_once(self) -> JoinReport:
        self.moved_on = set()
        checkpoint, sources = await self._choose_checkpoint()
        block, evidence_source = await self._fetch_checkpoint_block(checkpoint, sources)
        ordered = [evidence_source, *[p for p in sources if p != evidence_source]]
        walk: list[sync.ValidatorSetStep] | None = None
        if self.trusted_checkpoint is None:
            walk = await self._walk(checkpoint, ordered)
            if walk is None:  # no source keeps a walk: the genesis set's own votes, as before walks
                await self._check_finality(checkpoint, ordered)
        items, acc = await self._fetch_state(block, sources)
        self.store.install_snapshot(block, items, acc, encode(finality.cp_plain(checkpoint)))
        ValidatorSetHistory.adopt(self.store, None if walk is None else self.trusted_stake, walk or [])
        log.info("checkpoint sync: installed height %d (%d state items) from %d peers, %d validator-set steps",
                 checkpoint.height, len(items), len(sources), len(walk or []))
        return JoinReport(checkpoint, len(items), sources, list(self.penalised), len(walk or []))

    def _penalise(self, peer_id: str, reason: str, amount: float) -> None:
        self.network.penalise(peer_id, reason, amount)
        self.penalised.append(peer_id)
        log.warning("checkpoint sync: penalised %s (%s)", peer_id, reason)

    async def _statuses(self) -> dict[str, sync.Status]:
        found: dict[str, sync.Status] = {}

        async def ask(peer_id: str) -> None:
            try:
                data = await self.network.request(
                    peer_id, topics.status_protocol(self.chain_id), sync.encode_status(self.local_status),
                    timeout=self.config.request_timeout_s, max_response_bytes=sync.MAX_STATUS_BYTES)
                status = sync.decode_status(data)
            except RequestError:
                return
            except codec.MalformedMessage:
                self._penalise(peer_id, "bad_status", PENALTY_BAD_RESPONSE)
                return
            if (status.chain == self.chain_id and status.genesis == self.genesis_hash and status.finalized_height > 0
                    and peer_id not in self.penalised and peer_id not in self.excluded):
                found[peer_id] = status

        async with trio.open_nursery() as nursery:
            for peer_id in self.network.connected_peers():
                nursery.start_soon(ask, peer_id)
        return found

    async def _choose_checkpoint(self) -> tuple[Checkpoint, list[str]]:
        """The checkpoint to join at and the peers that advertise it (waits for peers)."""
        deadline = trio.current_time() + self.config.peer_wait_s
        settle_until: float | None = None
        while True:
            statuses = await self._statuses()
            candidates = Counter(
                (s.finalized_epoch, s.finalized_height, s.finalized_hash) for s in statuses.values()
                if self.trusted_checkpoint is None or s.finalized_hash == self.trusted_checkpoint)
            now = trio.current_time()
            if candidates:
                settle_until = settle_until if settle_until is not None else now + self.config.settle_s
                if now >= settle_until or now >= deadline:
                    # The most advertised checkpoint, the latest epoch among equals.
                    (epoch, height, block_hash), _ = max(candidates.items(), key=lambda kv: (kv[1], kv[0]))
                    sources = sorted(p for p, s in statuses.items() if s.finalized_hash == block_hash)
                    return Checkpoint(epoch=epoch, height=height, hash=block_hash), sources
            elif now >= deadline:
                what = "the trusted checkpoint" if self.trusted_checkpoint else "a finalized checkpoint"
                raise CheckpointSyncError("no_checkpoint_peers", f"no peer advertised {what}")
            await trio.sleep(0.5)

    async def _range(self, peer_id: str, start: int, count: int) -> list[Block] | None:
        """Blocks start.. from one peer, decoded (None and the peer penalised when malformed)."""
        try:
            encoded = await sync.request_range(self.network, self.chain_id, peer_id, start, count,
                                               self.config.request_timeout_s)
            blocks = sync.decode_blocks(encoded)
        except RequestError:
            return None
        except codec.MalformedMessage:
            self._penalise(peer_id, "malformed_range", PENALTY_BAD_RESPONSE)
            return None
        for offset, block in enumerate(blocks):
            if block.header.height != start + offset or block.header.chain != self.chain_id:
                self._penalise(peer_id, "range_out_of_order", PENALTY_BAD_RESPONSE)
                return None
        return blocks

    async def _fetch_checkpoint_block(self, checkpoint: Checkpoint, sources: list[str]) -> tuple[Block, str]:
        for peer_id in sources:
            blocks = await self._range(peer_id, checkpoint.height, 1)
            if not blocks:
                continue
            if blocks[0].hash != checkpoint.hash:
                self._penalise(peer_id, "wrong_checkpoint_block", PENALTY_BAD_EVIDENCE)
                continue
            return blocks[0], peer_id
        raise CheckpointSyncError("checkpoint_block_unavailable", checkpoint.hash.hex()[:16])

    async def _walk(self, checkpoint: Checkpoint, sources: list[str]) -> list[sync.ValidatorSetStep] | None:
        """The validator-set walk from genesis to `checkpoint`, verified (`vset_walk`), from the
        first source that serves one that verifies; None if no source keeps one. A source whose
        walk fails a check is penalised and left out."""
        failed: WalkError | None = None
        for peer_id in sources:
            verifier = WalkVerifier(self.trusted_stake, self.chain_id)
            try:
                steps = await self._fetch_walk(peer_id, checkpoint, verifier)
                if steps is None:
                    continue
                verifier.finish(checkpoint)
            except WalkError as exc:
                self._penalise(peer_id, f"bad_walk:{exc.reason}", PENALTY_BAD_EVIDENCE)
                failed = exc
                continue
            return steps
        if failed is not None:
            raise CheckpointSyncError("bad_validator_set_walk", str(failed))
        return None

    async def _fetch_walk(self, peer_id: str, checkpoint: Checkpoint,
                          verifier: WalkVerifier) -> list[sync.ValidatorSetStep] | None:
        """Every page of one source's walk, each step fed to `verifier` as it arrives (None: the
        source has none for this checkpoint, or did not answer)."""
        steps: list[sync.ValidatorSetStep] = []
        after = 0
        waits = 0
        while len(steps) < self.config.max_walk_steps:
            try:
                data = await self.network.request(
                    peer_id, topics.vset_walk_protocol(self.chain_id), sync.encode_walk_request(checkpoint.hash, after),
                    timeout=self.config.request_timeout_s, max_response_bytes=sync.MAX_WALK_RESPONSE_BYTES)
                resp = sync.decode_walk(data, after)
            except RequestError:
                return None
            except codec.MalformedMessage:
                self._penalise(peer_id, "malformed_walk", PENALTY_BAD_RESPONSE)
                return None
            if resp.error == "rate_limited" and waits < self.config.rate_limit_waits:
                waits += 1
                await trio.sleep(self.config.rate_limit_wait_s)
                continue
            if resp.error:
                return None
            for step in resp.steps:
                verifier.feed(step)
            steps.extend(resp.steps)
            if resp.done:
                return steps
            after = resp.steps[-1].epoch
        raise WalkError("walk_too_long", f"more than {self.config.max_walk_steps} steps")

    async def _check_finality(self, checkpoint: Checkpoint, sources: list[str]) -> None:
        """At least 2/3 of the trusted stake signed votes checkpoint -> next epoch (see the module docstring)."""
        total = sum(self.trusted_stake.values())
        for peer_id in sources:
            voted: dict[bytes, int] = {}
            height = checkpoint.height + 1
            end = checkpoint.height + self.config.max_evidence_blocks
            while height <= end:
                blocks = await self._range(peer_id, height, sync.MAX_BLOCKS_PER_REQUEST)
                if not blocks:
                    break
                for block in blocks:
                    for signed in block.votes:
                        vote = signed.vote
                        if (vote.source != checkpoint or vote.target.epoch != checkpoint.epoch + 1
                                or vote.chain != self.chain_id or vote.validator in voted
                                or vote.validator not in self.trusted_stake):
                            continue
                        if not vote_signature_ok(signed):
                            continue  # not counted; a block with a bad vote never passed import
                        voted[vote.validator] = self.trusted_stake[vote.validator]
                if total and sum(voted.values()) * 3 >= total * 2:
                    return
                height += len(blocks)
            log.info("checkpoint sync: %s showed votes of %d/%d stake for %s", peer_id, sum(voted.values()), total,
                     checkpoint.hash.hex()[:16])
        self.excluded.update(sources)
        raise CheckpointSyncError(
            "no_finality_evidence",
            "no peer showed votes of 2/3 of the trusted validator set finalizing the checkpoint "
            "(the set may have changed since genesis: pass --checkpoint HASH)")

    async def _chunk(self, peer_id: str, block_hash: bytes, after: bytes) -> sync.StateChunkResponse | None:
        """One chunk; a `rate_limited` answer is waited out (bounded), any other refusal is None."""
        for _ in range(self.config.rate_limit_waits):
            resp = await self._chunk_once(peer_id, block_hash, after)
            if resp is None or resp.error != "rate_limited":
                return None if resp is None or resp.error else resp
            await trio.sleep(self.config.rate_limit_wait_s)
        return None

    async def _chunk_once(self, peer_id: str, block_hash: bytes, after: bytes) -> sync.StateChunkResponse | None:
        try:
            data = await self.network.request(
                peer_id, topics.state_chunk_protocol(self.chain_id),
                sync.encode_state_chunk_request(block_hash, after, self.config.chunk_items),
                timeout=self.config.request_timeout_s, max_response_bytes=sync.MAX_STATE_CHUNK_RESPONSE_BYTES)
            resp = sync.decode_state_chunk(data, after, self.config.chunk_items)
        except RequestError:
            return None
        except codec.MalformedMessage:
            self._penalise(peer_id, "malformed_state_chunk", PENALTY_BAD_RESPONSE)
            return None
        if resp.error == "not_current_checkpoint":
            self.moved_on.add(peer_id)
        return resp

    async def _download(self, block_hash: bytes, sources: list[str]) -> tuple[list[tuple[bytes, bytes]], dict[bytes, tuple[str, bytes]]] | None:
        """The whole state, chunk i from source i mod n (a failing source is skipped); returns the
        items and, per chunk start key, (source, encoded chunk) so chunks can be compared later."""
        items: list[tuple[bytes, bytes]] = []
        served: dict[bytes, tuple[str, bytes]] = {}
        after = b""
        turn = 0
        live = list(sources)
        while live:
            resp = None
            for _ in range(self.config.retries_per_chunk):
                if not live:
                    break
                peer_id = live[turn % len(live)]
                turn += 1
                resp = await self._chunk(peer_id, block_hash, after)
                if resp is not None:
                    break
                live.remove(peer_id)
            if resp is None:
                break
            served[after] = (peer_id, codec.encode(resp))
            items.extend((item.key, item.value) for item in resp.items)
            if resp.done:
                return items, served
            after = resp.items[-1].key
        if set(sources) <= self.moved_on:
            # Not a bad snapshot: every source has finalized past the checkpoint and no longer
            # serves it (the join took longer than the epochs they keep); the next attempt takes
            # their new one.
            raise CheckpointSyncError("checkpoint_no_longer_served",
                                      "finality moved past it while its state was fetched")
        return None

    async def _fetch_state(self, block: Block, sources: list[str]) -> tuple[list[tuple[bytes, bytes]], int]:
        """The checkpoint's state items (matching its state root) and their accumulator."""
        expected = block.header.state_root
        first = await self._download(block.hash, sources)
        if first is not None:
            acc = _accumulate(first[0])
            if _root(first[0], acc) == expected:
                return first[0], acc
        # Someone served a bad chunk: find a source whose own snapshot matches, blame the rest.
        for peer_id in sources:
            alone = await self._download(block.hash, [peer_id])
            if alone is None:
                continue
            acc = _accumulate(alone[0])
            if _root(alone[0], acc) != expected:
                self._penalise(peer_id, "bad_state_snapshot", PENALTY_BAD_SNAPSHOT)
                continue
            if first is not None:
                good = alone[1]
                for after, (server, chunk) in first[1].items():
                    if server != peer_id and server not in self.penalised and good.get(after, ("", b""))[1] != chunk:
                        self._penalise(server, "bad_state_chunk", PENALTY_BAD_SNAPSHOT)
            return alone[0], acc
        raise CheckpointSyncError("no_matching_snapshot", f"no peer served state matching root {expected.hex()[:16]}")


def _root(items: list[tuple[bytes, bytes]], acc: int) -> bytes:
    values = {k: v for k, v in items if k in (VSET_KEY, VSET_NEXT_KEY)}
    return compose_root(accumulator.digest(acc), values.get(VSET_KEY), values.get(VSET_NEXT_KEY))


def _accumulate(items: list[tuple[bytes, bytes]]) -> int:
    acc = accumulator.EMPTY
    for key, value in items:
        acc = accumulator.add(acc, accumulator.element_hash(key, value))
    return acc
