"""The state transition: apply a transaction, apply a block (all of it or none).

Signatures are verified before this point (`protocols.validation`); everything stateful is checked
here. Each transaction applies inside a child overlay of the state, so a rejected one leaves no
trace; `validate_tx` runs the very same code in a throwaway overlay, so admission and execution
can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from p2pnode.chain import consensus, governance, statekeys, subnet_epochs, subnets, unbonding
from p2pnode.chain.context import BlockContext
from p2pnode.chain.errors import BlockInvalid, TxInvalid
from p2pnode.chain.receipts import EpochRecord
from p2pnode.chain.state import State
from p2pnode.chain.types import AddStake, Block, RemoveStake, SetTake, Transfer, Tx, body_root

TxHandler = Callable[[State, Tx, BlockContext], None]

# A neuron's duties cost no fee (a fresh hotkey has no balance); they are bounded by per-hotkey rate
# limits instead: `free_duty_interval` for any fee-free one, and each kind's own (weights rate
# limit, live commits). Paying `min_fee` lifts only the first.
FREE_DUTIES = frozenset({"serve", "set_weights", "commit_weights", "reveal_weights"})

# Protocol versions this build can run. Version 2 (scheduled by governance) burns fees instead of
# paying them to the proposer.
SUPPORTED_PROTOCOL_VERSIONS = frozenset({1, 2})


def _transfer(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: Transfer = tx.body
    if body.amount == 0:
        raise TxInvalid("zero_amount")
    if state.balance(tx.sender) < body.amount:
        raise TxInvalid("insufficient_balance", f"need {body.amount}")
    state.debit(tx.sender, body.amount)
    state.credit(body.to, body.amount)


def _add_stake(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: AddStake = tx.body
    if body.amount < max(1, state.param("min_stake")):
        raise TxInvalid("stake_below_minimum", f"minimum {state.param('min_stake')}")
    if state.hotkey_owner(body.hotkey) is None:
        if body.hotkey == tx.sender:
            raise TxInvalid("unknown_hotkey", "a coldkey cannot stake on itself")
        # Staking to a fresh hotkey claims it for the sender coldkey, with the hotkey's consent.
        subnets.claim_hotkey(state, body.hotkey, tx.sender, body.hotkey_sig)
    if state.hotkey_owner(body.hotkey) == tx.sender:
        consensus.add_candidate(state, body.hotkey)
    if state.balance(tx.sender) < body.amount:
        raise TxInvalid("insufficient_balance", f"need {body.amount}")
    state.debit(tx.sender, body.amount)
    state.change_stake(tx.sender, body.hotkey, body.amount)


def _remove_stake(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: RemoveStake = tx.body
    if body.amount == 0:
        raise TxInvalid("zero_amount")
    if state.stake(tx.sender, body.hotkey) < body.amount:
        raise TxInvalid("insufficient_stake", f"staked {state.stake(tx.sender, body.hotkey)}")
    governance.check_unlocked(state, tx.sender, state.coldkey_stake(tx.sender) - body.amount, ctx.height)
    state.change_stake(tx.sender, body.hotkey, -body.amount)
    # Paid out after the unbonding delay: until then a slashing of the hotkey still reaches it.
    unbonding.start(state, tx.sender, body.hotkey, body.amount, ctx.height)


def _set_take(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: SetTake = tx.body
    if state.hotkey_owner(body.hotkey) != tx.sender:
        raise TxInvalid("not_hotkey_owner")
    if body.take > state.param("max_take"):
        raise TxInvalid("take_too_high", f"max {state.param('max_take')}")
    state.set_hotkey(body.hotkey, tx.sender, body.take)


TX_HANDLERS: dict[str, TxHandler] = {
    "transfer": _transfer,
    "add_stake": _add_stake,
    "remove_stake": _remove_stake,
    "set_take": _set_take,
    **subnets.TX_HANDLERS,
    **governance.TX_HANDLERS,
    **consensus.TX_HANDLERS,
}


def minimum_fee(state: State, kind: str) -> int:
    """The lowest fee a transaction of `kind` may carry: 0 for a neuron's duties, else `min_fee`."""
    return 0 if kind in FREE_DUTIES else state.param("min_fee")


def _take_free_duty_slot(state: State, hotkey: bytes, height: int) -> None:
    """A hotkey sends a duty below the minimum fee at most once per `free_duty_interval` blocks.

    Every duty also needs a registered uid (paid for by a burn), so free transactions per block are
    bounded by the number of uids, and each uid's by this interval and the duty's own limits.
    """
    key = statekeys.free_duty(hotkey)
    last = state.get(key)
    interval = state.param("free_duty_interval")
    if last is not None and height - last < interval:
        raise TxInvalid("free_duty_rate_limited", f"one fee-free transaction per {interval} blocks; pay min_fee")
    state.put(key, height)


def apply_tx(state: State, tx: Tx, ctx: BlockContext) -> None:
    """Apply one (signature-verified) transaction to `state`, or raise TxInvalid leaving it unchanged."""
    if tx.chain != state.chain_id:
        raise TxInvalid("wrong_chain", f"{tx.chain!r} is not {state.chain_id!r}")
    expected = state.nonce(tx.sender)
    if tx.nonce < expected:
        raise TxInvalid("stale_nonce", f"nonce {tx.nonce} < {expected}")
    if tx.nonce > expected:
        raise TxInvalid("future_nonce", f"nonce {tx.nonce} > {expected}")
    free = tx.fee < state.param("min_fee")
    if free and tx.kind not in FREE_DUTIES:
        raise TxInvalid("fee_too_low", f"minimum {state.param('min_fee')}")
    handler = TX_HANDLERS.get(tx.kind)
    if handler is None:
        raise TxInvalid("unsupported_kind", tx.kind)
    balance = state.balance(tx.sender)
    if balance < tx.fee:
        raise TxInvalid("insufficient_balance", f"fee {tx.fee} > balance {balance}")
    overlay = state.child()
    if free:
        _take_free_duty_slot(overlay, tx.sender, ctx.height)
    overlay.set_account(tx.sender, balance - tx.fee, expected + 1)
    if tx.fee:
        if state.param("protocol_version") >= 2:
            overlay.add_supply("burned", tx.fee)
        else:
            overlay.credit(ctx.proposer, tx.fee)
    handler(overlay, tx, ctx)
    overlay.commit_into_parent()


def validate_tx(state: State, tx: Tx, ctx: BlockContext) -> None:
    """Raise TxInvalid if `tx` would not apply on `state` now; never changes `state`."""
    apply_tx(state.child(), tx, ctx)


def context_for(block: Block) -> BlockContext:
    h = block.header
    return BlockContext(height=h.height, slot=h.slot, proposer=h.proposer, timestamp_ms=h.timestamp_ms)


def apply_block_body(state: State, block: Block, supported_versions: frozenset[int] | None = None,
                     epoch_records: list[EpochRecord] | None = None) -> None:
    """Everything of a block but the state-root check (also used to build a block).

    `supported_versions` defaults to this build's `SUPPORTED_PROTOCOL_VERSIONS`. The records of
    subnet epochs the block runs are appended to `epoch_records` when given.
    """
    supported = SUPPORTED_PROTOCOL_VERSIONS if supported_versions is None else supported_versions
    header = block.header
    if header.chain != state.chain_id:
        raise BlockInvalid("wrong_chain", header.chain)
    if header.height != state.height + 1:
        raise BlockInvalid("wrong_height", f"{header.height} after {state.height}")
    active = state.param("protocol_version")
    if header.version != active:
        raise BlockInvalid("wrong_version", f"block version {header.version}, active {active}")
    if header.version not in supported:
        raise BlockInvalid("unsupported_version", f"this node does not support protocol {header.version}")
    if header.tx_root != body_root(block.txs, block.votes):
        raise BlockInvalid("bad_tx_root")
    if len(block.txs) > state.param("max_block_txs"):
        raise BlockInvalid("too_many_txs")
    consensus.check_header(state, header)
    ctx = context_for(block)
    state.set_global("height", header.height)
    for index, stx in enumerate(block.txs):
        try:
            apply_tx(state, stx.tx, ctx)
        except TxInvalid as exc:
            raise BlockInvalid("invalid_tx", f"tx {index}: {exc}") from None
    consensus.process_votes(state, block.votes, ctx)
    subnet_epochs.block_step(state, ctx, epoch_records)
    governance.block_step(state, ctx)
    unbonding.block_step(state, ctx)
    consensus.block_step(state, header, ctx)


def apply_block(state: State, block: Block, supported_versions: frozenset[int] | None = None,
                epoch_records: list[EpochRecord] | None = None) -> None:
    """Apply `block` on `state` (the state after its parent); raise BlockInvalid, keeping nothing.

    `state` must be a fresh top-level overlay over the parent's state: on failure the caller drops it.
    """
    apply_block_body(state, block, supported_versions, epoch_records)
    root = state.root()
    if root != block.header.state_root:
        raise BlockInvalid("bad_state_root", f"computed {root.hex()[:16]}")
