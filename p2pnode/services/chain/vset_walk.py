"""The validator-set walk of checkpoint sync: from the genesis validator set to the set that
finalized a recent checkpoint, each change checked by finality votes of the set before it.

Why: a joiner trusts the genesis validator set (or a `--checkpoint` hash). Once stake moves and
validators join or leave, the checkpoint it joins at was finalized by another set, which it must
learn in a way a lying peer cannot forge.

How (a light client's sequential verification):

- The state root commits to the current and the next validator set on their own
  (`p2pnode.chain.state.compose_root`): a step's `items_digest` and the two raw values open the
  root of its checkpoint header, so the sets in a step are exactly those of that block's state.
- A step is a finalized checkpoint C of epoch t. It is *attested* by the finality votes whose
  target is C, counted with the stake of the set the joiner trusts (each validator once, each
  signature checked): at least 2/3 of it. The set the joiner trusts afterwards is C's `vset_next`
  (the set of epoch t+1 when C is the first block of its epoch, as every checkpoint whose
  boundary slot had a block is).
- The walk's last step is the checkpoint the joiner joins at; its finality link (votes with
  source = C and target epoch t+1, what finalized C) must carry 2/3 of the set its step names.

Which steps a server keeps (`ValidatorSetHistory`, as finality moves): only those a joiner needs.
Each newly finalized checkpoint is the *pending* step; when its votes no longer carry 2/3 of the
set the last kept step names (stake moved, validators left), the previous pending step, which did,
is kept and names the new set. A chain whose set changes slowly keeps few steps; a set replaced
at once keeps one step per epoch of the change. Crossing an epoch whose boundary slot was empty,
or a finality gap, relies on 2/3 of the stake carrying over (the set named is then one epoch old).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from p2pnode.chain.encoding import encode
from p2pnode.chain.state import VSET_NEXT_KEY, compose_root
from p2pnode.chain.types import Checkpoint, SignedVote
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.store.sqlite_store import Store
from protocols import codec, sync
from protocols.validation import vote_signature_ok

log = logging.getLogger(__name__)

# Blocks after a checkpoint searched for the votes of its step (its votes arrive within two epochs).
MAX_VOTE_SEARCH_BLOCKS = 1024
_BASE = "vset_walk_base"  # the set the first step is checked with (genesis), encoded; b"" = none
_TRUSTED = "vset_walk_trusted"  # the set the last kept step names
_PENDING = "vset_walk_pending"  # the latest finalized checkpoint's step
_PREVIOUS = "vset_walk_previous"  # the step of the finalized checkpoint before it (still served)


class WalkError(Exception):
    """A validator-set walk that does not verify; `reason` names the first failed check."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_validator_set(raw: bytes) -> dict[bytes, int]:
    """The stake of each validator in a validator-set state value (remote input: checked)."""
    try:
        value: Any = codec.decode_plain(raw, sync.MAX_VSET_VALUE_BYTES)
    except codec.MalformedMessage as exc:
        raise WalkError("malformed_validator_set", str(exc)) from None
    validators = value.get("validators") if isinstance(value, dict) else None
    if not isinstance(validators, list) or len(validators) > sync.MAX_STEP_VOTES:
        raise WalkError("malformed_validator_set", "no list of at most 256 validators")
    stakes: dict[bytes, int] = {}
    for entry in validators:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], bytes) or len(entry[0]) != 32
                or not isinstance(entry[1], int) or entry[1] <= 0 or entry[0] in stakes):
            raise WalkError("malformed_validator_set", "an entry is not a distinct [hotkey, stake > 0]")
        stakes[entry[0]] = entry[1]
    return stakes


def encode_stakes(stakes: dict[bytes, int]) -> bytes:
    return encode(sorted([hot, stake] for hot, stake in stakes.items()))


def decode_stakes(raw: bytes) -> dict[bytes, int]:
    return {hot: stake for hot, stake in codec.decode_plain(raw)}


def step_checkpoint(step: sync.ValidatorSetStep) -> Checkpoint:
    return Checkpoint(epoch=step.epoch, height=step.header.height, hash=step.header.hash)


def attested(votes: Iterable[SignedVote], checkpoint: Checkpoint, stakes: dict[bytes, int], chain_id: str,
             *, link: bool, check_signatures: bool = True) -> bool:
    """Whether votes of at least 2/3 of the stake of `stakes` target `checkpoint` (link: have it as
    source and the next epoch as target), each validator once, signatures checked until 2/3 is
    reached (a walk's cost is bounded by its real steps: a bad one stops it)."""
    total = sum(stakes.values())
    counted: set[bytes] = set()
    stake = 0
    for signed in votes:
        vote = signed.vote
        if vote.chain != chain_id or vote.validator in counted or vote.validator not in stakes:
            continue
        if link:
            if vote.source != checkpoint or vote.target.epoch != checkpoint.epoch + 1:
                continue
        elif vote.target != checkpoint:
            continue
        if check_signatures and not vote_signature_ok(signed):
            continue
        counted.add(vote.validator)
        stake += stakes[vote.validator]
        if stake * 3 >= total * 2:
            return total > 0
    return False


class WalkVerifier:
    """Checks a walk step by step from `trusted` (the genesis set), so a bad page is refused as it
    arrives (see the module docstring); `trusted` is then the set the last step names."""

    def __init__(self, trusted: dict[bytes, int], chain_id: str) -> None:
        self.trusted = trusted
        self.chain_id = chain_id
        self.last: sync.ValidatorSetStep | None = None
        self.steps = 0

    def feed(self, step: sync.ValidatorSetStep) -> None:
        where = f"step {self.steps} (epoch {step.epoch})"
        header = step.header
        if self.last is not None and step.epoch <= self.last.epoch or step.epoch == 0:
            raise WalkError("walk_not_increasing", where)
        if header.chain != self.chain_id:
            raise WalkError("wrong_chain", where)
        if compose_root(step.items_digest, step.vset, step.vset_next) != header.state_root:
            raise WalkError("validator_set_not_committed", f"{where}: the sets do not open the header's state root")
        parse_validator_set(step.vset)
        named = parse_validator_set(step.vset_next)
        cp = step_checkpoint(step)
        if not attested(step.votes, cp, self.trusted, self.chain_id, link=False):
            raise WalkError("validator_set_step_unattested",
                            f"{where}: votes of less than 2/3 of the trusted set's stake target it")
        self.trusted = named
        self.last = step
        self.steps += 1

    def finish(self, checkpoint: Checkpoint) -> dict[bytes, int]:
        """The walk ended: its last step must be `checkpoint`, finalized by the set it names."""
        if self.last is None:
            raise WalkError("empty_walk")
        last = step_checkpoint(self.last)
        if last != checkpoint:
            raise WalkError("walk_does_not_end_at_checkpoint", f"ends at epoch {last.epoch}, height {last.height}")
        if not attested(self.last.link_votes, last, self.trusted, self.chain_id, link=True):
            raise WalkError("checkpoint_not_finalized",
                            "its finality link carries less than 2/3 of the named set's stake")
        return self.trusted


def verify_walk(steps: list[sync.ValidatorSetStep], checkpoint: Checkpoint, trusted: dict[bytes, int],
                chain_id: str) -> dict[bytes, int]:
    """Check a whole walk from `trusted` to `checkpoint`; returns the set its last step names.
    Raises WalkError naming the first check that fails."""
    verifier = WalkVerifier(trusted, chain_id)
    for step in steps:
        verifier.feed(step)
    return verifier.finish(checkpoint)


class ValidatorSetHistory:
    """A node's side of the walk: keeps the steps as finality moves (see the module docstring) and
    answers walk requests. State lives in the store's meta, so it survives restarts and a joiner
    can adopt the walk it verified (`adopt`)."""

    def __init__(self, chain: BlockTree) -> None:
        self.chain = chain
        self.store = chain.store
        self.chain_id = chain.head.chain
        if self.store.meta(_BASE) is None and self.store.head_height == 0 and self.store.history_low() is None:
            vset = self.chain.head_state().get_raw(VSET_NEXT_KEY)
            if vset is not None:
                self.store.set_meta(_BASE, encode_stakes(parse_validator_set(vset)))
        chain.finality_listeners.append(self.on_finalized)

    # ---------------------------------------------------------------- state

    def _trusted(self) -> dict[bytes, int] | None:
        raw = self.store.meta(_TRUSTED) or self.store.meta(_BASE)
        return decode_stakes(raw) if raw else None

    def pending(self) -> sync.ValidatorSetStep | None:
        return self._step_meta(_PENDING)

    def _step_meta(self, key: str) -> sync.ValidatorSetStep | None:
        raw = self.store.meta(key)
        return None if not raw else codec.decode(sync.ValidatorSetStep, raw, max_bytes=sync.MAX_WALK_RESPONSE_BYTES)

    # ---------------------------------------------------------------- recording

    def on_finalized(self, checkpoint: Checkpoint) -> None:
        try:
            self._record(checkpoint)
        except Exception:  # the walk is a service to joiners: it never stops an import
            log.exception("validator-set walk: cannot record checkpoint %s", checkpoint.hash.hex()[:16])

    def _record(self, checkpoint: Checkpoint) -> None:
        trusted = self._trusted()
        if checkpoint.epoch == 0 or trusted is None:
            return
        pending = self.pending()
        if pending is not None and checkpoint.epoch <= pending.epoch:
            return
        step = self.step_for(checkpoint)
        if step is None:
            return
        with self.store.transaction():
            if not attested(step.votes, checkpoint, trusted, self.chain_id, link=False,
                            check_signatures=False) and pending is not None:
                self.store.add_vset_step(pending.epoch, codec.encode(pending))
                self.store.set_meta(_TRUSTED, encode_stakes(parse_validator_set(pending.vset_next)))
                log.info("validator-set walk: kept the step of epoch %d", pending.epoch)
            self.store.set_meta(_PREVIOUS, b"" if pending is None else codec.encode(pending))
            self.store.set_meta(_PENDING, codec.encode(step))

    def step_for(self, checkpoint: Checkpoint) -> sync.ValidatorSetStep | None:
        """The step of the node's current finalized checkpoint (None if the store lacks it)."""
        header = self.store.header(checkpoint.hash)
        if header is None:
            return None
        items_digest, vset, vset_next = self.chain.finalized_opening()
        if vset is None or vset_next is None or compose_root(items_digest, vset, vset_next) != header.state_root:
            log.error("validator-set walk: the finalized state does not open its root at epoch %d", checkpoint.epoch)
            return None
        votes: dict[bytes, SignedVote] = {}
        link_votes: dict[bytes, SignedVote] = {}
        head = self.store.head_height
        for height in range(checkpoint.height + 1, min(head, checkpoint.height + MAX_VOTE_SEARCH_BLOCKS) + 1):
            block = self.store.canonical_block(height)
            if block is None:
                break
            for signed in block.votes:
                vote = signed.vote
                if vote.target == checkpoint:
                    votes.setdefault(vote.validator, signed)
                elif vote.source == checkpoint and vote.target.epoch == checkpoint.epoch + 1:
                    link_votes.setdefault(vote.validator, signed)
        return sync.ValidatorSetStep(
            epoch=checkpoint.epoch, header=header, items_digest=items_digest, vset=vset, vset_next=vset_next,
            votes=tuple(votes[v] for v in sorted(votes))[: sync.MAX_STEP_VOTES],
            link_votes=tuple(link_votes[v] for v in sorted(link_votes))[: sync.MAX_STEP_VOTES])

    # ---------------------------------------------------------------- serving

    def answer(self, request: sync.ValidatorSetWalkRequest) -> bytes:
        """The walk to the node's finalized checkpoint, or to the one before it (still served)."""
        pending = self.pending()
        if pending is None or self._trusted() is None:
            return sync.encode_walk_error("no_walk")
        target = next((step for step in (pending, self._step_meta(_PREVIOUS))
                       if step is not None and step.header.hash == request.checkpoint), None)
        if target is None:
            return sync.encode_walk_error("not_current_checkpoint")
        out: list[bytes] = []
        size = 0
        for data in self.store.vset_steps(request.after_epoch, sync.MAX_WALK_STEPS):
            step = codec.decode(sync.ValidatorSetStep, data, max_bytes=sync.MAX_WALK_RESPONSE_BYTES)
            if step.epoch >= target.epoch:
                break  # the target itself may have been kept since: it is appended below
            if out and size + len(data) > sync.WALK_BYTES:
                return sync.encode_walk(out, done=False)
            out.append(data)
            size += len(data)
        if target.epoch > request.after_epoch:
            raw = codec.encode(target)
            if len(out) >= sync.MAX_WALK_STEPS or (out and size + len(raw) > sync.WALK_BYTES):
                return sync.encode_walk(out, done=False)
            out.append(raw)
        return sync.encode_walk(out, done=True)

    # ---------------------------------------------------------------- a joiner's walk

    @staticmethod
    def adopt(store: Store, base: dict[bytes, int] | None, steps: list[sync.ValidatorSetStep]) -> None:
        """After a join: keep the verified walk to serve it (`base` None: joined on a trusted hash,
        no walk to serve)."""
        with store.transaction():
            if base is None or not steps:
                store.set_meta(_BASE, b"")
                return
            store.set_meta(_BASE, encode_stakes(base))
            for step in steps[:-1]:
                store.add_vset_step(step.epoch, codec.encode(step))
            if len(steps) > 1:
                store.set_meta(_TRUSTED, encode_stakes(parse_validator_set(steps[-2].vset_next)))
            store.set_meta(_PENDING, codec.encode(steps[-1]))


__all__ = ["ValidatorSetHistory", "WalkError", "WalkVerifier", "attested", "parse_validator_set", "verify_walk"]
