"""Unbonding: removed stake waits `unbonding_blocks` before it reaches the coldkey's balance.

Slashing evidence is accepted for `evidence_max_age_slots` slots after the offence, and the
parameter bounds keep the unbonding delay (in blocks, so at least as many slots) longer than that:
stake an offender removes is still in the queue when evidence against it lands, and the slashing
burns its share there too.

While it waits the amount is counted in the `locked` supply, so balances + stake + burned + locked
stays equal to genesis + emitted. One entry per (hotkey, coldkey): a second removal before the
first is paid adds to it and restarts the delay, so the queue of a hotkey never holds more entries
than the coldkeys that ever staked on it.

Keys: `Y|hot` -> sorted [[coldkey, amount, release_height], ...]; `W|height` -> sorted hotkeys with
an entry due at that height (an entry whose delay was restarted is skipped there).
"""

from __future__ import annotations

from p2pnode.chain import statekeys
from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import decode
from p2pnode.chain.records import UnbondingEntry
from p2pnode.chain.state import State


def _entries_key(hot: bytes) -> bytes:
    return statekeys.unbonding(hot)


def _due_key(height: int) -> bytes:
    return statekeys.unbonding_due(height)


def entries(state: State, hot: bytes) -> list[UnbondingEntry]:
    """The hotkey's unbonding entries, by coldkey."""
    raw = state.get_raw(_entries_key(hot))
    return [] if raw is None else UnbondingEntry.list_from_state(decode(raw))


def _set_entries(state: State, hot: bytes, kept: list[UnbondingEntry]) -> None:
    if kept:
        state.put(_entries_key(hot), UnbondingEntry.list_to_state(kept))
    else:
        state.delete(_entries_key(hot))


def unbonding_of(state: State, cold: bytes, hot: bytes) -> tuple[int, int] | None:
    """(amount, release height) that `cold` is unbonding from `hot`, if any."""
    for entry in entries(state, hot):
        if entry.coldkey == cold:
            return entry.amount, entry.release_height
    return None


def start(state: State, cold: bytes, hot: bytes, amount: int, height: int) -> int:
    """Queue `amount` (already taken out of stake) for `cold`; returns the release height."""
    release = height + state.param("unbonding_blocks")
    kept = [e for e in entries(state, hot) if e.coldkey != cold]
    previous = unbonding_of(state, cold, hot)
    total = amount + (previous[0] if previous else 0)
    # One entry per coldkey, so ordering by coldkey orders the entries.
    state.put(_entries_key(hot), UnbondingEntry.list_to_state(
        sorted([*kept, UnbondingEntry(cold, total, release)], key=lambda e: e.coldkey)))
    due = state.get(_due_key(release), [])
    if hot not in due:
        state.put(_due_key(release), sorted([*due, hot]))
    state.add_supply("locked", amount)
    return release


def slash(state: State, hot: bytes, permille: int) -> int:
    """Burn `permille` of every amount unbonding from `hot`; returns the amount burned."""
    burned = 0
    updated = []
    for entry in entries(state, hot):
        cut = entry.amount * permille // 1000
        burned += cut
        if entry.amount - cut:
            updated.append(UnbondingEntry(entry.coldkey, entry.amount - cut, entry.release_height))
    if burned:
        _set_entries(state, hot, updated)
        state.add_supply("locked", -burned)
        state.add_supply("burned", burned)
    return burned


def block_step(state: State, ctx: BlockContext) -> None:
    """Pay out every entry due at this height."""
    due = state.get(_due_key(ctx.height))
    if due is None:
        return
    state.delete(_due_key(ctx.height))
    for hot in due:
        kept = []
        for entry in entries(state, hot):
            if entry.release_height == ctx.height:
                state.add_supply("locked", -entry.amount)
                state.credit(entry.coldkey, entry.amount)
            else:
                kept.append(entry)
        _set_entries(state, hot, kept)
