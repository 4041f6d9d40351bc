"""`ChainService`: the chain services of one peer, composed over an abstract network.

The same class runs over libp2p (`p2pnode join`) and in the deterministic simulator
(`p2pnode.testing.sim`). Its whole contract:

    node = ChainService(chain, network, clock, signer=None)   # signer: a GuardedSigner to validate
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)                       # subscribed and serving when it returns
        admission = await node.submit_tx(encoded_signed_tx)
        node.head, node.finalized, node.status()

What it runs (all trio tasks in `run`'s nursery):
- gossip on `protocols.topics` blocks / txs / votes: one guard per topic decides the verdict and
  hands the decoded object to delivery (`protocols.network.Checked`); remote input never kills a
  task (`guards`);
- block production in the slots where the signer is the proposer (transactions from the mempool,
  finality votes from the vote pool), and one finality vote per epoch at the middle slot;
- sync (`SyncService`): status handshakes, range sync, orphan resolution;
- equivocation watch: evidence of double proposals and double / surround votes is submitted as a
  slashing transaction by a node that has a signer (its hotkey pays the fee);
- re-gossip of pending transactions and mempool expiry.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from p2pnode.chain import consensus
from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import sha256
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.state import State
from p2pnode.chain.transition import validate_tx
from p2pnode.chain.types import ZERO_HASH, Block, Checkpoint, Header, SignedTx, SignedVote
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.checkpoint import StateChunkServer
from p2pnode.services.chain.duties import ValidatorDuties
from p2pnode.services.chain.guards import RefusalCounter, record_failure
from p2pnode.services.chain.mempool import ROOM_REFUSALS, Admission, Mempool, MempoolConfig
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.services.chain.sync import ImportOutcome, OrphanPool, SyncConfig, SyncService
from p2pnode.services.chain.vote_delivery import MAX_VOTE_BYTES, ValidatorPeer, VoteDelivery
from p2pnode.services.chain.votes import EquivocationWatch, VotePool
from p2pnode.services.clock import Clock
from p2pnode.services.metrics import NodeMetrics
from protocols import codec, sync, topics
from protocols.network import Checked, NetworkAPI, Verdict
from protocols.validation import (
    block_chain,
    decode_on_chain,
    header_signature_ok,
    vote_chain,
    vote_signature_ok,
)

log = logging.getLogger(__name__)

PENALTY_INVALID_BLOCK = 50.0
PENALTY_TX_FLOOD = 20.0
PENALTY_INVALID_GOSSIP = 20.0
# Refusals that honest relays cause too (races with a new head, a full pool): never counted as a flood.
BENIGN_TX_REFUSALS = frozenset({"duplicate", "stale_nonce", "pool_full", "future_pool_full", "underpriced_replacement"})


@dataclass(frozen=True)
class NodeConfig:
    sync: SyncConfig = field(default_factory=SyncConfig)
    mempool: MempoolConfig = field(default_factory=MempoolConfig)
    regossip_interval_ms: int = 30_000
    regossip_limit: int = 256
    max_orphans: int = 256
    # Gossip blocks more than this many slots ahead of our clock are ignored (clock skew margin).
    future_slots: int = 1
    # A node catching up does not propose on its stale head (its block would only make a fork).
    produce_while_syncing: bool = False
    # A proposer whose head is not yet the previous slot's block waits up to this share of its
    # slot (permille) for that block before building: a full block that arrives a little late
    # is built on instead of forked off (the fork would cost one of the two blocks).
    previous_block_wait_permille: int = 333
    # A peer relaying this many transactions the mempool refuses (unaffordable, too far ahead,
    # over quota, ...) within the window is penalised once per window.
    tx_refusals_per_window: int = 64
    tx_refusal_window_ms: int = 10_000
    # Finality votes go by request to the distinct proposers of the next `direct_vote_slots` slots
    # (when the node can name a validator's peer), and are gossiped only when fewer than
    # `direct_vote_acks` of them took the vote within the timeout (`vote_delivery`).
    direct_vote_slots: int = 3
    direct_vote_acks: int = 2
    direct_vote_timeout_ms: int = 2_000
    # Votes one peer may hand in directly: a validator sends one per epoch to each proposer.
    vote_requests_per_minute: int = 30
    vote_requests_burst: int = 8


class ChainService(ValidatorDuties):
    """The chain services of one peer (see the module docstring for the contract)."""

    def __init__(
        self,
        chain: BlockTree,
        network: NetworkAPI,
        clock: Clock,
        signer: GuardedSigner | None = None,
        config: NodeConfig | None = None,
        metrics: NodeMetrics | None = None,
        validator_peer: ValidatorPeer | None = None,
    ) -> None:
        """`validator_peer`: the peer id a validator's hotkey runs under (libp2p derives the PeerID
        from the hotkey); with it, votes go straight to the coming proposers, without it they are
        gossiped."""
        self.chain = chain
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self._epoch_ran = False
        chain.epoch_listeners.append(self._count_epochs)
        # Called with (source, admission) for every transaction offered to the mempool (live events).
        self.admission_listeners: list[Callable[[str, Admission], None]] = []
        self.network = network
        self.clock = clock
        self.signer = signer
        self.config = config or NodeConfig()
        genesis = chain.store.canonical_block(0)
        assert genesis is not None, "store has no genesis"
        self.chain_id = genesis.header.chain
        self.genesis_hash = genesis.hash
        self.genesis_ms = genesis.header.timestamp_ms
        state = chain.head_state()
        self.slot_ms = state.param("slot_ms")
        self.epoch_slots = state.param("epoch_slots")
        self.mempool = Mempool(self.config.mempool)
        self.vote_pool = VotePool()
        # Each signature is verified once: a block's transactions and votes already pooled here
        # (same bytes, so the same signature) are not verified again on import.
        chain.tx_signature_verified = lambda stx: stx.id in self.mempool
        chain.vote_signature_verified = self.vote_pool.holds
        self.watch = EquivocationWatch()
        self.orphans = OrphanPool(self.config.max_orphans)
        self.sync = SyncService(
            network=network,
            clock=clock,
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
            slot_ms=self.slot_ms,
            genesis_ms=self.genesis_ms,
            local_status=self.local_status,
            is_known=chain.is_known,
            finalized_height=self._finalized_height,
            import_block=self._import,
            read_range=chain.store.canonical_range_bytes,
            head_claim_problem=self.head_claim_problem,
            config=self.config.sync,
            expect_blocks=chain.expect_blocks,
        )
        # Serves the finalized state to peers joining by checkpoint sync.
        self.state_chunks = StateChunkServer(chain, network, clock, self.chain_id)
        self.topics = {kind: topics.topic(self.chain_id, kind) for kind in topics.TOPIC_KINDS}
        self._tx_refusals = RefusalCounter(self.config.tx_refusals_per_window, self.config.tx_refusal_window_ms)
        self._evidence_send, self._evidence_recv = trio.open_memory_channel[ChainObject](64)
        # Offenders this node already submitted evidence against (only signature-checked evidence
        # of known validators gets here; capped all the same, the oldest forgotten first).
        self._reported: dict[bytes, None] = {}
        self._status_cache: tuple[bytes, sync.Status] | None = None
        self.blocks_proposed = 0
        self.votes_cast = 0
        self._block_delays_ms: deque[int] = deque(maxlen=32)
        self._head_moved = trio.Event()
        chain.head_listeners.append(self._on_head_moved)
        self.evidence_submitted = 0
        self.vote_delivery = None if validator_peer is None else VoteDelivery(
            chain, network, clock, self.config, self.chain_id, self.epoch_slots, self.vote_pool, self._judge_vote,
            validator_peer, self._gossip_vote)
        self._vote_send, self._vote_recv = trio.open_memory_channel[tuple[SignedVote, int]](4)

    # ---------------------------------------------------------------- public surface

    @property
    def head(self) -> Header:
        return self.chain.head

    @property
    def finalized(self) -> Checkpoint | None:
        return self.chain.finalized

    def current_slot(self) -> int:
        return max(0, (self.clock.now_ms() - self.genesis_ms) // self.slot_ms)

    async def submit_tx(self, data: bytes) -> Admission:
        """Admit an encoded SignedTx to the mempool and gossip it if admitted."""
        admission = self.mempool.add(data, self.chain.head_state(), self._next_context(), self.clock.now_ms())
        self.metrics.mempool_admissions.labels("local", admission.reason).inc()
        self._report_admission("local", admission)
        if admission.added:
            await self._publish_tx(data, admission.tx_id)
        return admission

    async def submit_txs(self, datas: Sequence[bytes]) -> list[Admission]:
        """Admit a batch of encoded SignedTxs against one head state and context (POST /txs);
        gossips each admitted one. One `Admission` per item, in order."""
        admissions = self.mempool.add_batch(datas, self.chain.head_state(), self._next_context(), self.clock.now_ms())
        for admission in admissions:
            self.metrics.mempool_admissions.labels("local", admission.reason).inc()
            self._report_admission("local", admission)
        await self._publish_txs([data for data, a in zip(datas, admissions, strict=True) if a.added])
        return admissions

    def status(self) -> dict[str, Any]:
        head = self.head
        finalized = self.finalized
        justified = self.chain.justified
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "peer_id": self.network.peer_id,
            "current_slot": self.current_slot(),
            "head_height": head.height,
            "head_slot": head.slot,
            "head_hash": head.hash.hex(),
            "justified_epoch": None if justified is None else justified.epoch,
            "finalized_epoch": None if finalized is None else finalized.epoch,
            "finalized_height": None if finalized is None else finalized.height,
            "finalized_hash": None if finalized is None else finalized.hash.hex(),
            "validator": None if self.signer is None else self.signer.public_key.hex(),
            "syncing": self.sync.syncing,
            "peers": len(self.network.connected_peers()),
            "mempool": len(self.mempool),
            "votes_pending": len(self.vote_pool),
            "orphans": len(self.orphans),
            "forks": self.chain.fork_count(),
            "blocks_proposed": self.blocks_proposed,
            "votes_cast": self.votes_cast,
            # Votes this node gossiped: all of them where the direct path is off, else those no
            # proposer took directly and those the chain had not counted once their slots passed.
            "votes_gossiped": self.votes_cast if self.vote_delivery is None
            else self.vote_delivery.gossiped + self.vote_delivery.gossiped_uncounted,
            "evidence_submitted": self.evidence_submitted,
            "block_delay_ms": self.clock_offset()[0],
            "block_delay_samples": self.clock_offset()[1],
        }

    def local_status(self) -> sync.Status:
        head_hash = self.chain.store.head_hash
        if self._status_cache is not None and self._status_cache[0] == head_hash:
            return self._status_cache[1]
        status = self._make_status()
        self._status_cache = (head_hash, status)
        return status

    def _make_status(self) -> sync.Status:
        head = self.head
        finalized = self.finalized
        justified = self.chain.justified
        return sync.Status(
            chain=self.chain_id,
            genesis=self.genesis_hash,
            head_height=head.height,
            head_slot=head.slot,
            head_hash=head.hash,
            justified_epoch=0 if justified is None else justified.epoch,
            finalized_epoch=0 if finalized is None else finalized.epoch,
            finalized_height=0 if finalized is None else finalized.height,
            finalized_hash=self.genesis_hash if finalized is None else finalized.hash,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until cancelled; `started()` once subscribed and serving."""
        self.network.subscribe(self.topics["blocks"], self._guard_block, self._on_block)
        # The blocks topic carries any legal block: its size limit follows max_block_bytes at the head.
        self._blocks_topic_limit = 0
        self._follow_block_size_limit()
        self.chain.head_listeners.append(lambda _head: self._follow_block_size_limit())
        self.network.subscribe(self.topics["stake"], self._guard_stake_tx, _no_op_handler)
        self.network.subscribe(self.topics["weights"], self._guard_weights_tx, _no_op_handler)
        self.network.subscribe(self.topics["votes"], self._guard_vote, _no_op_handler)
        self.network.subscribe(self.topics["txbatch"], self._guard_tx_batch, _no_op_handler)
        self.state_chunks.register()
        if self.vote_delivery is not None:
            self.vote_delivery.register()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.sync.run)
            nursery.start_soon(self._duties)
            nursery.start_soon(self._evidence_task)
            nursery.start_soon(self._vote_delivery_task)
            task_status.started()

    # ---------------------------------------------------------------- helpers

    def _follow_block_size_limit(self) -> None:
        limit = self.chain.head_param("max_block_bytes")
        if limit != self._blocks_topic_limit:
            self.network.set_topic_max_bytes(self.topics["blocks"], limit)
            self._blocks_topic_limit = limit

    async def _gossip(self, kind: str, data: bytes) -> None:
        """Publish best effort: a gossip failure (a stopped network, a limit) is logged, never
        raised into block production or voting; peers still fetch what they miss by sync."""
        try:
            await self.network.publish(self.topics[kind], data)
        except Exception as exc:
            log.warning("gossip of a %d-byte %s message failed: %r", len(data), kind, exc)

    async def _gossip_vote(self, data: bytes) -> None:
        await self._gossip("votes", data)

    def _on_head_moved(self, _head: bytes) -> None:
        self._head_moved.set()
        self._head_moved = trio.Event()

    def _finalized_height(self) -> int:
        finalized = self.finalized
        return 0 if finalized is None else finalized.height

    # How far back `tx_status` looks for an included transaction.
    TX_LOOKBACK_BLOCKS = 512

    def tx_status(self, tx_id: bytes, since_height: int) -> dict[str, Any]:
        """Where a submitted transaction is: "pending" (with the reason it would fail now, if it
        would), "included" in a canonical block at or after `since_height` (and whether that block
        is finalized), or "unknown" (dropped, or included before the blocks looked at)."""
        stx = self.mempool.get(tx_id)
        state = self.chain.head_state()
        if stx is not None:
            problem = None
            expected = state.nonce(stx.tx.sender)
            if stx.tx.nonce == expected:
                try:
                    validate_tx(state, stx.tx, self._next_context())
                except TxInvalid as exc:
                    problem = exc.reason
            else:
                problem = f"waiting for nonce {expected} of the sender first"
            return {"status": "pending", "problem": problem}
        head = self.head.height
        finalized = self._finalized_height()
        for height in range(max(since_height, head - self.TX_LOOKBACK_BLOCKS, 0), head + 1):
            block = self.chain.store.canonical_block(height)
            if block is not None and any(t.id == tx_id for t in block.txs):
                return {"status": "included", "height": height, "block": block.hash.hex(),
                        "finalized": height <= finalized}
        return {"status": "unknown"}

    def _next_context(self) -> BlockContext:
        head = self.head
        slot = max(self.current_slot(), head.slot) + 1
        return BlockContext(height=head.height + 1, slot=slot, proposer=ZERO_HASH, timestamp_ms=self.clock.now_ms())

    # ---------------------------------------------------------------- blocks

    def _guard_block(self, peer_id: str, data: bytes) -> Checked:
        """The blocks topic's guard: cheap checks first, then the proposer's right to the slot (on
        the parent's state), then the signature; only a block that passes all is relayed and handed
        to `_on_block` (which imports it without checking the header signature again)."""
        block = decode_on_chain(Block, data, self.chain_id, block_chain, self.chain.head_param("max_block_bytes"))
        if isinstance(block, Checked):
            return block
        header = block.header
        if self.chain.is_known(block.hash, header.height):
            return Checked(Verdict.IGNORE, reason="known")
        if header.slot > self.current_slot() + self.config.future_slots:
            # Still a sample of the proposer's clock against ours, once it is authenticated.
            if self._known_validator(header.proposer) and header_signature_ok(block.signed_header):
                self._observe_block_time(header.slot)
            return Checked(Verdict.IGNORE, reason="future_slot")
        if header.height <= self._finalized_height():
            return Checked(Verdict.IGNORE, reason="finalized")
        if not self._known_validator(header.proposer):
            return Checked(Verdict.IGNORE, reason="unknown_proposer")  # unverifiable here, not relayed
        try:
            self.chain.check_header_on_parent(header)
        except BlockInvalid as exc:
            if exc.reason == "unknown_parent":
                # Not verifiable yet, so not relayed; kept (signed by a validator) until sync
                # brings the parent.
                if not header_signature_ok(block.signed_header):
                    return Checked(Verdict.REJECT, reason="bad_signature")
                self.orphans.add(block)
                self.sync.request_sync()
                return Checked(Verdict.IGNORE, reason="unknown_parent")
            if exc.reason == "conflicts_with_finality":
                return Checked(Verdict.IGNORE, reason=exc.reason)
            return Checked(Verdict.REJECT, reason=exc.reason)  # e.g. a slot the signer does not own
        if not header_signature_ok(block.signed_header):
            return Checked(Verdict.REJECT, reason="bad_signature")
        self._observe_block_time(header.slot)
        evidence = self.watch.see_header(block.signed_header, self.current_slot())
        if evidence is not None:
            self._queue_evidence(evidence)
            return Checked(Verdict.IGNORE, reason="equivocation")  # relay only a proposer's first block of a slot
        return Checked(Verdict.ACCEPT, block)

    def _observe_block_time(self, slot: int) -> None:
        """How late (by our clock) a new block from another proposer arrives after its slot began."""
        self._block_delays_ms.append(self.clock.now_ms() - (self.genesis_ms + slot * self.slot_ms))

    def clock_offset(self) -> tuple[int | None, int]:
        """(median arrival delay of recent gossip blocks in ms, samples): our clock's apparent offset
        against the proposers' clocks plus propagation; None before any block arrived."""
        samples = sorted(self._block_delays_ms)
        if not samples:
            return None, 0
        return samples[len(samples) // 2], len(samples)

    def _known_validator(self, hotkey: bytes) -> bool:
        state = self.chain.head_state()
        for name in consensus.VALIDATOR_SET_NAMES:
            vset = consensus.stored_validator_set(state, name)
            if vset is not None and any(hot == hotkey for hot, _ in vset.validators):
                return True
        return False

    def head_claim_problem(self, block: Block, claimed_hash: bytes) -> str | None:
        """Why the block a peer served for its Status head does not back that claim (None: it does).

        A claim is a signed header hashing to the advertised head, at a slot the clock has reached,
        by a validator we know of when its epoch is within the validator sets our head knows (a
        node far behind cannot know later sets; there only the signature is checked, and a peer
        that then serves nothing is penalised for making no progress)."""
        header = block.header
        if block.hash != claimed_hash:
            return "head_not_served"
        if header.chain != self.chain_id:
            return "wrong_chain"
        if header.slot > self.current_slot() + self.config.future_slots:
            return "future_head"
        within_known_sets = header.slot // self.epoch_slots <= self.head.slot // self.epoch_slots + 1
        if within_known_sets and not self._known_validator(header.proposer):
            return "unknown_proposer"
        if not header_signature_ok(block.signed_header):
            return "bad_signature"
        return None

    async def _on_block(self, peer_id: str, block: Block) -> None:
        outcome = await self._import(block, peer_id, header_verified=True)
        if outcome == ImportOutcome.INVALID:
            self.network.penalise(peer_id, "invalid_block", PENALTY_INVALID_BLOCK)

    async def _import(self, block: Block, peer_id: str, *, header_verified: bool = False) -> str:
        """Import a block and then any orphans it unlocks; the outcome is the first block's."""
        outcome = self._import_one(block, header_verified)
        if outcome != ImportOutcome.OK:
            return outcome
        ready = self.orphans.pop_children(block.hash)
        while ready:
            child = ready.pop(0)
            # Orphans come only from the blocks guard, which verified their header signature.
            if self._import_one(child, header_verified=True) == ImportOutcome.OK:
                ready.extend(self.orphans.pop_children(child.hash))
        await trio.lowlevel.checkpoint()
        return outcome

    def _report_admission(self, source: str, admission: Admission) -> None:
        for listener in self.admission_listeners:
            listener(source, admission)

    def _count_epochs(self, block_hash: bytes, height: int, records: list[Any]) -> None:
        self._epoch_ran = True
        for record in records:
            self.metrics.subnet_epochs.labels(str(record.netuid)).inc()

    def _import_one(self, block: Block, header_verified: bool = False) -> str:
        """Import one block from any path (gossip, sync, orphans); never raises."""
        outcome = self._import_timed(block, header_verified)
        self.metrics.block_imports.labels(outcome).inc()
        return outcome

    def _import_timed(self, block: Block, header_verified: bool) -> str:
        started = trio.current_time()
        self._epoch_ran = False
        try:
            return self._import_checked(block, header_verified)
        finally:
            elapsed = trio.current_time() - started
            self.metrics.block_import_seconds.observe(elapsed)
            if self._epoch_ran:
                self.metrics.epoch_block_seconds.observe(elapsed)

    def _import_checked(self, block: Block, header_verified: bool) -> str:
        if block.header.slot > self.current_slot() + self.config.future_slots:
            return ImportOutcome.FUTURE  # whatever its signatures: the clock has not reached it
        previous_head = self.chain.store.head_hash
        try:
            result = self.chain.import_block(block, header_verified=header_verified)
        except BlockInvalid as exc:
            if exc.reason == "unknown_parent":
                self.orphans.add(block)
                self.sync.request_sync()
                return ImportOutcome.UNKNOWN_PARENT
            if exc.reason in ("conflicts_with_finality", "fork_pool_full"):
                return ImportOutcome.REFUSED
            log.info("invalid block %s at height %d: %s", block.hash.hex()[:12], block.header.height, exc)
            return ImportOutcome.INVALID
        except Exception as exc:
            # Nothing is kept (the import commits in one store transaction), so the node goes on.
            record_failure("block import", exc)
            return ImportOutcome.INVALID
        if result.head and not result.known:
            state = self.chain.head_state()
            if result.reorged:
                self.metrics.reorgs.inc()
                self.metrics.reorg_depth.observe(result.reorged)
                self._readmit_rolled_back(state)
            if not result.reorged and block.header.parent == previous_head:
                # The head moved by this block alone: only its senders' nonces moved.
                self.mempool.remove_applied(state, (stx.tx.sender for stx in block.txs))
            else:
                self.mempool.remove_applied(state)
            self._readmit_parked(state)
            self.orphans.drop_below(self._finalized_height())
        if not result.known:
            # Votes reach mostly the proposers directly: the rest of the network sees them here.
            for signed_vote in block.votes:
                evidence = self.watch.see_vote(signed_vote)
                if evidence is not None:
                    self._queue_evidence(evidence)
        return ImportOutcome.OK

    def _readmit_rolled_back(self, state: Any) -> None:
        """Transactions of blocks a reorganisation dropped go back to the mempool (those the new
        chain already applied are refused as stale), so no sender is left with a nonce gap: oldest
        block first (a sender's nonces in order), ahead of pooled transactions that rank no higher
        (a pool kept full by new submissions would otherwise refuse them, and a sender whose
        included transaction is refused everywhere waits forever). Their signatures were verified
        when the blocks were imported, so they are not checked again."""
        ctx, now = self._next_context(), self.clock.now_ms()
        # take_rolled_back lists the blocks as they were rolled back: newest first.
        for block in reversed(self.chain.take_rolled_back()):
            for stx in block.txs:
                data = codec.encode(stx)
                tx_id = sha256(data)
                if self.mempool.get(tx_id) is None:
                    self.mempool.add_signed(stx, data, tx_id, state, ctx, now, signature_verified=True,
                                            restored=True)

    def _readmit_parked(self, state: State) -> None:
        """Gossiped transactions refused earlier for want of room get another chance now that a
        block has freed some (not gossiped again: the peers that sent them hold them). A parked
        transaction that turns out invalid for everyone counts against the peer that sent it."""
        for source, admission in self.mempool.readmit_parked(state, self._next_context(), self.clock.now_ms()):
            self.metrics.mempool_admissions.labels("parked", admission.reason).inc()
            self._report_admission("gossip", admission)
            if admission.stateless_rejection:
                # What its gossip REJECT would have cost the sender, had the pool had room then.
                self.network.penalise(source, "invalid_message", PENALTY_INVALID_GOSSIP)

    # ---------------------------------------------------------------- transactions and votes

    def _guard_stake_tx(self, peer_id: str, data: bytes) -> Checked:
        return self._guard_tx("stake", peer_id, data)

    def _guard_weights_tx(self, peer_id: str, data: bytes) -> Checked:
        return self._guard_tx("weights", peer_id, data)

    def _guard_tx(self, topic_kind: str, peer_id: str, data: bytes) -> Checked:
        """A transaction topic's guard: admission to the mempool is the check (and the delivery)."""
        return self._admit_gossiped_tx(topic_kind, peer_id, data)

    def _admit_gossiped_tx(self, topic_kind: str, peer_id: str, data: bytes, state: State | None = None,
                           ctx: BlockContext | None = None, now: int | None = None) -> Checked:
        tx_id = sha256(data)
        if self.mempool.get(tx_id) is not None:
            return Checked(Verdict.IGNORE, reason="duplicate")  # already pending here
        if len(data) > self.mempool.config.max_tx_bytes:
            return Checked(Verdict.REJECT, reason="too_large")
        try:
            stx = codec.decode(SignedTx, data, max_bytes=self.mempool.config.max_tx_bytes)
        except codec.MalformedMessage:
            return Checked(Verdict.REJECT, reason="malformed")
        if topics.tx_topic_kind(stx.tx.kind) != topic_kind:
            return Checked(Verdict.REJECT, reason="wrong_topic")  # a protocol violation
        admission = self.mempool.add_signed(stx, data, tx_id, self.chain.head_state() if state is None else state,
                                            self._next_context() if ctx is None else ctx,
                                            self.clock.now_ms() if now is None else now)
        self.metrics.mempool_admissions.labels("gossip", admission.reason).inc()
        self._report_admission("gossip", admission)
        if admission.added:
            return Checked(Verdict.ACCEPT, stx)
        if admission.reason in ROOM_REFUSALS:
            parked = self.mempool.park(stx, data, tx_id, peer_id, self.clock.now_ms() if now is None else now)
            if parked.stateless_rejection:  # its signature, checked before it took a parked place
                admission = parked
        if admission.stateless_rejection:
            return Checked(Verdict.REJECT, reason=admission.reason)
        if admission.reason not in BENIGN_TX_REFUSALS and self._tx_refusals.refused(peer_id, self.clock.now_ms()):
            self.network.penalise(peer_id, "tx_flood", PENALTY_TX_FLOOD)
        return Checked(Verdict.IGNORE, reason=admission.reason)

    def _guard_tx_batch(self, peer_id: str, data: bytes) -> Checked:
        """The txbatch topic's guard: each item is judged as on the stake topic; the batch is
        forwarded if any item was new here, rejected (and its sender penalised) if any item is
        invalid for everyone. Items admitted before such an item stay: each is valid on its own."""
        try:
            items = codec.decode_plain(data, max_bytes=topics.MAX_GOSSIP_BATCH_BYTES)
        except codec.MalformedMessage:
            return Checked(Verdict.REJECT, reason="malformed")
        if (type(items) is not list or not 2 <= len(items) <= topics.MAX_GOSSIP_BATCH_TXS
                or any(type(item) is not bytes for item in items)):
            return Checked(Verdict.REJECT, reason="malformed")
        state, ctx, now = self.chain.head_state(), self._next_context(), self.clock.now_ms()
        added = []
        for item in items:
            checked = self._admit_gossiped_tx("stake", peer_id, item, state, ctx, now)
            if checked.verdict == Verdict.REJECT:
                return checked
            if checked.verdict == Verdict.ACCEPT:
                added.append(checked.value)
        if not added:
            return Checked(Verdict.IGNORE, reason="nothing_new")
        return Checked(Verdict.ACCEPT, added)

    def _guard_vote(self, peer_id: str, data: bytes) -> Checked:
        signed_vote = decode_on_chain(SignedVote, data, self.chain_id, vote_chain, MAX_VOTE_BYTES)
        if isinstance(signed_vote, Checked):
            return signed_vote
        return self._judge_vote(signed_vote)

    def _judge_vote(self, signed_vote: SignedVote) -> Checked:
        """The checks a decoded vote of this chain passes on the topic and the direct path alike;
        an accepted vote is in the pool."""
        vote = signed_vote.vote
        epoch = self.current_slot() // self.epoch_slots
        if not epoch - 2 <= vote.target.epoch <= epoch + 1:
            return Checked(Verdict.IGNORE, reason="epoch_out_of_window")
        if not self._known_validator(vote.validator):
            return Checked(Verdict.IGNORE, reason="unknown_validator")  # keeps the bounded pool for validators
        if not vote_signature_ok(signed_vote):
            return Checked(Verdict.REJECT, reason="bad_signature")
        evidence = self.watch.see_vote(signed_vote)
        if evidence is not None:
            self._queue_evidence(evidence)
        if not self.vote_pool.add(signed_vote):
            return Checked(Verdict.IGNORE, reason="duplicate")
        return Checked(Verdict.ACCEPT, signed_vote)


async def _no_op_handler(peer_id: str, data: bytes) -> None:
    """Transactions and votes are taken in by their validators; nothing is left to do on delivery."""
