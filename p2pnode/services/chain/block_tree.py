"""The block tree on a store: verify and import blocks, follow fork choice, reorganise, build blocks.

The store holds the canonical chain and the state at its head. Verified blocks off the canonical
chain are kept too (`Store.put_block`), with their state changes in memory, so a fork can be
verified block by block and adopted when fork choice prefers it. A reorganisation rolls the store
back to the fork point (undo records) and forward along the fork inside one store transaction, so
a crash leaves either the old chain or the new one.

Finality bounds all of it: a block that does not descend from the finalized checkpoint is refused,
undo records below it are pruned, and fork blocks at or below it are forgotten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from p2pnode.chain import accumulator, consensus, finality, statekeys
from p2pnode.chain.encoding import decode, encode
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.forkchoice import BlockInfo, is_better
from p2pnode.chain.receipts import EpochRecord
from p2pnode.chain.records import FinalityRecord, ValidatorSet
from p2pnode.chain.state import VSET_KEY, VSET_NEXT_KEY, OverlayReader, State, shared_record
from p2pnode.chain.transition import apply_block, apply_block_body, apply_tx, context_for
from p2pnode.chain.types import Block, Checkpoint, Header, SignedTx, SignedVote, body_root, randao_message
from p2pnode.services.chain.signature_helper import SignatureHelper
from p2pnode.store.sqlite_store import Store
from protocols import codec
from protocols.crypto import Keypair
from protocols.validation import InvalidSignature, check_block_signatures, check_body_signatures

# Verified blocks off the canonical chain kept in memory (with their state changes). Beyond this,
# new fork blocks are refused until finality prunes old ones: bounded memory under a fork flood.
MAX_FORK_BLOCKS = 4096
# Room kept in a block for its header, signature and CBOR framing when filling it with transactions.
BLOCK_OVERHEAD_BYTES = 1024
# The signature helper (a process) is started by the first range batch this long: it pays off over
# many blocks, not for a node a few dozen blocks behind (a peer joining a young testnet would start
# one for a fraction of a second of work). Once it runs, every batch of two or more blocks uses it.
MIN_BLOCKS_TO_START_HELPER = 64
# Finalized checkpoints before the latest whose state is still served (their undo records kept): a
# join that began on one finishes while finality moves on. With 8-slot epochs of 1 s, 4 give a join
# 32 to 40 s; a 100,000-item state took 38 s on a heavily loaded machine, and 1 (8 to 16 s) failed.
EARLIER_SERVED_CHECKPOINTS = 4


@dataclass(frozen=True)
class ImportResult:
    hash: bytes
    height: int
    state_root: bytes
    known: bool = False  # the block was already verified; nothing changed
    head: bool = False  # the block is (now) the head
    reorged: int = 0  # canonical blocks rolled back to adopt it


@dataclass
class _ForkBlock:
    block: Block
    info: BlockInfo
    changes: dict[bytes, bytes | None]  # relative to the parent's state
    acc: int  # state accumulator after the block


@dataclass(frozen=True)
class _HeadView:
    hash: bytes
    header: Header
    justified: Checkpoint | None
    finalized: Checkpoint | None
    params: dict[str, int]


def _info(block: Block, state_justified_epoch: int) -> BlockInfo:
    h = block.header
    return BlockInfo(h.hash, h.parent, h.height, h.slot, state_justified_epoch)


def _justified_epoch_of_raw(raw: bytes | None) -> int:
    if raw is None:
        return -1
    justified = shared_record(raw, FinalityRecord.from_state).justified
    return justified[-1].epoch if justified else -1


def _accounts_touched(block: Block) -> list[bytes]:
    """State keys of the accounts a block's transactions will read for certain (senders, and
    transfer recipients), to read from the store in one go."""
    out = []
    for stx in block.txs:
        tx = stx.tx
        out.append(statekeys.account(tx.sender))
        if tx.kind == "transfer":
            out.append(statekeys.account(tx.body.to))
    return out


class BlockTree:
    """The chain as stored: head state, verified forks, fork choice, production on the head.

    Not thread-safe; one owner (the node's tasks, all on one trio thread) uses it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # Protocol versions this node runs (None: the build's own); a test can narrow them.
        self.supported_versions: frozenset[int] | None = None
        # Called with the new head's hash after every head change (metrics, benchmarks).
        self.head_listeners: list[Callable[[bytes], None]] = []
        # Whether a transaction's / vote's signature was verified already (the node's mempool and
        # vote pool hold only verified ones): a block's copies are then not verified again.
        self.tx_signature_verified: Callable[[SignedTx], bool] | None = None
        self.vote_signature_verified: Callable[[SignedVote], bool] | None = None
        # Called with (block hash, height, records) for each verified block that ran subnet epochs,
        # canonical or not (explain picks the records of canonical blocks).
        self.epoch_listeners: list[Callable[[bytes, int, list[EpochRecord]], None]] = []
        # Called with the new finalized checkpoint each time finality moves (after the head change).
        self.finality_listeners: list[Callable[[Checkpoint], None]] = []
        self._rolled_back: list[Block] = []
        self._forks: dict[bytes, _ForkBlock] = {}
        self._head_view: _HeadView | None = None
        raw = store.meta("finalized")
        self._finalized: Checkpoint | None = None if raw is None else finality.cp_from(decode(raw))
        self._earlier_finalized = self._read_earlier_finalized()
        # (head hash, checkpoint height, overrides): the last snapshot read, see `_overrides_above`.
        self._snapshot_overrides: tuple[bytes, int, dict[bytes, bytes | None]] | None = None
        # Set by the composition root where there is more than one core: checks the signatures of
        # range-sync blocks in a helper process while the blocks before them are applied here.
        self.signature_helper: SignatureHelper | None = None

    # ---------------------------------------------------------------- reading

    def head_state(self) -> State:
        """A fresh overlay over the head state (nothing written reaches the store)."""
        return State(self.store, self.store.head_accumulator())

    def _view(self) -> _HeadView:
        """What the node asks about the head all the time, decoded once per head."""
        head_hash = self.store.head_hash
        view = self._head_view
        if view is None or view.hash != head_hash:
            header = self.store.header(head_hash)
            assert header is not None
            state = self.head_state()
            view = _HeadView(
                head_hash,
                header,
                finality.justified_checkpoint(state),
                finality.finalized_checkpoint(state),
                {name: state.param(name) for name in ("slot_ms", "epoch_slots", "max_block_bytes", "max_block_txs")},
            )
            self._head_view = view
        return view

    @property
    def head(self) -> Header:
        return self._view().header

    @property
    def head_info(self) -> BlockInfo:
        view = self._view()
        head = view.header
        justified_epoch = -1 if view.justified is None else view.justified.epoch
        return BlockInfo(head.hash, head.parent, head.height, head.slot, justified_epoch)

    @property
    def finalized(self) -> Checkpoint | None:
        """The latest finalized checkpoint this node has seen (never goes back, survives restarts)."""
        state_cp = self._view().finalized
        if state_cp is not None and (self._finalized is None or state_cp.epoch > self._finalized.epoch):
            return state_cp
        return self._finalized

    @property
    def previous_finalized(self) -> Checkpoint | None:
        """The finalized checkpoint before the latest (the newest of `earlier_finalized`)."""
        return self._earlier_finalized[0] if self._earlier_finalized else None

    @property
    def earlier_finalized(self) -> list[Checkpoint]:
        """The finalized checkpoints before the latest, newest first, whose state is still served
        (a join that began on one gets more epochs to finish), so their undo records are kept."""
        return list(self._earlier_finalized)

    def _read_earlier_finalized(self) -> list[Checkpoint]:
        raw = self.store.meta("finalized_earlier")
        if raw:
            return [finality.cp_from(cp) for cp in decode(raw)]
        raw = self.store.meta("finalized_previous")  # a store from before several were kept
        return [] if not raw else [finality.cp_from(decode(raw))]

    @property
    def justified(self) -> Checkpoint | None:
        return self._view().justified

    def head_param(self, name: str) -> int:
        """A chain parameter at the head (cached for slot_ms, epoch_slots and the block limits)."""
        params = self._view().params
        return params[name] if name in params else self.head_state().param(name)

    def is_known(self, block_hash: bytes, height: int) -> bool:
        """Whether the block was verified: canonical, or a kept fork block."""
        return block_hash in self._forks or self.store.canonical_hash(height) == block_hash

    def fork_count(self) -> int:
        return len(self._forks)

    def reload(self) -> None:
        """Forget what was read from the store (after a snapshot was installed under the tree)."""
        self._head_view = None
        self._forks.clear()
        self._snapshot_overrides = None
        raw = self.store.meta("finalized")
        self._finalized = None if raw is None else finality.cp_from(decode(raw))
        self._earlier_finalized = self._read_earlier_finalized()

    # ---------------------------------------------------------------- serving the finalized state

    def finalized_state_chunk(self, after: bytes, max_items: int, max_bytes: int,
                              checkpoint: Checkpoint | None = None) -> tuple[list[tuple[bytes, bytes]], bool]:
        """State items after the finalized checkpoint block (or `checkpoint`: the finalized or an
        earlier finalized one still served) with keys above `after`, in key order: at most `max_items`, and
        past `max_bytes` no more (at least one). Returns (items, done).

        The store holds the head state; the finalized state is the head state rewound through the
        undo records of the blocks above the checkpoint (kept while it is served), so
        every chunk reads one consistent snapshot while the head moves on."""
        if checkpoint is None or checkpoint == self.finalized:
            overrides = self._finalized_overrides()
        elif checkpoint in self._earlier_finalized:
            overrides = self._overrides_above(checkpoint.height)
        else:
            raise BlockInvalid("no_snapshot", f"checkpoint at height {checkpoint.height} is not served")
        later = sorted((k, v) for k, v in overrides.items() if k > after)
        limit = max_items + len(later) + 1
        rows = self.store.state_items_after(after, limit)
        merged = dict(rows)
        for key, value in later:
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        # Keys past the last row read are not known to be complete: cut there unless the store ran out.
        exhausted = len(rows) < limit
        last_row = rows[-1][0] if rows else b""
        keys = sorted(k for k in merged if exhausted or k <= last_row)
        out: list[tuple[bytes, bytes]] = []
        size = 0
        for key in keys:
            if len(out) >= max_items or (out and size >= max_bytes):
                return out, False
            value = merged[key]
            out.append((key, value))
            size += len(key) + len(value) + 8
        return out, exhausted

    def finalized_opening(self) -> tuple[bytes, bytes | None, bytes | None]:
        """What opens the finalized block's state root (`state.compose_root`): the LtHash digest of
        its state and the raw values of its two validator sets, from the head state and the undo
        records above the checkpoint (one element hash per key changed since)."""
        overrides = self._finalized_overrides()
        acc = self.store.head_accumulator()
        for key, old in overrides.items():
            now = self.store.get(key)
            if now is not None:
                acc = accumulator.sub(acc, accumulator.element_hash(key, now))
            if old is not None:
                acc = accumulator.add(acc, accumulator.element_hash(key, old))

        def value(key: bytes) -> bytes | None:
            return overrides[key] if key in overrides else self.store.get(key)

        return accumulator.digest(acc), value(VSET_KEY), value(VSET_NEXT_KEY)

    def _finalized_overrides(self) -> dict[bytes, bytes | None]:
        """Old values that turn the head state into the state after the finalized block (cached per head)."""
        finalized = self.finalized
        return self._overrides_above(0 if finalized is None else finalized.height)

    def _overrides_above(self, checkpoint_height: int) -> dict[bytes, bytes | None]:
        """Old values that turn the head state into the state after the canonical block at
        `checkpoint_height` (the last one read is cached per head)."""
        head = self.store.head_hash
        cached = self._snapshot_overrides
        if cached is not None and cached[0] == head and cached[1] == checkpoint_height:
            return cached[2]
        overrides: dict[bytes, bytes | None] = {}
        for height in range(self.store.head_height, checkpoint_height, -1):
            canonical = self.store.canonical_hash(height)
            record = None if canonical is None else self.store.undo_record(canonical)
            if record is None:
                raise BlockInvalid("no_snapshot", f"no undo record at height {height}")
            overrides.update(record[1])
        self._snapshot_overrides = (head, checkpoint_height, overrides)
        return overrides

    # ---------------------------------------------------------------- importing

    def import_block(
        self, block: Block, *, signatures_checked: bool = False, header_verified: bool = False
    ) -> ImportResult:
        """Verify `block` and add it to the tree; adopt it if fork choice prefers it.

        `header_verified`: the proposer's signature was checked already (by the gossip guard), so
        only the body's signatures are; `signatures_checked`: none is checked (own blocks).
        Raises BlockInvalid (nothing kept) when the block is invalid, its parent is unknown
        (`unknown_parent`), it conflicts with the finalized checkpoint (`conflicts_with_finality`),
        or the fork pool is full (`fork_pool_full`).
        """
        header = block.header
        block_hash = header.hash
        if self.is_known(block_hash, header.height):
            return ImportResult(block_hash, header.height, header.state_root, known=True, head=block_hash == self.store.head_hash)
        finalized = self.finalized
        if finalized is not None and header.height <= finalized.height:
            raise BlockInvalid("conflicts_with_finality", f"height {header.height} <= finalized {finalized.height}")
        if header.parent == self.store.head_hash:
            self._verify_signatures(block, signatures_checked, header_verified)
            state = self.head_state()
            state.prefetch(_accounts_touched(block))
            records: list[EpochRecord] = []
            apply_block(state, block, self.supported_versions, records)
            changes = state.changes()
            self.store.commit_block(block, changes, state.accumulator(), state.values_before(changes))
            self._report_epochs(block, records)
            self._after_head_change()
            return ImportResult(block_hash, header.height, header.state_root, head=True)
        if not self.is_known(header.parent, header.height - 1):
            raise BlockInvalid("unknown_parent", header.parent.hex()[:16])
        if len(self._forks) >= MAX_FORK_BLOCKS:
            raise BlockInvalid("fork_pool_full")
        self._verify_signatures(block, signatures_checked, header_verified)
        state = self._state_after(header.parent, header.height - 1)
        records = []
        apply_block(state, block, self.supported_versions, records)
        fork = _ForkBlock(block, _info(block, finality.justified_epoch(state)), state.changes(), state.accumulator())
        self.store.put_block(block)
        self._forks[block_hash] = fork
        self._report_epochs(block, records)
        if not is_better(fork.info, self.head_info):
            return ImportResult(block_hash, header.height, header.state_root)
        rolled_back = self._reorganise_to(block_hash)
        return ImportResult(block_hash, header.height, header.state_root, head=True, reorged=rolled_back)

    def _report_epochs(self, block: Block, records: list[EpochRecord]) -> None:
        if records:
            for listener in self.epoch_listeners:
                listener(block.hash, block.header.height, records)

    def expect_blocks(self, blocks: list[Block]) -> None:
        """Blocks about to be imported, in this order (a range-sync batch): the signature helper,
        if there is one, checks them ahead."""
        helper = self.signature_helper
        if helper is not None and (len(blocks) >= MIN_BLOCKS_TO_START_HELPER or (helper.alive and len(blocks) > 1)):
            helper.expect(blocks)

    def _verify_signatures(self, block: Block, already: bool, header_verified: bool) -> None:
        if already:
            return
        helper = self.signature_helper
        if helper is not None and helper.expecting:
            # A verdict is only ever for this very object, whose checks the helper was sent.
            verdict = helper.verdict(block)
            if verdict == "":
                return
            if verdict is not None:
                raise BlockInvalid("bad_signature", verdict)
        try:
            if header_verified:
                check_body_signatures(block, self.tx_signature_verified, self.vote_signature_verified)
            else:
                check_block_signatures(block, self.tx_signature_verified, self.vote_signature_verified)
        except InvalidSignature as exc:
            raise BlockInvalid("bad_signature", exc.reason) from None

    def check_header_on_parent(self, header: Header) -> None:
        """The header's stateful checks against its parent's state (height, slot after the parent,
        the slot's proposer), without the body: what a gossip guard can afford before relaying.

        Raises BlockInvalid: `unknown_parent`, `wrong_height`, `conflicts_with_finality`, or the
        reason `consensus.check_header` gives."""
        if header.parent == self.store.head_hash:
            parent_height = self.store.head_height
            state = self.head_state()
        else:
            fork = self._forks.get(header.parent)
            if fork is not None:
                parent_height = fork.info.height
            elif self.store.canonical_hash(header.height - 1) == header.parent:
                parent_height = header.height - 1
            else:
                raise BlockInvalid("unknown_parent", header.parent.hex()[:16])
            if header.height == parent_height + 1:
                state = self._state_after(header.parent, parent_height)
        if header.height != parent_height + 1:
            raise BlockInvalid("wrong_height", f"{header.height} after {parent_height}")
        consensus.check_header(state.child(), header)

    def _fork_path(self, block_hash: bytes) -> tuple[list[_ForkBlock], bytes, int]:
        """Fork blocks from `block_hash` back to the canonical chain (newest first), and the
        canonical fork point (hash, height)."""
        path: list[_ForkBlock] = []
        current = block_hash
        while current in self._forks:
            fork = self._forks[current]
            path.append(fork)
            current = fork.info.parent
        height = path[-1].info.height - 1 if path else -1
        return path, current, height

    def _state_after(self, block_hash: bytes, height: int) -> State:
        """A state overlay equal to the state after the verified block `block_hash`."""
        path, point, point_height = self._fork_path(block_hash)
        if not path:
            point_height = height
        finalized = self.finalized
        if finalized is not None and point_height < finalized.height:
            raise BlockInvalid("conflicts_with_finality", "fork point below the finalized checkpoint")
        overrides: dict[bytes, bytes | None] = {}
        acc = self.store.head_accumulator()
        for h in range(self.store.head_height, point_height, -1):
            canonical = self.store.canonical_hash(h)
            record = None if canonical is None else self.store.undo_record(canonical)
            if record is None:
                raise BlockInvalid("conflicts_with_finality", f"no undo record at height {h}")
            acc, old_values = record
            overrides.update(old_values)
        for fork in reversed(path):
            overrides.update(fork.changes)
            acc = fork.acc
        return State(OverlayReader(self.store, overrides), acc)  # the state at an ancestor or a fork block

    def _reorganise_to(self, new_head: bytes) -> int:
        """Make the fork block `new_head` the head: roll back to the fork point and forward, atomically."""
        path, point, _ = self._fork_path(new_head)
        rolled: list[_ForkBlock] = []
        store = self.store
        with store.transaction():
            while store.head_hash != point:
                head_hash = store.head_hash
                block = store.block(head_hash)
                record = store.undo_record(head_hash)
                if block is None or record is None:
                    raise BlockInvalid("conflicts_with_finality", "cannot roll back past pruned undo records")
                changes = {key: store.get(key) for key, _ in record[1]}
                info = _info(block, _justified_epoch_of_raw(store.get(statekeys.global_value("ffg"))))
                rolled.append(_ForkBlock(block, info, changes, store.head_accumulator()))
                store.rollback_head()
            for fork in reversed(path):
                store.commit_block(fork.block, fork.changes, fork.acc)
        # Only after the commit: memory follows the store.
        for fork in path:
            del self._forks[fork.info.hash]
        for fork in rolled:
            self._forks[fork.info.hash] = fork
        self._rolled_back.extend(fork.block for fork in rolled)
        self._after_head_change()
        return len(rolled)

    def take_rolled_back(self) -> list[Block]:
        """Blocks that left the canonical chain in reorganisations since the last call (their
        transactions go back to the mempool)."""
        blocks, self._rolled_back = self._rolled_back, []
        return blocks

    def _after_head_change(self) -> None:
        for listener in self.head_listeners:
            listener(self.store.head_hash)
        state_cp = self._view().finalized
        if state_cp is None or (self._finalized is not None and state_cp.epoch <= self._finalized.epoch):
            return
        previous, self._finalized = self._finalized, state_cp
        self.store.set_meta("finalized", encode(finality.cp_plain(state_cp)))
        if previous is not None:
            self._earlier_finalized = [previous, *self._earlier_finalized][:EARLIER_SERVED_CHECKPOINTS]
            self.store.set_meta("finalized_earlier", encode([finality.cp_plain(cp) for cp in self._earlier_finalized]))
        # Undo of the finalized block and below is never needed to revert anything; the undo
        # records above the oldest checkpoint still served serve the states of those checkpoints.
        oldest = self._earlier_finalized[-1] if self._earlier_finalized else state_cp
        self.store.prune_undo(oldest.height + 1)
        for block_hash in [h for h, f in self._forks.items() if f.info.height <= state_cp.height]:
            del self._forks[block_hash]
        for finality_listener in self.finality_listeners:
            finality_listener(state_cp)

    # ---------------------------------------------------------------- building

    def prepare_block(
        self,
        proposer: bytes,
        slot: int,
        candidates: Iterable[SignedTx] = (),
        votes: Iterable[SignedVote] = (),
        *,
        randao_reveal: bytes,
        skip_invalid: bool = False,
        failed: list[SignedTx] | None = None,
    ) -> Block:
        """An unsigned block on the head; with `skip_invalid`, transactions and votes that would not
        apply are left out (the rest keep their order), and block count and size limits hold.
        The timestamp is the slot's start; `randao_reveal` is the proposer's signature of
        `randao_message(chain, slot)`.

        With `skip_invalid`, `candidates` is read lazily, only as far as the block fills, and the
        transactions that failed to apply are appended to `failed` (the mempool evicts them)."""
        parent = self.head
        state = self.head_state()
        header = Header(
            chain=parent.chain,
            version=state.param("protocol_version"),
            height=parent.height + 1,
            slot=slot,
            parent=parent.hash,
            proposer=proposer,
            state_root=bytes(32),
            tx_root=bytes(32),
            timestamp_ms=consensus.slot_start_ms(state, slot),
            randao_reveal=randao_reveal,
        )
        if skip_invalid:
            txs, chosen_votes = self._select(state.child(), header, candidates, list(votes), failed)
        else:
            txs, chosen_votes = list(candidates), list(votes)
        header = dataclasses.replace(header, tx_root=body_root(txs, chosen_votes))
        draft = Block(header=header, sig=bytes(64), txs=tuple(txs), votes=tuple(chosen_votes))
        state = self.head_state()
        apply_block_body(state, draft, self.supported_versions)
        header = dataclasses.replace(header, state_root=state.root())
        return dataclasses.replace(draft, header=header)

    @staticmethod
    def _select(
        state: State, header: Header, txs: Iterable[SignedTx], votes: list[SignedVote],
        failed: list[SignedTx] | None = None,
    ) -> tuple[list[SignedTx], list[SignedVote]]:
        """The transactions and votes that apply in order, within the block limits.

        Mirrors the order of `apply_block_body` (header checks, transactions, votes) on a throwaway
        overlay; the caller applies the result again from scratch, so a mismatch cannot slip through.
        """
        consensus.check_header(state, header)
        state.set_global("height", header.height)
        ctx = context_for(Block(header=header, sig=bytes(64), txs=(), votes=()))
        max_txs = state.param("max_block_txs")
        budget = state.param("max_block_bytes") - BLOCK_OVERHEAD_BYTES
        chosen: list[SignedTx] = []
        failed_senders: set[bytes] = set()
        for stx in txs:
            if len(chosen) >= max_txs:
                break
            if stx.tx.sender in failed_senders:
                continue  # a later nonce of a sender whose earlier transaction failed cannot apply
            size = len(codec.encode(stx))
            if size > budget:
                continue
            try:
                apply_tx(state, stx.tx, ctx)
            except TxInvalid:
                failed_senders.add(stx.tx.sender)
                if failed is not None:
                    failed.append(stx)
                continue
            chosen.append(stx)
            budget -= size
        chosen_votes: list[SignedVote] = []
        vsets: dict[int, ValidatorSet | None] = {}
        counted: dict[int, set[bytes]] = {}
        for signed_vote in votes:
            vote = signed_vote.vote
            epoch = vote.target.epoch
            if epoch not in vsets:
                vsets[epoch] = consensus.validator_set_for_epoch(state, epoch)
                counted[epoch] = finality.counted_voters(state, epoch)
            vset = vsets[epoch]
            # Cheap pre-filter: most pooled votes are already on chain.
            if vset is None or vote.validator in counted[epoch]:
                continue
            if finality.vote_problem(state, vote, header.slot, vset) is not None:
                continue
            size = len(codec.encode(signed_vote))
            if size > budget:
                break
            finality.count_vote(state, vote, vset)
            chosen_votes.append(signed_vote)
            budget -= size
        return chosen, chosen_votes

    def build_block(
        self,
        proposer: Keypair,
        slot: int,
        txs: list[SignedTx] | tuple[SignedTx, ...] = (),
        votes: list[SignedVote] | tuple[SignedVote, ...] = (),
    ) -> Block:
        """Assemble and sign a block on the head (the given transactions and votes must all apply)."""
        reveal = proposer.sign(randao_message(self.head.chain, slot))
        block = self.prepare_block(proposer.public_key, slot, txs, votes, randao_reveal=reveal)
        return sign_block(block, proposer.sign(block.header.signing_bytes()))


def sign_block(block: Block, signature: bytes) -> Block:
    return dataclasses.replace(block, sig=signature)
