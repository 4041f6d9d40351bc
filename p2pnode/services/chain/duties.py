"""The validator's duties of a `ChainService`: proposing in its slots, one finality vote per
epoch, mempool upkeep and re-gossip, and submitting slashing evidence the equivocation watch found.

`ValidatorDuties` is a part of `ChainService` (its base class), kept apart so that the gossip
guards and imports in `chain_service` and the duties here each read as one piece.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.chain import consensus, finality
from p2pnode.chain.encoding import encode, sha256
from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import FinalityVote, SignedTx, SlashDoubleProposal, SlashVote, make_tx
from p2pnode.services.chain.guards import record_failure
from p2pnode.services.chain.sync import ImportOutcome
from protocols import codec, topics

if TYPE_CHECKING:
    from p2pnode.chain.types import Block, Header, SignedVote
    from p2pnode.services.chain.block_tree import BlockTree
    from p2pnode.services.chain.chain_service import NodeConfig
    from p2pnode.services.chain.mempool import Admission, Mempool
    from p2pnode.services.chain.signer import GuardedSigner
    from p2pnode.services.chain.sync import SyncService
    from p2pnode.services.chain.vote_delivery import VoteDelivery
    from p2pnode.services.chain.votes import EquivocationWatch, VotePool
    from p2pnode.services.clock import Clock
    from protocols.network import NetworkAPI

# The duties log under the chain service's name, as they did when they were written there.
log = logging.getLogger("p2pnode.services.chain.chain_service")

MAX_REPORTED_OFFENDERS = 1024


class ValidatorDuties:
    """The duties half of `ChainService`; it reads the service's attributes declared below."""

    chain: BlockTree
    network: NetworkAPI
    clock: Clock
    signer: GuardedSigner | None
    config: NodeConfig
    chain_id: str
    genesis_ms: int
    slot_ms: int
    epoch_slots: int
    mempool: Mempool
    vote_pool: VotePool
    watch: EquivocationWatch
    sync: SyncService
    blocks_proposed: int
    votes_cast: int
    _head_moved: trio.Event
    evidence_submitted: int
    _evidence_send: trio.MemorySendChannel[ChainObject]
    _evidence_recv: trio.MemoryReceiveChannel[ChainObject]
    _reported: dict[bytes, None]
    vote_delivery: VoteDelivery | None
    _vote_send: trio.MemorySendChannel[tuple[SignedVote, int]]
    _vote_recv: trio.MemoryReceiveChannel[tuple[SignedVote, int]]

    if TYPE_CHECKING:

        @property
        def head(self) -> Header: ...

        def current_slot(self) -> int: ...

        def clock_offset(self) -> tuple[int | None, int]: ...

        async def submit_tx(self, data: bytes) -> Admission: ...

        async def _import(self, block: Block, peer_id: str, *, header_verified: bool = False) -> str: ...

        async def _gossip(self, kind: str, data: bytes) -> None: ...

    async def _duties(self) -> None:
        """Per slot: propose at the slot start, vote at the middle slot's half, then upkeep."""
        while True:
            slot = self.current_slot() + 1
            start_ms = self.genesis_ms + slot * self.slot_ms
            await self.clock.sleep_until_ms(start_ms)
            await self._duty("propose", self._propose(slot))
            await self.clock.sleep_until_ms(start_ms + self.slot_ms // 2)
            if slot % self.epoch_slots == self.epoch_slots // 2:
                await self._duty("vote", self._vote(slot // self.epoch_slots, slot))
            await self._duty("upkeep", self._upkeep(slot))

    @staticmethod
    async def _duty(name: str, duty: Any) -> None:
        """Run one duty; a failure (remote data in the mempool or vote pool that nobody foresaw)
        skips this slot's duty instead of ending the node."""
        try:
            await duty
        except Exception as exc:
            record_failure(f"{name} duty", exc)

    async def _propose(self, slot: int) -> None:
        if self.signer is None:
            return
        if self.sync.syncing and not self.config.produce_while_syncing:
            return
        state = self.chain.head_state()
        if self.head.slot >= slot or consensus.proposer_for_slot(state, slot) != self.signer.public_key:
            return
        if self.head.slot < slot - 1:
            await self._wait_for_previous_block(slot)
            state = self.chain.head_state()
            if self.head.slot >= slot or consensus.proposer_for_slot(state, slot) != self.signer.public_key:
                return
        votes = self.vote_pool.for_inclusion(slot // self.epoch_slots)
        failed: list[SignedTx] = []
        try:
            # Every executable pending transaction is a candidate, in fee order, read only as far
            # as the block fills; those that fail to apply leave the pool.
            draft = self.chain.prepare_block(
                self.signer.public_key,
                slot,
                self.mempool.ordered(state),
                votes,
                randao_reveal=self.signer.randao_reveal(self.chain_id, slot),
                skip_invalid=True,
                failed=failed,
            )
        except BlockInvalid as exc:
            log.error("could not build a block for slot %d: %s", slot, exc)
            return
        finally:
            if failed:
                self.mempool.evict([stx.id for stx in failed], state)
        block = self.signer.sign_block(draft)
        if block is None:
            log.warning("signing record refused a block for slot %d", slot)
            return
        self.watch.see_header(block.signed_header, slot)
        # Published before our own import: the block was applied once already while it was built,
        # and the other peers verify and import it meanwhile, instead of after it (with full
        # blocks, an import is a large part of the slot).
        await self._gossip("blocks", codec.encode(block))
        if await self._import(block, self.network.peer_id) != ImportOutcome.OK:
            log.error("own block for slot %d did not import", slot)
            return
        self.blocks_proposed += 1

    async def _wait_for_previous_block(self, slot: int) -> None:
        """Until the head is the block of `slot - 1` (or later), at most
        `previous_block_wait_permille` of the slot from its start."""
        deadline_ms = self.genesis_ms + slot * self.slot_ms + self.slot_ms * self.config.previous_block_wait_permille // 1000
        async with trio.open_nursery() as nursery:

            async def give_up() -> None:
                await self.clock.sleep_until_ms(deadline_ms)
                nursery.cancel_scope.cancel()

            nursery.start_soon(give_up)
            while self.head.slot < slot - 1:
                await self._head_moved.wait()
            nursery.cancel_scope.cancel()

    async def _vote(self, epoch: int, slot: int) -> None:
        if self.signer is None:
            return
        state = self.chain.head_state()
        vset = consensus.validator_set_for_epoch(state, epoch)
        if vset is None or vset.stake_of(self.signer.public_key) == 0:
            return
        head = self.head
        target = finality.vote_target(state, head.hash, head.height, head.slot, epoch)
        source = finality.justified_checkpoint(state)
        if target is None or source is None or source.epoch >= target.epoch:
            return
        vote = FinalityVote(chain=self.chain_id, validator=self.signer.public_key, source=source, target=target)
        signed_vote = self.signer.sign_vote(vote)
        if signed_vote is None:
            log.warning("signing record refused a vote for epoch %d", epoch)
            return
        self.watch.see_vote(signed_vote)
        self.vote_pool.add(signed_vote)
        self.votes_cast += 1
        if self.vote_delivery is None:
            await self._gossip("votes", codec.encode(signed_vote))
            return
        try:
            # Delivered beside the duties: waiting for the proposers' answers must not hold up
            # the next slot's block.
            self._vote_send.send_nowait((signed_vote, slot))
        except trio.WouldBlock:
            await self._gossip("votes", codec.encode(signed_vote))

    async def _vote_delivery_task(self) -> None:
        async with trio.open_nursery() as nursery:  # a task per vote cast (one an epoch), a few slots each
            async for signed_vote, slot in self._vote_recv:
                nursery.start_soon(self._deliver_vote, signed_vote, slot)

    async def _deliver_vote(self, signed_vote: SignedVote, slot: int) -> None:
        """Hand the vote to the coming proposers; once the slots it went to have passed, gossip it
        if the head has not counted it (a proposer may acknowledge a vote and drop it, or hold the
        request past its timeout, which counts as taken)."""
        assert self.vote_delivery is not None and self.signer is not None
        try:
            if await self.vote_delivery.deliver(signed_vote, slot, self.signer.public_key):
                check_slot = slot + self.config.direct_vote_slots + 1
                await self.clock.sleep_until_ms(self.genesis_ms + check_slot * self.slot_ms + self.slot_ms // 2)
                await self.vote_delivery.gossip_if_uncounted(signed_vote, self.current_slot(), self.clock_offset()[0])
        except Exception as exc:
            record_failure("vote delivery", exc)

    async def _upkeep(self, slot: int) -> None:
        now = self.clock.now_ms()
        self.mempool.expire(now)
        self.vote_pool.prune(slot // self.epoch_slots)
        await self._publish_txs(self.mempool.due_for_gossip(now, self.config.regossip_interval_ms,
                                                            self.config.regossip_limit))

    async def _publish_tx(self, data: bytes, tx_id: bytes) -> None:
        stx = self.mempool.get(tx_id)
        if stx is not None:
            await self._gossip(topics.tx_topic_kind(stx.tx.kind), data)

    async def _publish_txs(self, datas: list[bytes]) -> None:
        """Gossip pooled transactions: stake-topic ones together in `txbatch` messages (one alone
        goes on its own topic, as before), weights ones one by one."""
        stake: list[bytes] = []
        for data in datas:
            stx = self.mempool.get(sha256(data))
            if stx is None:
                continue
            if topics.tx_topic_kind(stx.tx.kind) == "stake":
                stake.append(data)
            else:
                await self._gossip("weights", data)
        batch: list[bytes] = []
        size = 0
        for data in stake:
            if len(batch) == topics.MAX_GOSSIP_BATCH_TXS or size + len(data) + 8 > topics.MAX_GOSSIP_BATCH_BYTES:
                await self._gossip_stake_txs(batch)
                batch, size = [], 0
            batch.append(data)
            size += len(data) + 8  # an item's framing is at most 5 bytes, the array's at most 9
        await self._gossip_stake_txs(batch)

    async def _gossip_stake_txs(self, batch: list[bytes]) -> None:
        if len(batch) == 1:
            await self._gossip("stake", batch[0])
        elif batch:
            await self._gossip("txbatch", encode(batch))

    # ---------------------------------------------------------------- slashing evidence

    def _queue_evidence(self, evidence: ChainObject) -> None:
        try:
            self._evidence_send.send_nowait(evidence)
        except trio.WouldBlock:
            log.warning("evidence queue full; dropping evidence")

    async def _evidence_task(self) -> None:
        async for evidence in self._evidence_recv:
            try:
                await self._submit_evidence(evidence)
            except Exception as exc:
                record_failure("evidence submission", exc)

    async def _submit_evidence(self, evidence: ChainObject) -> None:
        offender = _offender(evidence)
        log.warning("equivocation by %s observed", offender.hex()[:12])
        if self.signer is None or offender in self._reported:
            return
        state = self.chain.head_state()
        if consensus.is_slashed(state, offender):
            return
        me = self.signer.public_key
        tx = make_tx(self.chain_id, me, self.mempool.next_nonce(me, state), state.param("min_fee"), evidence)
        data = codec.encode(SignedTx(tx=tx, sig=self.signer.sign_tx_bytes(tx.signing_bytes())))
        admission = await self.submit_tx(data)
        if admission.added:
            self._reported[offender] = None
            if len(self._reported) > MAX_REPORTED_OFFENDERS:
                del self._reported[next(iter(self._reported))]
            self.evidence_submitted += 1
        else:
            log.warning("slashing evidence not admitted: %s", admission.reason)


def _offender(evidence: ChainObject) -> bytes:
    if isinstance(evidence, SlashDoubleProposal):
        return evidence.first.header.proposer
    assert isinstance(evidence, SlashVote)
    return evidence.first.vote.validator
