"""The transaction pool: admission, ordering for blocks, eviction, expiry and re-gossip.

Pure bookkeeping: the caller passes the head state and the time in, nothing here reads a clock or
the network, so every rule is unit-tested directly.

Rules (docs/chain.md, "Mempool"):
- Admission: strict decode, signatures (`protocols.validation`), then `transition.validate_tx`
  against the head state. A nonce above the account's next one is admitted as *future* (checked
  as if it were next), at most `max_nonce_gap` ahead and at most `max_future_per_sender` of them.
- Duplicates (same bytes) are ignored; the same sender and nonce replaces the pooled transaction
  only with a fee at least `replace_fee_permille`/1000 of the old one.
- Full pool: the lowest-fee transaction is evicted for a higher-fee one; otherwise the new one is
  refused. Transactions expire after `ttl_ms`.
- Block candidates: across senders by fee (highest first), within a sender by nonce, only the run
  of nonces that continues from the account's next nonce.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import sha256
from p2pnode.chain.errors import TxInvalid
from p2pnode.chain.state import State
from p2pnode.chain.transition import validate_tx
from p2pnode.chain.types import SignedTx
from protocols import codec
from protocols.validation import InvalidSignature, check_tx_signatures

# Reasons that make a transaction invalid for everyone (the gossip sender is penalised);
# every other refusal may depend on this node's view (head, pool) and is only ignored.
STATELESS_REJECTIONS = frozenset({"malformed", "bad_signature", "bad_evidence_signature", "wrong_chain", "too_large"})


@dataclass(frozen=True)
class MempoolConfig:
    max_txs: int = 4096
    max_per_sender: int = 64
    max_future_per_sender: int = 16
    max_nonce_gap: int = 64
    ttl_ms: int = 10 * 60 * 1000
    replace_fee_permille: int = 1100
    max_tx_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Admission:
    """The outcome of offering a transaction: `added` or not, and a stable snake_case `reason`."""

    added: bool
    reason: str
    tx_id: bytes

    @property
    def stateless_rejection(self) -> bool:
        return self.reason in STATELESS_REJECTIONS


@dataclass
class _Entry:
    stx: SignedTx
    data: bytes
    tx_id: bytes
    added_ms: int
    gossiped_ms: int


class Mempool:
    def __init__(self, config: MempoolConfig | None = None) -> None:
        self.config = config or MempoolConfig()
        self._by_id: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> tx id

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: bytes) -> SignedTx | None:
        entry = self._by_id.get(tx_id)
        return None if entry is None else entry.stx

    # ---------------------------------------------------------------- admission

    def add(self, data: bytes, state: State, ctx: BlockContext, now_ms: int) -> Admission:
        """Offer an encoded SignedTx (from gossip or a local client)."""
        tx_id = sha256(data) if type(data) is bytes else b""
        if tx_id in self._by_id:
            return Admission(False, "duplicate", tx_id)
        if type(data) is not bytes or len(data) > self.config.max_tx_bytes:
            return Admission(False, "too_large", tx_id)
        try:
            stx = codec.decode(SignedTx, data, max_bytes=self.config.max_tx_bytes)
        except codec.MalformedMessage:
            return Admission(False, "malformed", tx_id)
        return self.add_signed(stx, data, tx_id, state, ctx, now_ms)

    def add_signed(self, stx: SignedTx, data: bytes, tx_id: bytes, state: State, ctx: BlockContext, now_ms: int) -> Admission:
        tx = stx.tx
        if tx.chain != state.chain_id:
            return Admission(False, "wrong_chain", tx_id)
        try:
            check_tx_signatures(stx)
        except InvalidSignature as exc:
            return Admission(False, exc.reason, tx_id)
        expected = state.nonce(tx.sender)
        if tx.nonce < expected:
            return Admission(False, "stale_nonce", tx_id)
        if tx.nonce > expected + self.config.max_nonce_gap:
            return Admission(False, "nonce_too_far", tx_id)
        probe = state
        if tx.nonce > expected:
            # Check it as if every earlier nonce had applied (balance effects of those aside).
            probe = state.child()
            probe.set_account(tx.sender, state.balance(tx.sender), tx.nonce)
        try:
            validate_tx(probe, tx, ctx)
        except TxInvalid as exc:
            return Admission(False, exc.reason, tx_id)
        nonces = self._by_sender.get(tx.sender, {})
        replaced = nonces.get(tx.nonce)
        if replaced is not None:
            old_fee = self._by_id[replaced].stx.tx.fee
            if tx.fee * 1000 < old_fee * self.config.replace_fee_permille:
                return Admission(False, "underpriced_replacement", tx_id)
        else:
            if len(nonces) >= self.config.max_per_sender:
                return Admission(False, "sender_queue_full", tx_id)
            if tx.nonce > expected and self._future_count(tx.sender, expected, extra=tx.nonce) > self.config.max_future_per_sender:
                return Admission(False, "too_many_future", tx_id)
            if len(self._by_id) >= self.config.max_txs:
                lowest = min(self._by_id.values(), key=lambda e: (e.stx.tx.fee, -e.stx.tx.nonce, e.tx_id))
                if lowest.stx.tx.fee >= tx.fee:
                    return Admission(False, "pool_full", tx_id)
                self._remove(lowest.tx_id)
        if replaced is not None:
            self._remove(replaced)
        self._by_id[tx_id] = _Entry(stx, data, tx_id, now_ms, gossiped_ms=now_ms)
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx_id
        return Admission(True, "replaced" if replaced is not None else "added", tx_id)

    def _future_count(self, sender: bytes, expected: int, extra: int | None = None) -> int:
        """Transactions of `sender` not in the run of nonces that continues from `expected`."""
        nonces = set(self._by_sender.get(sender, {}))
        if extra is not None:
            nonces.add(extra)
        run = expected
        while run in nonces:
            run += 1
        return sum(1 for n in nonces if n > run)

    def _remove(self, tx_id: bytes) -> None:
        entry = self._by_id.pop(tx_id, None)
        if entry is None:
            return
        sender, nonce = entry.stx.tx.sender, entry.stx.tx.nonce
        nonces = self._by_sender.get(sender)
        if nonces is not None and nonces.get(nonce) == tx_id:
            del nonces[nonce]
            if not nonces:
                del self._by_sender[sender]

    # ---------------------------------------------------------------- upkeep

    def remove_applied(self, state: State) -> int:
        """Drop transactions whose nonce the head state has used (included, or replaced on chain)."""
        dropped = 0
        for sender in list(self._by_sender):
            next_nonce = state.nonce(sender)
            for nonce in [n for n in self._by_sender[sender] if n < next_nonce]:
                self._remove(self._by_sender[sender][nonce])
                dropped += 1
        return dropped

    def expire(self, now_ms: int) -> int:
        old = [e.tx_id for e in self._by_id.values() if now_ms - e.added_ms > self.config.ttl_ms]
        for tx_id in old:
            self._remove(tx_id)
        return len(old)

    def next_nonce(self, sender: bytes, state: State) -> int:
        """The nonce a new transaction of `sender` should use, after the pooled ones."""
        run = state.nonce(sender)
        nonces = self._by_sender.get(sender, {})
        while run in nonces:
            run += 1
        return run

    def due_for_gossip(self, now_ms: int, interval_ms: int, limit: int) -> list[bytes]:
        """Encoded transactions not gossiped for `interval_ms` (oldest first); marks them gossiped.

        Gossip is best effort: re-publishing pending transactions lets peers that joined late or
        missed a message still learn them."""
        due = [e for e in self._by_id.values() if now_ms - e.gossiped_ms >= interval_ms]
        due.sort(key=lambda e: (e.gossiped_ms, e.tx_id))
        out = []
        for entry in due[:limit]:
            entry.gossiped_ms = now_ms
            out.append(entry.data)
        return out

    # ---------------------------------------------------------------- block candidates

    def candidates(self, state: State, limit: int) -> list[SignedTx]:
        """Up to `limit` transactions in block order: highest fee first across senders, nonce order
        within a sender, only nonces that continue from the account's next one."""
        queues: dict[bytes, list[SignedTx]] = {}
        for sender, nonces in self._by_sender.items():
            run = state.nonce(sender)
            queue = []
            while run in nonces:
                queue.append(self._by_id[nonces[run]].stx)
                run += 1
            if queue:
                queues[sender] = queue
        heap = [(-q[0].tx.fee, sender, 0) for sender, q in queues.items()]
        heapq.heapify(heap)
        out: list[SignedTx] = []
        while heap and len(out) < limit:
            _, sender, index = heapq.heappop(heap)
            queue = queues[sender]
            out.append(queue[index])
            if index + 1 < len(queue):
                heapq.heappush(heap, (-queue[index + 1].tx.fee, sender, index + 1))
        return out
