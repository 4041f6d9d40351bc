"""The transaction pool: admission, ordering for blocks, eviction, expiry and re-gossip.

Pure bookkeeping: the caller passes the head state and the time in, nothing here reads a clock or
the network, so every rule is unit-tested directly.

Rules (docs/chain.md, "Mempool"; the attacks they answer in docs/security.md, "Mempool"):
- Admission runs the cheap stateful checks first (chain, nonce window, minimum fee, the sender's
  balance against everything it already has pending, per-sender and future-nonce quotas), then the
  signatures (`protocols.validation`), then `transition.apply_tx` on the head state as the sender
  would see it after its pending transactions. So an unfunded key costs no signature check, and a
  sender's pending transactions are always jointly affordable: each entry reserves what it spends
  (fee plus what the transaction takes from the balance), and a new one must fit in the rest.
- A nonce past the sender's contiguous run is *future*: at most `max_nonce_gap` ahead, at most
  `max_future_per_sender` per sender and `max_future_txs` in the whole pool, so free-to-make
  never-executable transactions cannot fill it.
- Duplicates (same bytes) are ignored; the same sender and nonce replaces the pooled transaction
  only with a fee at least `replace_fee_permille`/1000 of the old one.
- Full pool: the newcomer evicts the cheapest entry it outranks (future before executable, then by
  fee, then transactions restored from blocks a reorganisation dropped above the others, a
  sender's last nonce first); otherwise it is refused. Transactions expire after `ttl_ms`;
  a transaction that fails while a block is assembled is evicted (`evict`).
- Block order (`ordered`): executable transactions only, highest fee first; at equal fee senders
  take turns (each sender's first pending nonce, then each one's second, ...), oldest first.
- Parked gossip: a gossiped transaction refused only for want of room (`ROOM_REFUSALS`) is held
  aside, bounded (`max_parked`, one per sender and nonce, `max_per_sender` per sender, `parked_ttl_ms`),
  and offered again by `readmit_parked` once a block has freed room. Without it a peer whose pool
  was full when a transaction was gossiped lacked it until the next re-gossip (30 s), the pools
  diverged and proposers built near-empty blocks. A transaction's signatures are checked when it
  is parked (a forged copy would otherwise hold a place, or displace the signed one of its
  nonce), so the retry does not check them again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import sha256
from p2pnode.chain.errors import TxInvalid
from p2pnode.chain.state import State
from p2pnode.chain.transition import apply_tx, minimum_fee
from p2pnode.chain.types import SignedTx
from protocols import codec
from protocols.validation import InvalidSignature, check_tx_signatures

# Reasons that make a transaction invalid for everyone (the gossip sender is penalised);
# every other refusal may depend on this node's view (head, pool) and is only ignored.
STATELESS_REJECTIONS = frozenset({"malformed", "bad_signature", "bad_evidence_signature", "wrong_chain", "too_large"})
# Refusals for want of room only: the same transaction may be admitted once a block frees room.
ROOM_REFUSALS = frozenset({"pool_full", "future_pool_full", "too_many_future", "sender_queue_full"})


@dataclass(frozen=True)
class MempoolConfig:
    max_txs: int = 8192
    max_per_sender: int = 64
    max_future_per_sender: int = 16
    # Future-nonce transactions in the whole pool (a bounded share of `max_txs`).
    max_future_txs: int = 512
    max_nonce_gap: int = 64
    ttl_ms: int = 10 * 60 * 1000
    replace_fee_permille: int = 1100
    max_tx_bytes: int = 64 * 1024
    # Gossiped transactions refused for want of room, held for a retry after the next block.
    max_parked: int = 4096
    max_parked_bytes: int = 2 << 20
    parked_ttl_ms: int = 60 * 1000


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
    spend: int  # balance the transaction takes from its sender (fee included), reserved while pending
    seq: int  # arrival order (ties in block order go to the older)
    future: bool = False
    restored: bool = False  # came back from a block a reorganisation dropped


@dataclass
class _Parked:
    stx: SignedTx
    data: bytes
    tx_id: bytes
    source: str  # who sent it (a peer id): told about it if the retry finds it invalid for everyone
    parked_ms: int
    seq: int


class Mempool:
    def __init__(self, config: MempoolConfig | None = None) -> None:
        self.config = config or MempoolConfig()
        self._by_id: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> tx id
        self._future_count = 0
        self._seq = 0
        self._chain_id: str | None = None
        # Eviction order, lowest first: (executable, fee, restored, -nonce, tx id) of every entry, pushed again
        # whenever an entry's future flag changes; stale keys are dropped when they reach the top.
        # A full pool finds its eviction candidate in O(log n), not by a scan of the whole pool.
        self._ranks: list[tuple[bool, int, bool, int, bytes]] = []
        # Parked transactions by (sender, nonce), in arrival order; and how many each sender has.
        self._parked: dict[tuple[bytes, int], _Parked] = {}
        self._parked_per_sender: dict[bytes, int] = {}
        self._parked_bytes = 0
        # Eviction order of the parked set, lowest first: (fee, -seq, key); stale keys (unparked or
        # replaced: another seq) are dropped when they reach the top.
        self._parked_ranks: list[tuple[int, int, tuple[bytes, int]]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: bytes) -> SignedTx | None:
        entry = self._by_id.get(tx_id)
        return None if entry is None else entry.stx

    @property
    def future_count(self) -> int:
        return self._future_count

    def reserved(self, sender: bytes, *, except_nonce: int | None = None) -> int:
        """What `sender`'s pending transactions take from its balance, together."""
        nonces = self._by_sender.get(sender, {})
        return sum(self._by_id[tx_id].spend for nonce, tx_id in nonces.items() if nonce != except_nonce)

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

    def add_batch(self, datas: Sequence[bytes], state: State, ctx: BlockContext, now_ms: int) -> list[Admission]:
        """Offer encoded SignedTxs in one pass against one head state and block context; one
        `Admission` per item, in order. A sender's consecutive nonces in the batch are admitted in
        turn (each sees the ones before it pending), exactly as if offered one by one."""
        return [self.add(data, state, ctx, now_ms) for data in datas]

    def add_signed(self, stx: SignedTx, data: bytes, tx_id: bytes, state: State, ctx: BlockContext, now_ms: int,
                   *, signature_verified: bool = False, restored: bool = False) -> Admission:
        """Offer a decoded SignedTx (`data` its encoding, `tx_id` the hash of it). `signature_verified`:
        this node verified its signatures already (a transaction of a block it imported);
        `restored`: a transaction of a block that a reorganisation dropped, which ranks above
        pooled ones of equal fee (in a full pool it pushes out the newer arrivals)."""
        tx = stx.tx
        sender = tx.sender
        if tx_id in self._by_id:
            return Admission(False, "duplicate", tx_id)
        if self._chain_id is None:
            self._chain_id = state.chain_id  # a chain's id never changes: read it once
        if tx.chain != self._chain_id:
            return Admission(False, "wrong_chain", tx_id)
        # Cheap stateful checks first: a flood of well-signed but hopeless transactions costs a few
        # state reads each, never a signature check.
        expected = state.nonce(sender)
        if tx.nonce < expected:
            return Admission(False, "stale_nonce", tx_id)
        if tx.nonce > expected + self.config.max_nonce_gap:
            return Admission(False, "nonce_too_far", tx_id)
        if tx.fee < minimum_fee(state, tx.kind):  # a neuron's duties may be fee-free
            return Admission(False, "fee_too_low", tx_id)
        nonces = self._by_sender.get(sender, {})
        replaced = nonces.get(tx.nonce)
        available = state.balance(sender) - self.reserved(sender, except_nonce=tx.nonce)
        if available < tx.fee:
            return Admission(False, "insufficient_balance", tx_id)
        future = tx.nonce > self._run_end(sender, expected)
        if replaced is not None:
            old_fee = self._by_id[replaced].stx.tx.fee
            if tx.fee * 1000 < old_fee * self.config.replace_fee_permille:
                return Admission(False, "underpriced_replacement", tx_id)
        else:
            if len(nonces) >= self.config.max_per_sender:
                return Admission(False, "sender_queue_full", tx_id)
            if future:
                if sum(1 for t in nonces.values() if self._by_id[t].future) >= self.config.max_future_per_sender:
                    return Admission(False, "too_many_future", tx_id)
                if self._future_count >= self.config.max_future_txs:
                    return Admission(False, "future_pool_full", tx_id)
        if (replaced is None and len(self._by_id) >= self.config.max_txs
                and self._eviction_candidate(future, tx.fee, restored) is None):
            # Refused before its signature is checked: a full pool costs a flood of valid
            # transactions that outrank nothing no signature check and no trial apply.
            return Admission(False, "pool_full", tx_id)
        try:
            if not signature_verified:
                check_tx_signatures(stx)
        except InvalidSignature as exc:
            return Admission(False, exc.reason, tx_id)
        # The transaction applied on the head state as its sender will find it: the nonces before
        # it used, and the balance its other pending transactions reserve spent.
        probe = state.child()
        probe.set_account(sender, available, tx.nonce)
        after = probe.child()
        try:
            apply_tx(after, tx, ctx)
        except TxInvalid as exc:
            return Admission(False, exc.reason, tx_id)
        spend = max(tx.fee, available - after.balance(sender))
        if replaced is None and len(self._by_id) >= self.config.max_txs:
            victim = self._eviction_candidate(future, tx.fee, restored)
            if victim is None:
                return Admission(False, "pool_full", tx_id)
            self._remove(victim.tx_id)
        if replaced is not None:
            self._remove(replaced)
        self._seq += 1
        entry = _Entry(stx, data, tx_id, now_ms, gossiped_ms=now_ms, spend=spend, seq=self._seq, restored=restored)
        self._by_id[tx_id] = entry
        self._by_sender.setdefault(sender, {})[tx.nonce] = tx_id
        self._push_rank(entry)
        self._mark_future(sender, expected)
        return Admission(True, "replaced" if replaced is not None else "added", tx_id)

    def _run_end(self, sender: bytes, expected: int) -> int:
        """The first nonce after `sender`'s contiguous run of pending nonces from `expected`."""
        nonces = self._by_sender.get(sender, {})
        run = expected
        while run in nonces:
            run += 1
        return run

    def _mark_future(self, sender: bytes, expected: int) -> None:
        run_end = self._run_end(sender, expected)
        for nonce, tx_id in self._by_sender.get(sender, {}).items():
            entry = self._by_id[tx_id]
            future = nonce > run_end
            if future != entry.future:
                entry.future = future
                self._future_count += 1 if future else -1
                self._push_rank(entry)

    @staticmethod
    def _rank(entry: _Entry) -> tuple[bool, int, bool, int, bytes]:
        return (not entry.future, entry.stx.tx.fee, entry.restored, -entry.stx.tx.nonce, entry.tx_id)

    def _push_rank(self, entry: _Entry) -> None:
        heapq.heappush(self._ranks, self._rank(entry))
        if len(self._ranks) > 2 * len(self._by_id) + 1024:
            # Mostly stale keys: rebuild from the live entries (bounded memory, amortised O(1)).
            self._ranks = [self._rank(e) for e in self._by_id.values()]
            heapq.heapify(self._ranks)

    def _lowest(self) -> _Entry | None:
        """The entry first in eviction order (None when the pool is empty)."""
        ranks = self._ranks
        while ranks:
            key = ranks[0]
            entry = self._by_id.get(key[-1])
            if entry is not None and self._rank(entry) == key:
                return entry
            heapq.heappop(ranks)
        return None

    def _eviction_candidate(self, newcomer_future: bool, newcomer_fee: int, newcomer_restored: bool = False) -> _Entry | None:
        """The entry a newcomer may push out of a full pool: the lowest in (executable, fee,
        restored) order, a sender's last nonce first (so no sender is left with a gap), if the
        newcomer outranks it."""
        victim = self._lowest()
        if victim is None or (not victim.future, victim.stx.tx.fee, victim.restored) >= (
                not newcomer_future, newcomer_fee, newcomer_restored):
            return None
        return victim

    def _remove(self, tx_id: bytes) -> None:
        entry = self._by_id.pop(tx_id, None)
        if entry is None:
            return
        if entry.future:
            self._future_count -= 1
        sender, nonce = entry.stx.tx.sender, entry.stx.tx.nonce
        nonces = self._by_sender.get(sender)
        if nonces is not None and nonces.get(nonce) == tx_id:
            del nonces[nonce]
            if not nonces:
                del self._by_sender[sender]

    def evict(self, tx_ids: Iterable[bytes], state: State) -> int:
        """Drop transactions (those that failed while a block was assembled); the same senders'
        later nonces become future."""
        senders = set()
        dropped = 0
        for tx_id in tx_ids:
            entry = self._by_id.get(tx_id)
            if entry is not None:
                senders.add(entry.stx.tx.sender)
                self._remove(tx_id)
                dropped += 1
        for sender in senders:
            self._mark_future(sender, state.nonce(sender))
        return dropped

    # ---------------------------------------------------------------- parked gossip

    @property
    def parked_count(self) -> int:
        return len(self._parked)

    def park(self, stx: SignedTx, data: bytes, tx_id: bytes, source: str, now_ms: int) -> Admission:
        """Hold a gossiped transaction that `add_signed` refused with one of `ROOM_REFUSALS`, for
        `readmit_parked` (`added` when it is held). One per sender and nonce (a replacement must
        outbid by `replace_fee_permille`, as in the pool), `max_per_sender` per sender, `max_parked`
        and `max_parked_bytes` in all: when full, a newcomer takes the place of the lowest fee (the
        newest of those) if it pays more, else it is refused; so transactions that can never be
        admitted (future nonces past their sender's quota) cannot hold the set against better
        ones. Its signatures are checked before it takes a place: a place is held up to
        `parked_ttl_ms`, and a forged copy (no key needed) must neither hold one nor displace the
        signed transaction of the same nonce; the bounds are checked first, so a full set costs a
        flood that outbids nothing no signature check."""
        tx = stx.tx
        key = (tx.sender, tx.nonce)
        held = self._parked.get(key)
        victim: tuple[bytes, int] | None = None
        if held is not None:
            if held.tx_id == tx_id:
                return Admission(False, "duplicate", tx_id)
            if tx.fee * 1000 < held.stx.tx.fee * self.config.replace_fee_permille:
                return Admission(False, "underpriced_replacement", tx_id)
            if self._parked_bytes - len(held.data) + len(data) > self.config.max_parked_bytes:
                return Admission(False, "parked_full", tx_id)
        else:
            if self._parked_per_sender.get(tx.sender, 0) >= self.config.max_per_sender:
                return Admission(False, "sender_parked_full", tx_id)
            if (len(self._parked) >= self.config.max_parked
                    or self._parked_bytes + len(data) > self.config.max_parked_bytes):
                victim = self._lowest_parked()
                if (victim is None or self._parked[victim].stx.tx.fee >= tx.fee
                        or self._parked_bytes - len(self._parked[victim].data) + len(data)
                        > self.config.max_parked_bytes):
                    return Admission(False, "parked_full", tx_id)
        try:
            check_tx_signatures(stx)
        except InvalidSignature as exc:
            return Admission(False, exc.reason, tx_id)
        if held is not None:
            self._unpark(key)
        if victim is not None:
            self._unpark(victim)
        self._seq += 1
        self._parked[key] = _Parked(stx, data, tx_id, source, now_ms, self._seq)
        self._parked_per_sender[tx.sender] = self._parked_per_sender.get(tx.sender, 0) + 1
        self._parked_bytes += len(data)
        heapq.heappush(self._parked_ranks, (tx.fee, -self._seq, key))
        if len(self._parked_ranks) > 2 * len(self._parked) + 1024:
            # Mostly stale keys: rebuild from the live entries (bounded memory, amortised O(1)).
            self._parked_ranks = [(p.stx.tx.fee, -p.seq, k) for k, p in self._parked.items()]
            heapq.heapify(self._parked_ranks)
        return Admission(True, "parked" if held is None else "replaced", tx_id)

    def _lowest_parked(self) -> tuple[bytes, int] | None:
        """The key of the parked transaction first in eviction order (None when none is parked)."""
        ranks = self._parked_ranks
        while ranks:
            _, neg_seq, key = ranks[0]
            held = self._parked.get(key)
            if held is not None and held.seq == -neg_seq:
                return key
            heapq.heappop(ranks)
        return None

    def _unpark(self, key: tuple[bytes, int]) -> None:
        held = self._parked.pop(key, None)
        if held is not None:
            self._parked_bytes -= len(held.data)
            sender = key[0]
            left = self._parked_per_sender[sender] - 1
            if left:
                self._parked_per_sender[sender] = left
            else:
                del self._parked_per_sender[sender]

    def readmit_parked(self, state: State, ctx: BlockContext, now_ms: int) -> list[tuple[str, Admission]]:
        """Offer the parked transactions again (after a block freed room): senders take turns by
        depth (every sender's next nonce, then the ones after), older first. Those refused for want
        of room again stay parked; every other outcome leaves the parked set and is returned with
        its source. Parked transactions already used on chain, or older than `parked_ttl_ms`, are
        dropped. Costs one cheap admission check per parked transaction and a signature check per
        one admitted (at most the pool's free room, plus what it evicts)."""
        if not self._parked:
            return []
        order = []
        for key, held in list(self._parked.items()):
            sender, nonce = key
            expected = state.nonce(sender)
            if nonce < expected or now_ms - held.parked_ms > self.config.parked_ttl_ms or held.tx_id in self._by_id:
                self._unpark(key)
                continue
            order.append((nonce - expected, held.seq, key))
        order.sort()
        out = []
        for _, _, key in order:
            held = self._parked[key]
            # Its signatures were checked when it was parked.
            admission = self.add_signed(held.stx, held.data, held.tx_id, state, ctx, now_ms, signature_verified=True)
            if admission.reason not in ROOM_REFUSALS:
                self._unpark(key)
                out.append((held.source, admission))
        return out

    # ---------------------------------------------------------------- upkeep

    def remove_applied(self, state: State, senders: Iterable[bytes] | None = None) -> int:
        """Drop transactions whose nonce the head state has used (included, or replaced on chain).

        `senders`: only theirs are looked at. After the head moved forward by blocks, the senders
        of those blocks' transactions are the only accounts whose nonce moved, so one block's
        upkeep costs its own size, not the pool's number of senders."""
        dropped = 0
        for sender in list(self._by_sender) if senders is None else set(senders):
            nonces = self._by_sender.get(sender)
            if nonces is None:
                continue
            next_nonce = state.nonce(sender)
            for nonce in [n for n in nonces if n < next_nonce]:
                self._remove(nonces[nonce])
                dropped += 1
            if sender in self._by_sender:
                self._mark_future(sender, next_nonce)
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
        """The first `limit` transactions of `ordered`."""
        out = []
        for stx in self.ordered(state):
            if len(out) >= limit:
                break
            out.append(stx)
        return out

    def ordered(self, state: State) -> Iterator[SignedTx]:
        """Every executable transaction in block order, lazily: highest fee first; at equal fee,
        senders take turns by depth in their queue (first pending nonces, then second ones, ...),
        older first; within a sender, nonce order from the account's next nonce."""
        queues: dict[bytes, list[_Entry]] = {}
        for sender, nonces in self._by_sender.items():
            run = state.nonce(sender)
            queue = []
            while run in nonces:
                queue.append(self._by_id[nonces[run]])
                run += 1
            if queue:
                queues[sender] = queue
        heap = [(-q[0].stx.tx.fee, 0, q[0].seq, sender) for sender, q in queues.items()]
        heapq.heapify(heap)
        while heap:
            _, depth, _, sender = heapq.heappop(heap)
            queue = queues[sender]
            yield queue[depth].stx
            if depth + 1 < len(queue):
                nxt = queue[depth + 1]
                heapq.heappush(heap, (-nxt.stx.tx.fee, depth + 1, nxt.seq, sender))
