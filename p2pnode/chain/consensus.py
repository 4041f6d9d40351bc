"""Proof of stake: the block-validator set, proposer selection, finality votes and slashing.

Epochs of `epoch_slots` slots. The validator set and the proposer seed of epoch e+1 are fixed when
the chain enters epoch e, so a proposer cannot grind the selection of the epoch it proposes in.
"""

from __future__ import annotations

from typing import Any

from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import sha256
from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.state import State
from p2pnode.chain.types import Header, SignedVote


def epoch_of(state: State, slot: int) -> int:
    return slot // state.param("epoch_slots")


def add_candidate(state: State, hotkey: bytes) -> None:
    """A hotkey with self-stake may become a block validator."""
    candidates = state.global_value("candidates", [])
    if hotkey not in candidates:
        state.set_global("candidates", sorted([*candidates, hotkey]))


def is_slashed(state: State, hotkey: bytes) -> bool:
    return state.get(b"Xslashed" + hotkey) is not None


def compute_validator_set(state: State) -> list[list[Any]]:
    """Top `max_block_validators` candidates by total stake (ties: lower hotkey), each [hotkey, stake]."""
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
    return sorted([[hot, -neg] for neg, hot in chosen])


def init_validator_sets(state: State, seed: bytes) -> None:
    validators = compute_validator_set(state)
    state.set_global("vset", {"epoch": 0, "validators": validators, "seed": seed})
    state.set_global("vset_next", {"epoch": 1, "validators": validators, "seed": sha256(seed + b"next")})
    state.set_global("slot", 0)


def validator_set_for_slot(state: State, slot: int) -> dict[str, Any]:
    vset = state.global_value("vset")
    if epoch_of(state, slot) <= vset["epoch"]:
        return vset
    return state.global_value("vset_next")


def proposer_for_slot(state: State, slot: int) -> bytes | None:
    """The hotkey entitled to propose at `slot`, drawn by stake from the epoch's validator set."""
    vset = validator_set_for_slot(state, slot)
    validators = vset["validators"]
    total = sum(stake for _, stake in validators)
    if total == 0:
        return None
    draw = int.from_bytes(sha256(vset["seed"] + slot.to_bytes(8, "big")), "big") % total
    for hot, stake in validators:
        if draw < stake:
            return hot
        draw -= stake
    raise AssertionError("unreachable")


def check_header(state: State, header: Header) -> None:
    """Stateful header checks against the parent state."""
    if header.slot <= state.global_value("slot", 0):
        raise BlockInvalid("slot_not_after_parent", f"slot {header.slot}")
    if header.proposer != proposer_for_slot(state, header.slot):
        raise BlockInvalid("wrong_proposer", f"slot {header.slot}")


def process_votes(state: State, votes: tuple[SignedVote, ...], ctx: BlockContext) -> None:
    """Finality votes carried by a block (finality gadget)."""
    if votes:
        raise BlockInvalid("votes_unsupported")


def block_step(state: State, header: Header, ctx: BlockContext) -> None:
    epoch = epoch_of(state, header.slot)
    vset = state.global_value("vset")
    if epoch > vset["epoch"]:
        current = dict(state.global_value("vset_next"), epoch=epoch)
        state.set_global("vset", current)
        state.set_global(
            "vset_next",
            {"epoch": epoch + 1, "validators": compute_validator_set(state), "seed": sha256(current["seed"] + header.parent)},
        )
    state.set_global("slot", header.slot)


TX_HANDLERS: dict[str, Any] = {}
