"""Stake-weighted governance: proposals, votes, tally and enactment, all in the state root.

Vote weight: a coldkey's total stake at the block of its (latest) vote. That stake is then locked
(remove_stake refuses to go below it) until the proposal's voting ends, so stake moved during a
vote can never count twice: whatever a vote counted stays where it was until the tally.

Lifecycle: `voting` for `voting_period` blocks from the proposal's block; at the end the tally
decides `no_quorum` (deposit burned), `rejected` or `passed` (deposit returned either way); a
passed proposal is enacted `enactment_delay` blocks later (`enacted`, or `failed` with a reason
if it can no longer apply, e.g. a parameter now out of bounds).
"""

from __future__ import annotations

from p2pnode.chain import statekeys, subnets
from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import decode
from p2pnode.chain.errors import TxInvalid
from p2pnode.chain.params import GENESIS_ONLY_PARAMS, check_param
from p2pnode.chain.records import Proposal, ProposalVote, VoteLock
from p2pnode.chain.state import State
from p2pnode.chain.types import GovVote, Propose, Tx


def _key(proposal_id: int) -> bytes:
    return statekeys.proposal(proposal_id)


def proposal(state: State, proposal_id: int) -> Proposal | None:
    raw = state.get_raw(_key(proposal_id))
    return None if raw is None else Proposal.from_state(decode(raw))


def _put_proposal(state: State, prop: Proposal) -> None:
    state.put(_key(prop.id), prop.to_state())


def proposal_ids(state: State) -> list[int]:
    return list(range(1, state.global_value("next_proposal", 1)))


def vote_of(state: State, proposal_id: int, cold: bytes) -> ProposalVote | None:
    raw = state.get_raw(statekeys.vote(proposal_id, cold))
    return None if raw is None else ProposalVote.from_state(decode(raw))


def _vote_lock(state: State, cold: bytes) -> VoteLock | None:
    raw = state.get_raw(statekeys.vote_lock(cold))
    return None if raw is None else VoteLock.from_state(decode(raw))


def locked_stake(state: State, cold: bytes, height: int) -> int:
    """Stake of `cold` that its votes on still-open proposals counted (cannot be removed)."""
    lock = _vote_lock(state, cold)
    if lock is None or lock.until_height < height:
        return 0
    return lock.amount


def _validate_proposal(state: State, body: Propose, height: int) -> None:
    empty = body.param == "" and body.value == 0 and body.owner == b"" and body.task == ""
    if body.action == "set_param":
        if body.param == "protocol_version":
            raise TxInvalid("invalid_proposal", "protocol_version changes only through an upgrade proposal")
        if body.param in GENESIS_ONLY_PARAMS:
            raise TxInvalid("immutable_param", f"{body.param} is fixed at genesis (slots are counted from genesis with it)")
        problem = check_param(body.param, body.value)
        if problem:
            raise TxInvalid("param_out_of_bounds", problem)
        if body.owner or body.task or body.version or body.activation_height:
            raise TxInvalid("invalid_proposal", "set_param uses only param and value")
    elif body.action == "create_subnet":
        if len(body.owner) != 32 or state.hotkey_owner(body.owner) is None:
            raise TxInvalid("invalid_proposal", "owner must be a hotkey that already belongs to a coldkey")
        if body.task not in subnets.SUPPORTED_TASKS - {"root"}:
            raise TxInvalid("unknown_task", body.task)
        if body.param or body.value or body.version or body.activation_height:
            raise TxInvalid("invalid_proposal", "create_subnet uses only owner and task")
    elif body.action == "upgrade":
        current = state.param("protocol_version")
        if body.version <= current:
            raise TxInvalid("invalid_proposal", f"version must be above the active {current}")
        earliest = height + state.param("voting_period") + state.param("enactment_delay") + 1
        if body.activation_height < earliest:
            raise TxInvalid("invalid_proposal", f"activation height must be at least {earliest}")
        if not empty:
            raise TxInvalid("invalid_proposal", "upgrade uses only version and activation_height")
    else:  # signal
        if not body.text.strip():
            raise TxInvalid("invalid_proposal", "a signal needs text")
        if not empty or body.version or body.activation_height:
            raise TxInvalid("invalid_proposal", "a signal uses only text")


def _propose(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: Propose = tx.body
    _validate_proposal(state, body, ctx.height)
    deposit = state.param("proposal_deposit")
    if state.balance(tx.sender) < deposit:
        raise TxInvalid("insufficient_balance", f"deposit {deposit}")
    state.debit(tx.sender, deposit)
    state.add_supply("locked", deposit)
    proposal_id = state.global_value("next_proposal", 1)
    state.set_global("next_proposal", proposal_id + 1)
    end = ctx.height + state.param("voting_period")
    _put_proposal(state, Proposal(
        id=proposal_id, proposer=tx.sender, action=body.action, param=body.param, value=body.value,
        owner=body.owner, task=body.task, version=body.version, activation_height=body.activation_height,
        text=body.text, deposit=deposit, start=ctx.height, end=end,
        enact_at=end + state.param("enactment_delay"), status="voting",
    ))
    state.set_global("open_proposals", [*state.global_value("open_proposals", []), proposal_id])


def _vote(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: GovVote = tx.body
    prop = proposal(state, body.proposal)
    if prop is None:
        raise TxInvalid("unknown_proposal", f"#{body.proposal}")
    if prop.status != "voting" or ctx.height > prop.end:
        raise TxInvalid("voting_closed", f"#{body.proposal} is {prop.status}")
    weight = state.coldkey_stake(tx.sender)
    if weight == 0:
        raise TxInvalid("no_stake", "only stake votes")
    previous = vote_of(state, body.proposal, tx.sender)
    if previous is not None:  # a later vote replaces the earlier one
        prop.add_to_tally(previous.choice, -previous.weight)
    else:
        prop.voters += 1
    prop.add_to_tally(body.choice, weight)
    state.put(statekeys.vote(body.proposal, tx.sender), ProposalVote(body.choice, weight).to_state())
    _put_proposal(state, prop)
    lock = _vote_lock(state, tx.sender)
    amount, until = (0, 0) if lock is None or lock.until_height < ctx.height else (lock.amount, lock.until_height)
    state.put(statekeys.vote_lock(tx.sender), VoteLock(max(amount, weight), max(until, prop.end)).to_state())


def check_unlocked(state: State, cold: bytes, remaining_stake: int, height: int) -> None:
    """Raise if removing stake would leave `cold` with less than its votes counted."""
    locked = locked_stake(state, cold, height)
    if remaining_stake < locked:
        raise TxInvalid("stake_locked_by_vote", f"{locked} rao stays staked until the vote ends")


def _tally(state: State, prop: Proposal) -> None:
    total = state.total_staked()
    turnout = prop.yes + prop.no + prop.abstain
    if total == 0 or turnout * 1000 < state.param("quorum_permille") * total:
        prop.status = "no_quorum"
        state.add_supply("locked", -prop.deposit)
        state.add_supply("burned", prop.deposit)
        return
    state.add_supply("locked", -prop.deposit)
    state.credit(prop.proposer, prop.deposit)
    decided = prop.yes + prop.no
    passed = decided > 0 and prop.yes * 1000 > state.param("pass_permille") * decided
    prop.status = "passed" if passed else "rejected"


def _enact(state: State, prop: Proposal, ctx: BlockContext) -> None:
    action = prop.action
    if action == "set_param":
        problem = check_param(prop.param, prop.value)
        if prop.param in GENESIS_ONLY_PARAMS:
            problem = f"{prop.param} is fixed at genesis"
        if problem:
            prop.status, prop.result = "failed", problem
            return
        state.set_global("params", dict(state.params, **{prop.param: prop.value}))
    elif action == "create_subnet":
        owner_cold = state.hotkey_owner(prop.owner)
        if owner_cold is None or len(state.netuids()) >= state.param("max_subnets"):
            prop.status, prop.result = "failed", "owner unknown or no free netuid"
            return
        prop.result = f"netuid {subnets.create_subnet_record(state, owner_cold, prop.owner, prop.task, ctx.height, 0)}"
    elif action == "upgrade":
        upgrades = state.global_value("upgrades", [])
        state.set_global("upgrades", sorted([*upgrades, [prop.activation_height, prop.version]]))
    prop.status = "enacted"


def _activate_upgrades(state: State, ctx: BlockContext) -> None:
    """The block before an activation height switches the version the next block must carry."""
    upgrades = state.global_value("upgrades", [])
    due = [u for u in upgrades if u[0] == ctx.height + 1]
    if due:
        version = due[-1][1]
        params = dict(state.params, protocol_version=version)
        state.set_global("params", params)
        state.set_global("upgrades", [u for u in upgrades if u[0] != ctx.height + 1])


def block_step(state: State, ctx: BlockContext) -> None:
    """Tally proposals whose voting ended, enact those whose delay passed, activate upgrades."""
    open_ids = state.global_value("open_proposals", [])
    if open_ids:
        still_open = []
        for proposal_id in open_ids:
            prop = proposal(state, proposal_id)
            assert prop is not None
            if prop.status == "voting" and ctx.height >= prop.end:
                _tally(state, prop)
            if prop.status == "passed" and ctx.height >= prop.enact_at:
                _enact(state, prop, ctx)
            _put_proposal(state, prop)
            if prop.status in ("voting", "passed"):
                still_open.append(proposal_id)
        state.set_global("open_proposals", still_open)
    _activate_upgrades(state, ctx)


def pending_upgrade(state: State) -> list[int] | None:
    """[activation_height, version] of the next scheduled upgrade, if any."""
    upgrades = state.global_value("upgrades", [])
    return upgrades[0] if upgrades else None


TX_HANDLERS = {"propose": _propose, "vote": _vote}
