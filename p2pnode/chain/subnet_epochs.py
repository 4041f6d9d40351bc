"""Emission and subnet epochs as state transitions: per-block emission split across subnets, and
at each subnet's epoch the owner cut, the Yuma epoch and the payment of incentive and dividends.

The economics are described in `subnets` (which owns the subnet and neuron records this reads);
`block_step` is the per-block entry point the transition calls.
"""

from __future__ import annotations

from p2pnode.chain import receipts, subnets, yuma
from p2pnode.chain.context import BlockContext
from p2pnode.chain.emission import block_emission
from p2pnode.chain.records import Subnet
from p2pnode.chain.state import State


def _stake_to(state: State, hot: bytes, cold: bytes, amount: int) -> None:
    if amount:
        state.change_stake(cold, hot, amount)
        state.add_supply("emitted", amount)


def root_shares(state: State, netuids: list[int]) -> list[int]:
    """Each subnet's share of block emission in parts of 2^32, from root weights weighted by stake.

    A subnet's share is the stake-weighted mean of the root validators' normalised weights on it;
    with no root weights every subnet gets an equal share.
    """
    root = state.subnet(subnets.ROOT_NETUID)
    assert root is not None
    totals = {netuid: 0 for netuid in netuids}
    weight_stake = 0
    for neuron in state.neurons(subnets.ROOT_NETUID, root.uid_count):
        row = [(u, v) for u, v in neuron.weights if u in totals and v]
        row_sum = sum(v for _, v in row)
        stake = state.total_stake(neuron.hotkey)
        if not row_sum or not stake:
            continue
        weight_stake += stake
        for u, v in row:
            totals[u] += stake * v * (1 << 32) // row_sum
    if weight_stake == 0:
        return [(1 << 32) // len(netuids)] * len(netuids)
    return [totals[netuid] // weight_stake for netuid in netuids]


def _distribute_block_emission(state: State, ctx: BlockContext) -> None:
    netuids = [n for n in state.netuids() if n != subnets.ROOT_NETUID]
    if not netuids:
        return
    supply = state.supply()
    issued = supply.genesis + supply.emitted + state.global_value("pending_total", 0)
    amount = block_emission(issued, state.param("block_emission"), state.param("halving_supply"))
    if amount == 0:
        return
    shares = root_shares(state, netuids)
    paid = [amount * s >> 32 for s in shares]
    # The rounding dust goes to the subnet with the largest share (lowest netuid on ties).
    paid[max(range(len(netuids)), key=lambda i: (shares[i], -netuids[i]))] += amount - sum(paid)
    for netuid, part in zip(netuids, paid, strict=True):
        if part:
            sn = state.subnet(netuid)
            assert sn is not None
            sn.pending_emission += part
            state.set_subnet(netuid, sn)
    state.set_global("pending_total", state.global_value("pending_total", 0) + amount)


def epoch_input(state: State, netuid: int, sn: Subnet, block: int, amount: int) -> yuma.EpochInput:
    n = sn.uid_count
    neurons = state.neurons(netuid, n)
    owner_uid = state.uid_of(netuid, sn.owner_hotkey) if sn.owner_hotkey else None
    hp = sn.hyperparams
    commit_blocks = None
    if hp["commit_reveal_enabled"]:
        commit_blocks = []
        for nr in neurons:
            live = subnets.live_commits(sn, state.weight_commits(netuid, nr.hotkey))
            commit_blocks.append(min((c.block for c in live), default=None))
    return yuma.EpochInput(
        n=n,
        current_block=block,
        tempo=hp["tempo"],
        last_mech_step_block=max(sn.last_epoch_block, 0),
        commit_blocks=commit_blocks,
        activity_cutoff=hp["activity_cutoff"],
        last_update=[nr.last_update for nr in neurons],
        block_at_registration=[nr.registered_block for nr in neurons],
        stake=[state.total_stake(nr.hotkey) for nr in neurons],
        stake_threshold=state.param("stake_threshold"),
        owner_uid=owner_uid,
        validator_permit=[nr.validator_permit for nr in neurons],
        max_allowed_validators=hp["max_allowed_validators"],
        weights=[list(nr.weights) for nr in neurons],
        bonds=[list(nr.bonds) for nr in neurons],
        kappa=hp["kappa"],
        bonds_penalty=hp["bonds_penalty"],
        bonds_moving_average=hp["bonds_moving_average"],
        yuma3_on=bool(hp["yuma3_on"]),
        liquid_alpha_on=bool(hp["liquid_alpha_on"]),
        alpha_low=hp["alpha_low"],
        alpha_high=hp["alpha_high"],
        alpha_sigmoid_steepness=hp["alpha_sigmoid_steepness"],
        emission=amount,
    )


def _pay_dividend(state: State, hot: bytes, amount: int) -> None:
    """A validator's dividend: its take to the owner coldkey, the rest to its stakers pro rata."""
    owner = state.hotkey_owner(hot)
    assert owner is not None
    take = amount * state.hotkey_take(hot) // 65535
    rest = amount - take
    stakers = state.stakers(hot)
    total = state.total_stake(hot)
    shares: list[tuple[bytes, int]] = []
    if total and rest:
        shares = [(cold, rest * state.stake(cold, hot) // total) for cold in stakers]
    paid_out = sum(s for _, s in shares)
    for cold, share in shares:
        _stake_to(state, hot, cold, share)
    _stake_to(state, hot, owner, take + rest - paid_out)  # the take, plus the rounding dust


def run_subnet_epoch(state: State, netuid: int, block: int,
                     records: list[receipts.EpochRecord] | None = None) -> None:
    """Run the subnet's epoch and pay it out; commit its receipt, and append its record to
    `records` when given (the caller keeps the inputs for `p2pnode explain`)."""
    sn = state.subnet(netuid)
    assert sn is not None
    pending = sn.pending_emission
    sn.pending_emission = 0
    state.set_global("pending_total", state.global_value("pending_total", 0) - pending)
    if sn.uid_count == 0:
        # Nobody to pay: the pending emission is not minted.
        sn.last_epoch_block = block
        sn.epoch_index += 1
        state.set_subnet(netuid, sn)
        return
    owner_cut = pending * state.param("owner_cut") // 65535 if sn.owner_hotkey else 0
    amount = pending - owner_cut
    inp = epoch_input(state, netuid, sn, block, amount)
    out = yuma.run_epoch(inp)
    ran_epoch = sn.epoch_index
    hotkeys: list[bytes] = []
    sn.last_epoch_block = block
    sn.epoch_index += 1
    owner_hotkeys = {sn.owner_hotkey}
    paid = 0
    for uid in range(sn.uid_count):
        neuron = state.neuron(netuid, uid)
        assert neuron is not None
        incentive_rao, dividend_rao = out.server_emission[uid], out.validator_emission[uid]
        neuron.consensus = out.consensus[uid]
        neuron.incentive = out.incentive[uid]
        neuron.dividends = out.dividends[uid]
        neuron.trust = out.validator_trust[uid]
        neuron.validator_permit = out.validator_permit[uid]
        neuron.bonds = tuple((u, v) for u, v in out.bonds[uid])
        neuron.emission = incentive_rao + dividend_rao
        neuron.active = out.active[uid]
        state.set_neuron(netuid, uid, neuron)
        hot = neuron.hotkey
        hotkeys.append(hot)
        if incentive_rao:
            if hot in owner_hotkeys:
                state.add_supply("burned", incentive_rao)  # the owner's miner incentive is burned
                state.add_supply("emitted", incentive_rao)
            else:
                owner = state.hotkey_owner(hot)
                assert owner is not None
                _stake_to(state, hot, owner, incentive_rao)
        if dividend_rao:
            _pay_dividend(state, hot, dividend_rao)
        paid += incentive_rao + dividend_rao
    # The owner cut and the epoch's rounding dust go to the owner (staked on the owner hotkey).
    if sn.owner_hotkey:
        _stake_to(state, sn.owner_hotkey, sn.owner_coldkey, owner_cut + amount - paid)
    state.set_subnet(netuid, sn)
    record = receipts.EpochRecord(netuid, ran_epoch, block, pending, owner_cut, tuple(hotkeys), inp, out)
    receipts.commit_receipt(state, record)
    if records is not None:
        records.append(record)


def block_step(state: State, ctx: BlockContext, records: list[receipts.EpochRecord] | None = None) -> None:
    """Per-block emission, then the epochs of subnets that are due (at most 2 per block); the
    records of the epochs that ran are appended to `records` when given."""
    _distribute_block_emission(state, ctx)
    ran = 0
    for netuid in state.netuids():
        sn = state.subnet(netuid)
        assert sn is not None
        if netuid == subnets.ROOT_NETUID:
            continue
        subnets.adjust_burn(state, netuid, sn, ctx.height)
        if ctx.height - sn.last_epoch_block >= sn.hyperparams["tempo"] and ran < 2:
            run_subnet_epoch(state, netuid, ctx.height, records)
            ran += 1
