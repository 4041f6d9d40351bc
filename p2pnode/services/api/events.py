"""Live events for GET /events (server-sent events): heads, finality, epochs, transactions, proposals.

The chain calls its head listeners synchronously in the middle of an import, so the listener here
only notes that the head moved; a task (`ChainEventFeed.run`) then compares the new head with the
last one it reported and publishes what changed. Each client has a bounded queue: a client that
falls `CLIENT_QUEUE_EVENTS` behind is dropped (its stream ends with a `dropped` event) rather than
holding memory for it, and at most `MAX_CLIENTS` streams are open at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from p2pnode.chain import governance
from p2pnode.chain.address import encode_address
from p2pnode.chain.state import State
from p2pnode.chain.types import Block
from p2pnode.services.api.history import ChainHistory
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.mempool import Admission

log = logging.getLogger("p2pnode.api")

EVENT_TYPES = ("head", "finalized", "epoch", "tx_included", "tx_refused", "proposal")
CLIENT_QUEUE_EVENTS = 256
MAX_CLIENTS = 32
KEEPALIVE_S = 15.0
# A reorganisation deeper than this reports only the newest blocks' transactions.
MAX_BLOCKS_PER_HEAD_CHANGE = 64


class TooManyClients(Exception):
    """Every event stream slot is taken."""


@dataclass
class Event:
    seq: int
    kind: str
    data: dict[str, Any]

    def sse(self) -> bytes:
        return f"id: {self.seq}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


class _Client:
    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self.send, self.receive = trio.open_memory_channel[Event](CLIENT_QUEUE_EVENTS)
        self.dropped = False


class EventHub:
    """Fans events out to the open streams; never blocks the publisher, never queues without bound."""

    def __init__(self) -> None:
        self._clients: set[_Client] = set()
        self._seq = 0
        self.dropped_clients = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def wants(self, kind: str) -> bool:
        """Whether an open stream takes `kind` (events nobody takes need not be built)."""
        return any(kind in client.kinds for client in self._clients)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        event = Event(self._seq, kind, data)
        for client in list(self._clients):
            if kind not in client.kinds:
                continue
            try:
                client.send.send_nowait(event)
            except trio.WouldBlock:
                self._drop(client)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._clients.discard(client)

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        client.send.close()
        self._clients.discard(client)
        self.dropped_clients += 1

    def subscribe(self, kinds: Iterable[str] = EVENT_TYPES) -> _Client:
        if len(self._clients) >= MAX_CLIENTS:
            raise TooManyClients(f"{MAX_CLIENTS} event streams are open")
        client = _Client(frozenset(kinds))
        self._clients.add(client)
        return client

    def unsubscribe(self, client: _Client) -> None:
        self._clients.discard(client)
        client.send.close()

    async def stream(self, client: _Client, keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
        """The client's events as SSE chunks; a comment every `keepalive_s` shows a dead client early."""
        try:
            yield b": p2pnode events\n\n"
            while True:
                # Never yield inside the cancel scope (an async generator may not).
                event: Event | None = None
                ended = False
                with trio.move_on_after(keepalive_s):
                    try:
                        event = await client.receive.receive()
                    except trio.EndOfChannel:
                        ended = True
                if ended:
                    if client.dropped:
                        yield Event(0, "dropped", {"reason": "client too slow"}).sse()
                    return
                yield b": keepalive\n\n" if event is None else event.sse()
        finally:
            self.unsubscribe(client)


class ChainEventFeed:
    """Turns head changes (and mempool refusals) into events on an `EventHub`."""

    def __init__(self, chain: BlockTree, hub: EventHub, history: ChainHistory | None = None,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.chain, self.hub = chain, hub
        self.history = history if history is not None else ChainHistory()
        self._now_ms = now_ms
        self._moved = trio.Event()
        head = chain.head
        self._head_hash, self._head_height = head.hash, head.height
        finalized = chain.finalized
        self._finalized_epoch = None if finalized is None else finalized.epoch
        state = chain.head_state()
        self._epochs = self._epoch_indexes(state)
        self._proposals = self._proposal_states(state)
        self.history.record_head(head.height, 0 if finalized is None else finalized.height, now_ms())
        chain.head_listeners.append(self._on_head)

    def _on_head(self, head: bytes) -> None:
        self._moved.set()

    def on_admission(self, source: str, admission: Admission) -> None:
        """Mempool listener: refused transactions are events (accepted ones show up when included)."""
        if not admission.added and self.hub.wants("tx_refused"):
            self.hub.publish("tx_refused", {"tx": admission.tx_id.hex(), "reason": admission.reason, "source": source})

    async def run(self) -> None:
        while True:
            await self._moved.wait()
            self._moved = trio.Event()
            try:
                self.report()
            except Exception:  # a view that cannot be built must not end the feed
                log.exception("event feed failed on a head change")

    def report(self) -> None:
        """Publish what changed since the last report."""
        head = self.chain.head
        if head.hash == self._head_hash:
            return
        state = self.chain.head_state()
        # Reading the new blocks whole and naming each transaction costs a busy node milliseconds
        # per block: done only for a stream that takes them.
        blocks, reorg = self._new_blocks(head.hash, self.hub.wants("tx_included"))
        for block in blocks:
            for tx in block.txs:
                self.hub.publish("tx_included", {"tx": tx.id.hex(), "kind": tx.tx.kind, "height": block.header.height,
                                                 "sender": encode_address(tx.tx.sender), "nonce": tx.tx.nonce})
        self.hub.publish("head", {"height": head.height, "slot": head.slot, "hash": head.hash.hex(),
                                  "reorg": reorg})
        self._head_hash, self._head_height = head.hash, head.height
        finalized = self.chain.finalized
        if finalized is not None and finalized.epoch != self._finalized_epoch:
            self._finalized_epoch = finalized.epoch
            self.hub.publish("finalized", {"epoch": finalized.epoch, "height": finalized.height,
                                           "hash": finalized.hash.hex()})
        self.history.record_head(head.height, 0 if finalized is None else finalized.height, self._now_ms())
        epochs = self._epoch_indexes(state)
        for netuid, index in sorted(epochs.items()):
            if self._epochs.get(netuid) != index:
                self.history.record_epoch(state, netuid, index)
                self.hub.publish("epoch", {"netuid": netuid, "epoch_index": index, "height": head.height})
        self._epochs = epochs
        proposals = self._proposal_states(state)
        for pid, status in sorted(proposals.items()):
            if self._proposals.get(pid) != status:
                self.hub.publish("proposal", {"id": pid, "status": status, "height": head.height})
        self._proposals = proposals

    def _new_blocks(self, head_hash: bytes, read_blocks: bool = True) -> tuple[list[Block], bool]:
        """Blocks on the new head's branch not on the last reported head's, oldest first (bounded;
        none read unless `read_blocks`), and whether the last reported head was left behind (a
        reorganisation)."""
        store = self.chain.store
        old_branch: set[bytes] = set()
        cursor: bytes | None = self._head_hash
        while cursor is not None and len(old_branch) < MAX_BLOCKS_PER_HEAD_CHANGE:
            old_branch.add(cursor)
            header = store.header(cursor)
            cursor = None if header is None or header.height == 0 else header.parent
        new_branch: list[bytes] = []
        cursor = head_hash
        while cursor not in old_branch and len(new_branch) < MAX_BLOCKS_PER_HEAD_CHANGE:
            header = store.header(cursor)
            if header is None or header.height == 0:
                break
            new_branch.append(cursor)
            cursor = header.parent
        blocks = [block for h in reversed(new_branch) if read_blocks and (block := store.block(h)) is not None]
        # Joining the old branch below its head means its newest blocks were replaced.
        return blocks, cursor in old_branch and cursor != self._head_hash

    @staticmethod
    def _epoch_indexes(state: State) -> dict[int, int]:
        return {netuid: sn.epoch_index for netuid in state.netuids() if (sn := state.subnet(netuid)) is not None}

    @staticmethod
    def _proposal_states(state: State) -> dict[int, str]:
        out = {}
        for pid in governance.proposal_ids(state)[-64:]:
            prop = governance.proposal(state, pid)
            if prop is not None:
                out[pid] = prop.status
        return out
