"""Proof of stake: the block-validator set, proposer selection, finality votes and slashing.

Epochs of `epoch_slots` slots. The validator set and the proposer seed of epoch e+1 are fixed when
the chain enters epoch e. The seed comes from a RANDAO mix: every block folds in the hash of its
proposer's reveal (a deterministic signature of the slot, checked with the block's signature), and
the seed of epoch e+1 is taken from the mix as it stood at the end of epoch e-1. No field a proposer
is free to set (timestamp, transactions, state) reaches the seed; a proposer can only withhold its
block, which costs it the slot and changes one input of the mix.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from p2pnode.chain import finality, statekeys, unbonding
from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import sha256
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.records import SlashRecord, ValidatorSet
from p2pnode.chain.state import State, shared_record
from p2pnode.chain.types import Header, SignedVote, SlashDoubleProposal, SlashVote, Tx

DOMAIN_SEED = b"p2pnode/proposer-seed/v1\x00"
DOMAIN_MIX = b"p2pnode/randao-mix/v1\x00"


VALIDATOR_SET_NAMES = ("vset_prev", "vset", "vset_next")


def stored_validator_set(state: State, name: str) -> ValidatorSet | None:
    """The validator set stored as global `name` (one of `VALIDATOR_SET_NAMES`), shared between
    calls with the same bytes: read on every block and gossip message, and frozen."""
    raw = state.get_raw(statekeys.global_value(name))
    return None if raw is None else shared_record(raw, ValidatorSet.from_state)


def _current_sets(state: State) -> tuple[ValidatorSet, ValidatorSet]:
    current, following = stored_validator_set(state, "vset"), stored_validator_set(state, "vset_next")
    assert current is not None and following is not None, "state has no validator sets"
    return current, following


def epoch_of(state: State, slot: int) -> int:
    return slot // state.param("epoch_slots")


def add_candidate(state: State, hotkey: bytes) -> None:
    """A hotkey with self-stake may become a block validator."""
    candidates = state.global_value("candidates", [])
    if hotkey not in candidates:
        state.set_global("candidates", sorted([*candidates, hotkey]))


def is_slashed(state: State, hotkey: bytes) -> bool:
    return state.get(statekeys.slashed(hotkey)) is not None


def compute_validator_set(state: State) -> tuple[tuple[bytes, int], ...]:
    """Top `max_block_validators` candidates by total stake (ties: lower hotkey), each (hotkey, stake),
    sorted by hotkey."""
    minimum = state.param("min_validator_stake")
    ranked = []
    for hot in state.global_value("candidates", []):
        owner = state.hotkey_owner(hot)
        if owner is None or is_slashed(state, hot):
            continue
        if state.stake(owner, hot) < max(minimum, 1):
            continue
        ranked.append((-state.total_stake(hot), hot))
    ranked.sort()
    chosen = ranked[: state.param("max_block_validators")]
    return tuple(sorted((hot, -neg) for neg, hot in chosen))


def init_validator_sets(state: State, seed: bytes, genesis_time_ms: int) -> None:
    validators = compute_validator_set(state)
    state.set_global("vset", ValidatorSet(epoch=0, validators=validators, seed=seed).to_state())
    state.set_global("vset_next", ValidatorSet(epoch=1, validators=validators, seed=sha256(seed + b"next")).to_state())
    state.set_global("randao_mix", seed)
    state.set_global("genesis_time_ms", genesis_time_ms)
    state.set_global("slot", 0)
    finality.init_genesis(state)


def slot_start_ms(state: State, slot: int) -> int:
    """When `slot` starts; a block's `timestamp_ms` must be exactly this."""
    return state.global_value("genesis_time_ms") + slot * state.param("slot_ms")


def next_randao_mix(mix: bytes, reveal: bytes) -> bytes:
    return sha256(DOMAIN_MIX + mix + sha256(reveal))


def epoch_seed(mix: bytes, epoch: int) -> bytes:
    """The proposer seed of `epoch`, from the mix at the end of epoch - 2."""
    return sha256(DOMAIN_SEED + mix + epoch.to_bytes(8, "big"))


def validator_set_for_slot(state: State, slot: int) -> ValidatorSet:
    current, following = _current_sets(state)
    return current if epoch_of(state, slot) <= current.epoch else following


def proposer_for_slot(state: State, slot: int) -> bytes | None:
    """The hotkey entitled to propose at `slot`, drawn by stake from the epoch's validator set."""
    vset = validator_set_for_slot(state, slot)
    total = vset.total_stake
    if total == 0:
        return None
    draw = int.from_bytes(sha256(vset.seed + slot.to_bytes(8, "big")), "big") % total
    for hot, stake in vset.validators:
        if draw < stake:
            return hot
        draw -= stake
    raise AssertionError("unreachable")


def validator_set_for_epoch(state: State, epoch: int) -> ValidatorSet | None:
    """The validator set that proposes and votes in `epoch`, if the state still knows it.

    `vset` serves the epochs after `vset_prev`'s up to its own (epochs without blocks are served
    by the set that was next when they passed), `vset_next` the epochs after it.
    """
    current, following = _current_sets(state)
    if epoch > current.epoch:
        return following
    prev = stored_validator_set(state, "vset_prev")
    if prev is None or epoch > prev.epoch:
        return current
    return prev if epoch == prev.epoch else None


def check_header(state: State, header: Header) -> None:
    """Stateful header checks against the parent state; records the checkpoints the block reveals."""
    parent_slot = state.global_value("slot", 0)
    if header.slot <= parent_slot:
        raise BlockInvalid("slot_not_after_parent", f"slot {header.slot}")
    if header.proposer != proposer_for_slot(state, header.slot):
        raise BlockInvalid("wrong_proposer", f"slot {header.slot}")
    expected_ms = slot_start_ms(state, header.slot)
    if header.timestamp_ms != expected_ms:
        raise BlockInvalid("wrong_timestamp", f"slot {header.slot} starts at {expected_ms}, not {header.timestamp_ms}")
    finality.record_checkpoints(state, header.parent, header.height - 1, parent_slot, header.slot)


def process_votes(state: State, votes: tuple[SignedVote, ...], ctx: BlockContext) -> None:
    """Count the finality votes a block carries (signatures were checked before the transition).

    Every vote must count: a proposer filters with `vote_problem` first, so a block carrying an
    inapplicable vote (duplicate, wrong target, unknown validator) is invalid.
    """
    for index, signed_vote in enumerate(votes):
        vote = signed_vote.vote
        vset = validator_set_for_epoch(state, vote.target.epoch)
        problem = finality.vote_problem(state, vote, ctx.slot, vset)
        if problem is not None:
            raise BlockInvalid("bad_vote", f"vote {index}: {problem}")
        assert vset is not None
        finality.count_vote(state, vote, vset)


def block_step(state: State, header: Header, ctx: BlockContext) -> None:
    """Enter a new epoch if the block is its first (fixing the next epoch's set and seed), then fold
    the block's reveal into the mix: the mix read here holds only reveals of earlier epochs."""
    epoch = epoch_of(state, header.slot)
    current, following = _current_sets(state)
    mix = state.global_value("randao_mix")
    if epoch > current.epoch:
        state.set_global("vset_prev", current.to_state())
        state.set_global("vset", replace(following, epoch=epoch).to_state())
        state.set_global(
            "vset_next",
            ValidatorSet(epoch=epoch + 1, validators=compute_validator_set(state), seed=epoch_seed(mix, epoch + 1)).to_state(),
        )
        finality.prune_tallies(state, epoch)
    state.set_global("randao_mix", next_randao_mix(mix, header.randao_reveal))
    state.set_global("slot", header.slot)


# ---------------------------------------------------------------- slashing


def slash(state: State, hotkey: bytes, height: int) -> int:
    """Burn `slash_permille` of every stake on `hotkey`, and of every amount unbonding from it, and
    mark it slashed; returns the amount burned.

    A slashed hotkey leaves the validator set at the next set computation (compute_validator_set).
    Burning moves stake into the `burned` supply counter, so total supply stays conserved.
    """
    if state.hotkey_owner(hotkey) is None:
        raise TxInvalid("unknown_offender")
    if is_slashed(state, hotkey):
        raise TxInvalid("already_slashed")
    permille = state.param("slash_permille")
    burned = 0
    for cold in state.stakers(hotkey):
        amount = state.stake(cold, hotkey) * permille // 1000
        if amount:
            state.change_stake(cold, hotkey, -amount)
            burned += amount
    if burned:
        state.add_supply("burned", burned)
    burned += unbonding.slash(state, hotkey, permille)
    state.put(statekeys.slashed(hotkey), SlashRecord(height, burned).to_state())
    return burned


def _check_evidence_age(state: State, offence_slot: int, ctx: BlockContext) -> None:
    """Evidence is accepted for `evidence_max_age_slots` slots: within the unbonding delay."""
    limit = state.param("evidence_max_age_slots")
    if ctx.slot > offence_slot + limit:
        raise TxInvalid("evidence_expired", f"offence at slot {offence_slot}, older than {limit} slots")


def _slash_double_proposal(state: State, tx: Tx, ctx: BlockContext) -> None:
    evidence: SlashDoubleProposal = tx.body
    first, second = evidence.first.header, evidence.second.header
    if first.chain != state.chain_id or second.chain != state.chain_id:
        raise TxInvalid("wrong_chain", "evidence from another chain")
    if first.proposer != second.proposer or first.slot != second.slot:
        raise TxInvalid("not_equivocation", "headers differ in proposer or slot")
    if first.hash == second.hash:
        raise TxInvalid("not_equivocation", "the same header twice")
    _check_evidence_age(state, first.slot, ctx)
    slash(state, first.proposer, ctx.height)


def _slash_vote(state: State, tx: Tx, ctx: BlockContext) -> None:
    evidence: SlashVote = tx.body
    first, second = evidence.first.vote, evidence.second.vote
    if first.chain != state.chain_id or second.chain != state.chain_id:
        raise TxInvalid("wrong_chain", "evidence from another chain")
    if not finality.is_slashable_pair(first, second):
        raise TxInvalid("not_slashable", "neither a double vote nor a surround vote")
    _check_evidence_age(state, max(first.target.epoch, second.target.epoch) * state.param("epoch_slots"), ctx)
    slash(state, first.validator, ctx.height)


TX_HANDLERS: dict[str, Any] = {
    "slash_double_proposal": _slash_double_proposal,
    "slash_vote": _slash_vote,
}
