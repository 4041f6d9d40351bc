"""Subnet economics as state transitions: subnets, registration, serving, weights; emission and
epochs (the `block_step` of every block) are in `subnet_epochs`.

One stake token (TAO): the epoch weighs each uid by the total stake on its hotkey (epoch spec §7 with
tao_weight = 0 and no child keys). Emission per block follows the halving schedule; it is split
across subnets by the root subnet's weights (netuid 0, where hotkeys weight subnets) or equally
while root has no weights, and accrues as each subnet's pending emission. At a subnet's epoch the
owner takes `owner_cut`, the Yuma epoch splits the rest into miner incentive and validator
dividends, and a validator's dividends pay its take to its owner and the rest to its stakers pro
rata. Everything is paid as stake and every rao is accounted for (see tests/chain/test_economics.py).
"""

from __future__ import annotations

from typing import Any

from p2pnode.chain import yuma
from p2pnode.chain.context import BlockContext
from p2pnode.chain.encoding import encode, sha256
from p2pnode.chain.errors import TxInvalid
from p2pnode.chain.params import check_hyperparam, default_hyperparams
from p2pnode.chain.records import Neuron, Subnet, WeightCommit
from p2pnode.chain.state import State
from p2pnode.chain.types import (
    CommitWeights,
    CreateSubnet,
    Register,
    RevealWeights,
    Serve,
    SetHyperparameter,
    SetWeights,
    Tx,
)

ROOT_NETUID = 0
MAX_UNREVEALED_COMMITS = 10
SUPPORTED_TASKS = frozenset({"root", "text", "forecast"})
# Pruning on a full subnet (subtensor's ImmuneOwnerUidsLimit and MinNonImmuneUids).
OWNER_IMMUNE_UIDS = 1
MIN_NON_IMMUNE_UIDS = 0


# ---------------------------------------------------------------- records


def new_subnet_record(owner_cold: bytes, owner_hot: bytes, task: str, block: int, lock: int,
                      hyper: dict[str, int] | None = None) -> Subnet:
    hp = default_hyperparams()
    hp.update(hyper or {})
    return Subnet(owner_coldkey=owner_cold, owner_hotkey=owner_hot, task=task, hyperparams=hp, uid_count=0,
                  pending_emission=0, last_epoch_block=block, epoch_index=0, created_block=block, locked=lock)


def new_neuron(hot: bytes, block: int) -> Neuron:
    return Neuron(hotkey=hot, registered_block=block, last_update=block)


def _subnet_or_reject(state: State, netuid: int) -> Subnet:
    sn = state.subnet(netuid)
    if sn is None:
        raise TxInvalid("unknown_subnet", f"netuid {netuid}")
    return sn


def _uid_or_reject(state: State, netuid: int, hot: bytes) -> int:
    uid = state.uid_of(netuid, hot)
    if uid is None:
        raise TxInvalid("not_registered", f"hotkey is not registered on netuid {netuid}")
    return uid


def claim_hotkey(state: State, hot: bytes, cold: bytes, hotkey_sig: bytes | None) -> None:
    """Make `cold` the owner of `hot` unless another coldkey owns it.

    An unowned hotkey is bound only with its own consent: `hotkey_sig`, its signature of
    `hotkey_binding_message(chain, cold)`, verified with the transaction's signature before the
    transition (`protocols.validation`). None is genesis, which is trusted.
    """
    owner = state.hotkey_owner(hot)
    if owner is None:
        if hot == cold:
            raise TxInvalid("hotkey_is_coldkey", "use a separate hotkey")
        if hotkey_sig is not None and len(hotkey_sig) != 64:
            raise TxInvalid("hotkey_not_bound", "a hotkey nobody owns needs its own signature (hotkey_sig)")
        state.set_hotkey(hot, cold, state.param("default_take"))
    elif owner != cold:
        raise TxInvalid("not_hotkey_owner", "the hotkey belongs to another coldkey")


def _append_uid(state: State, netuid: int, sn: Subnet, hot: bytes, block: int) -> int:
    uid = sn.uid_count
    sn.uid_count = uid + 1
    state.set_neuron(netuid, uid, new_neuron(hot, block))
    state.set_uid_of(netuid, hot, uid)
    return uid


def init_genesis(state: State, genesis_subnets: Any) -> None:
    """Create the root subnet (netuid 0) and the subnets listed in genesis (no lock, owner uid 0)."""
    root = new_subnet_record(b"", b"", "root", 0, 0, {"commit_reveal_enabled": 0, "tempo": 100})
    state.set_subnet(ROOT_NETUID, root)
    netuids = [ROOT_NETUID]
    for index, gs in enumerate(genesis_subnets, start=1):
        claim_hotkey(state, gs.owner_hotkey, gs.owner_coldkey, None)
        sn = new_subnet_record(gs.owner_coldkey, gs.owner_hotkey, gs.task, 0, 0, gs.hyperparameters)
        # Stagger epochs so subnets do not all run in the same block (as subtensor does).
        sn.last_epoch_block = -(index % sn.hyperparams["tempo"])
        _append_uid(state, index, sn, gs.owner_hotkey, 0)
        for hot, cold in gs.neurons:
            claim_hotkey(state, hot, cold, None)
            if state.uid_of(index, hot) is not None:
                raise ValueError("a genesis neuron is listed twice")
            _append_uid(state, index, sn, hot, 0)
        state.set_subnet(index, sn)
        netuids.append(index)
    state.set_global("netuids", netuids)


# ---------------------------------------------------------------- subnet creation and settings


def _create_subnet(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: CreateSubnet = tx.body
    if body.task not in SUPPORTED_TASKS - {"root"}:
        raise TxInvalid("unknown_task", f"{body.task!r} is not one of {sorted(SUPPORTED_TASKS - {'root'})}")
    netuids = state.netuids()
    if len(netuids) >= state.param("max_subnets"):
        raise TxInvalid("too_many_subnets")
    lock = state.param("subnet_lock_cost")
    if lock > body.max_lock:
        raise TxInvalid("lock_cost_too_high", f"lock cost is {lock}")
    if state.balance(tx.sender) < lock:
        raise TxInvalid("insufficient_balance", f"lock cost {lock}")
    claim_hotkey(state, body.hotkey, tx.sender, body.hotkey_sig)
    state.debit(tx.sender, lock)
    state.add_supply("locked", lock)
    create_subnet_record(state, tx.sender, body.hotkey, body.task, ctx.height, lock)


def create_subnet_record(state: State, owner_cold: bytes, owner_hot: bytes, task: str, block: int, lock: int) -> int:
    """Create a subnet at the lowest free netuid with the owner hotkey as uid 0; returns the netuid."""
    netuids = state.netuids()
    netuid = next(i for i in range(len(netuids) + 1) if i not in netuids)
    sn = new_subnet_record(owner_cold, owner_hot, task, block, lock)
    _append_uid(state, netuid, sn, owner_hot, block)
    state.set_subnet(netuid, sn)
    state.set_global("netuids", sorted([*netuids, netuid]))
    return netuid


def _set_hyperparameter(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: SetHyperparameter = tx.body
    sn = _subnet_or_reject(state, body.netuid)
    if body.netuid == ROOT_NETUID or sn.owner_coldkey != tx.sender:
        raise TxInvalid("not_subnet_owner")
    problem = check_hyperparam(body.name, body.value, by_owner=True)
    if problem:
        raise TxInvalid("hyperparameter_out_of_bounds", problem)
    hp = dict(sn.hyperparams, **{body.name: body.value})
    if hp["alpha_low"] > hp["alpha_high"]:
        raise TxInvalid("hyperparameter_out_of_bounds", "alpha_low must not exceed alpha_high")
    sn.hyperparams = hp
    state.set_subnet(body.netuid, sn)


# ---------------------------------------------------------------- registration and serving


def pruning_candidate(state: State, netuid: int, sn: Subnet, block: int) -> int | None:
    """The uid a registration on a full subnet replaces: `yuma.select_uid_to_prune` (golden-tested).

    One uid of the owner coldkey is never pruned (the owner hotkey's first); no minimum of non-immune
    uids is kept, so when every other uid is still immune the lowest-emission immune uid goes.
    """
    neurons = state.neurons(netuid, sn.uid_count)
    emission = [nr.emission for nr in neurons]
    registered = [nr.registered_block for nr in neurons]
    owner_cold_uids = [uid for uid, nr in enumerate(neurons) if state.hotkey_owner(nr.hotkey) == sn.owner_coldkey]
    owner_uid = state.uid_of(netuid, sn.owner_hotkey) if sn.owner_hotkey else None
    immune_owner = yuma.immune_owner_uids(owner_cold_uids, registered, owner_uid, OWNER_IMMUNE_UIDS)
    return yuma.select_uid_to_prune(
        emission, registered, block, sn.hyperparams["immunity_period"], MIN_NON_IMMUNE_UIDS,
        owner_immune_uids=immune_owner,
    )


def adjusted_burn(burn: int, registrations: int, hp: dict[str, int]) -> int:
    """The burn after an interval with `registrations` (subtensor's rule, integer form)."""
    target = hp["target_regs_per_interval"]
    raised = burn * (registrations + target) // (2 * target)
    return max(hp["min_burn"], min(hp["max_burn"], raised))


def adjust_burn(state: State, netuid: int, sn: Subnet, height: int) -> None:
    start = sn.created_block if sn.interval_start is None else sn.interval_start
    if height - start < sn.hyperparams["adjustment_interval"]:
        return
    sn.adjusted_burn = adjusted_burn(sn.registration_burn, sn.registrations_this_interval, sn.hyperparams)
    sn.interval_registrations = 0
    sn.interval_start = height
    state.set_subnet(netuid, sn)


def _register(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: Register = tx.body
    sn = _subnet_or_reject(state, body.netuid)
    if state.uid_of(body.netuid, body.hotkey) is not None:
        raise TxInvalid("already_registered")
    burn = sn.registration_burn
    max_regs = sn.hyperparams["max_regs_per_interval"]
    if sn.registrations_this_interval >= max_regs:
        raise TxInvalid("too_many_registrations", f"{max_regs} per interval; wait for the next")
    if burn > body.max_burn:
        raise TxInvalid("burn_too_high", f"registration burns {burn}")
    if state.balance(tx.sender) < burn:
        raise TxInvalid("insufficient_balance", f"registration burns {burn}")
    claim_hotkey(state, body.hotkey, tx.sender, body.hotkey_sig)
    if sn.uid_count < sn.hyperparams["max_allowed_uids"]:
        _append_uid(state, body.netuid, sn, body.hotkey, ctx.height)
    else:
        uid = pruning_candidate(state, body.netuid, sn, ctx.height)
        if uid is None:
            raise TxInvalid("subnet_full", "every uid is owner-immune")
        _replace_uid(state, body.netuid, sn, uid, body.hotkey, ctx.height)
    state.debit(tx.sender, burn)
    state.add_supply("burned", burn)
    sn.interval_registrations = sn.registrations_this_interval + 1
    state.set_subnet(body.netuid, sn)


def _replace_uid(state: State, netuid: int, sn: Subnet, uid: int, hot: bytes, block: int) -> None:
    old = state.neuron(netuid, uid)
    assert old is not None
    state.set_uid_of(netuid, old.hotkey, None)
    state.set_neuron(netuid, uid, new_neuron(hot, block))
    state.set_uid_of(netuid, hot, uid)
    # Every other row's entry pointing at the replaced uid is zeroed (kept), as subtensor does.
    for other in range(sn.uid_count):
        if other == uid:
            continue
        neuron = state.neuron(netuid, other)
        assert neuron is not None
        changed = any(u == uid and v != 0 for u, v in neuron.weights)
        bonds = tuple(b for b in neuron.bonds if b[0] != uid)
        if changed or len(bonds) != len(neuron.bonds):
            neuron.weights = tuple((u, 0) if u == uid else (u, v) for u, v in neuron.weights)
            neuron.bonds = bonds
            state.set_neuron(netuid, other, neuron)


def _serve(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: Serve = tx.body
    _subnet_or_reject(state, body.netuid)
    uid = _uid_or_reject(state, body.netuid, tx.sender)
    if not body.peer_id:
        raise TxInvalid("invalid_peer_id", "empty")
    neuron = state.neuron(body.netuid, uid)
    assert neuron is not None
    neuron.peer_id = body.peer_id
    neuron.model = body.model
    state.set_neuron(body.netuid, uid, neuron)


# ---------------------------------------------------------------- weights


def _checked_weights(state: State, netuid: int, sn: Subnet, uid: int, hot: bytes,
                     uids: tuple[int, ...], values: tuple[int, ...], version_key: int) -> tuple[tuple[int, int], ...]:
    """epoch spec §6.1 checks (rate limit excluded); returns the canonical max-upscaled row."""
    hp = sn.hyperparams
    if version_key < hp["weights_version_key"]:
        raise TxInvalid("version_key_too_low", f"minimum {hp['weights_version_key']}")
    n = sn.uid_count
    # Root weights point at netuids; subnet weights at uids.
    limit = max(state.netuids()) + 1 if netuid == ROOT_NETUID else n
    if len(uids) > limit:
        raise TxInvalid("too_many_weights", f"{len(uids)} > {limit} uids")
    stake = state.total_stake(hot)
    is_owner = hot == sn.owner_hotkey
    if not is_owner and stake < state.param("stake_threshold"):
        raise TxInvalid("stake_below_threshold")
    self_only = len(uids) == 1 and uids[0] == uid
    neuron = state.neuron(netuid, uid)
    assert neuron is not None
    if netuid != ROOT_NETUID and not (neuron.validator_permit or self_only or is_owner):
        raise TxInvalid("no_validator_permit")
    try:
        pairs = yuma.canonicalise_weights(uids, values, n=limit)
    except yuma.InvalidWeights as exc:
        raise TxInvalid(exc.reason, exc.detail) from None
    if not self_only and len(pairs) < min(hp["min_allowed_weights"], n):
        raise TxInvalid("too_few_weights", f"minimum {min(hp['min_allowed_weights'], n)}")
    upscaled = yuma.max_upscale_weights([v for _, v in pairs])
    row = [(u, v) for (u, _), v in zip(pairs, upscaled, strict=True)]
    if hp["max_weight_limit"] < 65535 and not self_only:
        total = sum(v for _, v in row)
        if total and any(v * 65535 > hp["max_weight_limit"] * total for _, v in row):
            raise TxInvalid("weight_exceeds_max_limit", f"limit {hp['max_weight_limit']}")
    return tuple(row)


def _set_weights(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: SetWeights = tx.body
    sn = _subnet_or_reject(state, body.netuid)
    uid = _uid_or_reject(state, body.netuid, tx.sender)
    if sn.hyperparams["commit_reveal_enabled"]:
        raise TxInvalid("commit_reveal_enabled", "commit then reveal weights on this subnet")
    neuron = state.neuron(body.netuid, uid)
    assert neuron is not None
    limit = sn.hyperparams["weights_rate_limit"]
    if neuron.weights_set_block and ctx.height - neuron.weights_set_block < limit:
        raise TxInvalid("weights_rate_limited", f"{limit} blocks between weight sets")
    neuron.weights = _checked_weights(state, body.netuid, sn, uid, tx.sender, body.uids, body.values, body.version_key)
    neuron.last_update = ctx.height
    neuron.weights_set_block = ctx.height
    state.set_neuron(body.netuid, uid, neuron)


def commit_hash(hotkey: bytes, netuid: int, uids: list[int] | tuple[int, ...], values: list[int] | tuple[int, ...],
                salt: bytes, version_key: int) -> bytes:
    """The commit of a weights reveal: sha256 over the canonical encoding of all its parts."""
    return sha256(b"p2pnode/weights-commit/v1\x00" + encode([hotkey, netuid, list(uids), list(values), salt, version_key]))


def live_commits(sn: Subnet, commits: list[WeightCommit]) -> list[WeightCommit]:
    """Drop expired commits: those whose reveal epoch has passed."""
    current, period = sn.epoch_index, sn.hyperparams["reveal_period_epochs"]
    return [c for c in commits if current <= c.epoch + period]


def _commit_weights(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: CommitWeights = tx.body
    sn = _subnet_or_reject(state, body.netuid)
    uid = _uid_or_reject(state, body.netuid, tx.sender)
    if not sn.hyperparams["commit_reveal_enabled"]:
        raise TxInvalid("commit_reveal_disabled", "set weights directly on this subnet")
    commits = live_commits(sn, state.weight_commits(body.netuid, tx.sender))
    rate_limit = sn.hyperparams["weights_rate_limit"]
    if commits and ctx.height - commits[-1].block < rate_limit:
        raise TxInvalid("weights_rate_limited", f"{rate_limit} blocks between commits")
    if len(commits) >= MAX_UNREVEALED_COMMITS:
        raise TxInvalid("too_many_commits", f"at most {MAX_UNREVEALED_COMMITS} unrevealed")
    commits.append(WeightCommit(body.commit_hash, sn.epoch_index, ctx.height))
    state.set_weight_commits(body.netuid, tx.sender, commits)
    neuron = state.neuron(body.netuid, uid)
    assert neuron is not None
    neuron.last_update = ctx.height  # committing keeps a validator active (epoch spec §6.2)
    state.set_neuron(body.netuid, uid, neuron)


def _reveal_weights(state: State, tx: Tx, ctx: BlockContext) -> None:
    body: RevealWeights = tx.body
    sn = _subnet_or_reject(state, body.netuid)
    uid = _uid_or_reject(state, body.netuid, tx.sender)
    if not sn.hyperparams["commit_reveal_enabled"]:
        raise TxInvalid("commit_reveal_disabled")
    commits = live_commits(sn, state.weight_commits(body.netuid, tx.sender))
    digest = commit_hash(tx.sender, body.netuid, body.uids, body.values, body.salt, body.version_key)
    index = next((i for i, c in enumerate(commits) if c.commit_hash == digest), None)
    if index is None:
        raise TxInvalid("no_matching_commit", "no live commit has this hash")
    due = commits[index].epoch + sn.hyperparams["reveal_period_epochs"]
    if sn.epoch_index < due:
        raise TxInvalid("reveal_too_early", f"reveal in epoch {due}, now {sn.epoch_index}")
    neuron = state.neuron(body.netuid, uid)
    assert neuron is not None
    neuron.weights = _checked_weights(state, body.netuid, sn, uid, tx.sender, body.uids, body.values, body.version_key)
    state.set_neuron(body.netuid, uid, neuron)
    # Later commits stay; an empty list is deleted.
    state.set_weight_commits(body.netuid, tx.sender, commits[index + 1 :])


TX_HANDLERS = {
    "create_subnet": _create_subnet,
    "set_hyperparameter": _set_hyperparameter,
    "register": _register,
    "serve": _serve,
    "set_weights": _set_weights,
    "commit_weights": _commit_weights,
    "reveal_weights": _reveal_weights,
}
