"""Casper-FFG finality over epoch checkpoints, as pure functions of the chain state.

Rules (docs/chain.md, "Finality"):

- The checkpoint of epoch e on a chain is the last block whose slot is at or before the epoch
  boundary slot e * epoch_slots (the boundary block itself when that slot has a block). A block's
  own hash is not known while it is applied, so the checkpoint is recorded by the first block after
  the boundary, from its parent (`record_checkpoints`).
- A block validator votes once per epoch: source = the latest justified checkpoint it knows,
  target = the current epoch's checkpoint. Votes travel by gossip and are included in blocks; a
  block may include votes whose target is its own epoch's or the previous epoch's checkpoint on its
  own chain and whose source is a recently justified checkpoint of its chain. A validator counts
  once per target epoch.
- A target is justified when the votes of one link source -> target carry at least 2/3 of the stake
  of the target epoch's validator set; the source is finalized when the target is the checkpoint of
  the very next epoch (the one-epoch finality rule of Casper FFG).
- Slashable: two different votes with the same target epoch (double vote), or one vote whose
  epochs surround the other's (surround vote).

Everything lives in state (globals `ffg`, per-epoch tallies under `X`), so it is part of the state
root and a syncing node re-derives finality from blocks alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from p2pnode.chain import statekeys
from p2pnode.chain.encoding import decode
from p2pnode.chain.records import (
    EMPTY_FINALITY,
    FfgLink,
    FinalityRecord,
    ValidatorSet,
    checkpoint_from_state,
    checkpoint_to_state,
)
from p2pnode.chain.state import State, shared_record
from p2pnode.chain.types import Checkpoint, FinalityVote

# Checkpoints of this many recent epochs are kept in state (votes may only target the current or
# the previous epoch, so two would do; the margin keeps a vote in flight across a boundary usable).
KEPT_CHECKPOINTS = 4
# Justified checkpoints a vote's source may name (the latest few on this chain).
KEPT_JUSTIFIED = 4
# Tallies are kept for target epochs no older than this many epochs before the current one.
KEPT_TALLY_EPOCHS = 2

def cp_plain(cp: Checkpoint) -> list[Any]:
    """A checkpoint as stored ([epoch, height, hash]; also the store's `finalized` meta value)."""
    return checkpoint_to_state(cp)


def cp_from(plain: Any) -> Checkpoint:
    return checkpoint_from_state("checkpoint", plain)


def finality_record(state: State) -> FinalityRecord:
    """This chain's finality record, built once per stored value and shared (it is frozen)."""
    raw = state.get_raw(statekeys.global_value("ffg"))
    return EMPTY_FINALITY if raw is None else shared_record(raw, FinalityRecord.from_state)


def _set_record(state: State, record: FinalityRecord) -> None:
    state.set_global("ffg", record.to_state())


def init_genesis(state: State) -> None:
    """Nothing is justified before block 1 names genesis as the checkpoint of epoch 0."""
    _set_record(state, EMPTY_FINALITY)


def justified_checkpoint(state: State) -> Checkpoint | None:
    """The latest justified checkpoint of this chain (None before block 1)."""
    justified = finality_record(state).justified
    return justified[-1] if justified else None


def finalized_checkpoint(state: State) -> Checkpoint | None:
    return finality_record(state).finalized


def justified_epoch(state: State) -> int:
    cp = justified_checkpoint(state)
    return -1 if cp is None else cp.epoch


def checkpoint_of(state: State, epoch: int) -> Checkpoint | None:
    """This chain's checkpoint for `epoch`, if it is recent and already known."""
    for cp in finality_record(state).checkpoints:
        if cp.epoch == epoch:
            return cp
    return None


def record_checkpoints(state: State, parent_hash: bytes, parent_height: int, parent_slot: int, slot: int) -> None:
    """Called for each block before its body: its parent is the checkpoint of every epoch boundary
    in [parent_slot, slot)."""
    epoch_slots = state.param("epoch_slots")
    first = -(-parent_slot // epoch_slots)  # first boundary at or after the parent's slot
    last = (slot - 1) // epoch_slots  # last boundary strictly before this block's slot
    if first > last:
        return
    record = finality_record(state)
    first = max(first, last - KEPT_CHECKPOINTS + 1)
    checkpoints = [c for c in record.checkpoints if c.epoch < first]
    checkpoints += [Checkpoint(epoch=e, height=parent_height, hash=parent_hash) for e in range(first, last + 1)]
    record = replace(record, checkpoints=tuple(checkpoints[-KEPT_CHECKPOINTS:]))
    if not record.justified:
        # Block 1 reveals the genesis hash: genesis is justified and finalized by definition.
        genesis = Checkpoint(epoch=0, height=parent_height, hash=parent_hash)
        record = replace(record, justified=(genesis,), finalized=genesis)
    _set_record(state, record)


def vote_target(state: State, head_hash: bytes, head_height: int, head_slot: int, epoch: int) -> Checkpoint | None:
    """What a validator whose head is (hash, height, slot) with post-state `state` votes for in `epoch`."""
    if head_slot <= epoch * state.param("epoch_slots"):
        return Checkpoint(epoch=epoch, height=head_height, hash=head_hash)
    return checkpoint_of(state, epoch)


def _tally_key(epoch: int) -> bytes:
    return statekeys.ffg_tally(epoch)


def vote_problem(state: State, vote: FinalityVote, slot: int, vset: ValidatorSet | None) -> str | None:
    """Why `vote` cannot be counted in a block at `slot` on this state, or None if it can.

    `vset` is the validator set of the vote's target epoch (consensus.validator_set_for_epoch).
    """
    if vote.chain != state.chain_id:
        return "wrong_chain"
    current = slot // state.param("epoch_slots")
    target, source = vote.target, vote.source
    if target.epoch not in (current, current - 1):
        return "target_epoch_out_of_window"
    if checkpoint_of(state, target.epoch) != target:
        return "target_not_on_chain"
    if source.epoch >= target.epoch:
        return "source_not_before_target"
    if source not in finality_record(state).justified:
        return "source_not_justified"
    if vset is None:
        return "no_validator_set"
    if vset.stake_of(vote.validator) == 0:
        return "not_a_validator"
    for link in _tally(state, target.epoch):
        if vote.validator in link.voters:
            return "duplicate_vote"
    return None


def _tally(state: State, epoch: int) -> list[FfgLink]:
    raw = state.get_raw(_tally_key(epoch))
    return [] if raw is None else FfgLink.list_from_state(decode(raw))


def counted_voters(state: State, epoch: int) -> set[bytes]:
    """Validators whose vote for target `epoch` this chain has counted already."""
    return {voter for link in _tally(state, epoch) for voter in link.voters}


def count_vote(state: State, vote: FinalityVote, vset: ValidatorSet) -> None:
    """Add an applicable vote (vote_problem returned None) and update justification and finality."""
    target, source = vote.target, vote.source
    tally = _tally(state, target.epoch)
    index = next((i for i, link in enumerate(tally) if (link.source_epoch, link.source_hash) == (source.epoch, source.hash)),
                 None)
    if index is None:
        link = FfgLink(source.epoch, source.hash, 0, ())
    else:
        link = tally.pop(index)
    link = FfgLink(link.source_epoch, link.source_hash, link.stake + vset.stake_of(vote.validator),
                   tuple(sorted([*link.voters, vote.validator])))
    # One link per source, so ordering by source orders the links.
    tally = sorted([*tally, link], key=lambda entry: (entry.source_epoch, entry.source_hash))
    state.put(_tally_key(target.epoch), FfgLink.list_to_state(tally))
    record = finality_record(state)
    if target.epoch not in record.tally_epochs:
        record = replace(record, tally_epochs=tuple(sorted([*record.tally_epochs, target.epoch])))
    if link.stake * 3 >= vset.total_stake * 2:
        record = _justify(record, target, source)
    _set_record(state, record)


def _justify(record: FinalityRecord, target: Checkpoint, source: Checkpoint) -> FinalityRecord:
    if target not in record.justified:
        justified = FinalityRecord.sorted_checkpoints([*record.justified, target])[-KEPT_JUSTIFIED:]
        record = replace(record, justified=justified)
    finalized = record.finalized
    if target.epoch == source.epoch + 1 and (finalized is None or source.epoch > finalized.epoch):
        record = replace(record, finalized=source)
    return record


def prune_tallies(state: State, current_epoch: int) -> None:
    """Drop tallies of target epochs that can no longer receive votes (bounded state)."""
    record = finality_record(state)
    old = [e for e in record.tally_epochs if e < current_epoch - KEPT_TALLY_EPOCHS]
    if not old:
        return
    for epoch in old:
        state.delete(_tally_key(epoch))
    _set_record(state, replace(record, tally_epochs=tuple(e for e in record.tally_epochs if e not in old)))


def is_slashable_pair(first: FinalityVote, second: FinalityVote) -> bool:
    """Two votes by one validator that break a Casper-FFG commandment (double or surround vote)."""
    if first.validator != second.validator or first.chain != second.chain or first == second:
        return False
    if first.target.epoch == second.target.epoch:
        return True
    return surrounds(first, second) or surrounds(second, first)


def surrounds(outer: FinalityVote, inner: FinalityVote) -> bool:
    return outer.source.epoch < inner.source.epoch and inner.target.epoch < outer.target.epoch
