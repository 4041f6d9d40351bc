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
from p2pnode.chain.state import State


def _entries_key(hot: bytes) -> bytes:
    return statekeys.unbonding(hot)


def _due_key(height: int) -> bytes:
    return statekeys.unbonding_due(height)


def entries(state: State, hot: bytes) -> list[list[object]]:
    """The hotkey's unbonding entries: [coldkey, amount, release_height], by coldkey."""
    return state.get(_entries_key(hot), [])


def unbonding_of(state: State, cold: bytes, hot: bytes) -> tuple[int, int] | None:
    """(amount, release height) that `cold` is unbonding from `hot`, if any."""
    for entry_cold, amount, release in entries(state, hot):
        if entry_cold == cold:
            return amount, release  # type: ignore[return-value]
    return None


def start(state: State, cold: bytes, hot: bytes, amount: int, height: int) -> int:
    """Queue `amount` (already taken out of stake) for `cold`; returns the release height."""
    release = height + state.param("unbonding_blocks")
    kept = [e for e in entries(state, hot) if e[0] != cold]
    previous = unbonding_of(state, cold, hot)
    total = amount + (previous[0] if previous else 0)
    state.put(_entries_key(hot), sorted([*kept, [cold, total, release]]))
    due = state.get(_due_key(release), [])
    if hot not in due:
        state.put(_due_key(release), sorted([*due, hot]))
    state.add_supply("locked", amount)
    return release


def slash(state: State, hot: bytes, permille: int) -> int:
    """Burn `permille` of every amount unbonding from `hot`; returns the amount burned."""
    burned = 0
    updated = []
    for cold, amount, release in entries(state, hot):
        cut = amount * permille // 1000  # type: ignore[operator]
        burned += cut
        if amount - cut:  # type: ignore[operator]
            updated.append([cold, amount - cut, release])  # type: ignore[operator]
    if burned:
        state.put(_entries_key(hot), updated) if updated else state.delete(_entries_key(hot))
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
        for cold, amount, release in entries(state, hot):
            if release == ctx.height:
                state.add_supply("locked", -amount)  # type: ignore[arg-type]
                state.credit(cold, amount)  # type: ignore[arg-type]
            else:
                kept.append([cold, amount, release])
        if kept:
            state.put(_entries_key(hot), kept)
        else:
            state.delete(_entries_key(hot))
