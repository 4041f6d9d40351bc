"""Global chain parameters and subnet hyperparameters: defaults and the bounds declared in code.

Genesis may override defaults; governance may change a global parameter only within its bounds;
a subnet owner may set a subnet hyperparameter only within its bounds (and only the ones marked
owner-settable).
"""

from __future__ import annotations

from dataclasses import dataclass

TAO = 1_000_000_000  # rao per TAO
U16_MAX = 65535


@dataclass(frozen=True)
class Bound:
    default: int
    low: int
    high: int
    doc: str


GLOBAL_PARAMS: dict[str, Bound] = {
    # block production
    "slot_ms": Bound(1_000, 100, 60_000, "milliseconds per slot (genesis only)"),
    "epoch_slots": Bound(8, 2, 1_024, "slots per finality epoch, checkpoint interval (genesis only)"),
    "max_block_validators": Bound(16, 1, 256, "size of the block-validator set (top K by total stake)"),
    "min_validator_stake": Bound(1 * TAO, 0, 10**17, "minimum self-stake of a block validator (rao)"),
    "max_block_txs": Bound(2_048, 1, 4_096, "transactions per block"),
    "max_block_bytes": Bound(1 << 20, 1 << 12, 4 << 20, "encoded block size"),
    "min_fee": Bound(1_000, 0, 10**12, "minimum fee per transaction (rao)"),
    "free_duty_interval": Bound(1, 1, 100_000, "blocks between a hotkey's fee-free duties (serve, weights)"),
    "slash_permille": Bound(100, 0, 1_000, "share of an offender's stake burned per slashing"),
    # The bounds keep every unbonding delay (in blocks, so at least as many slots) longer than the
    # oldest evidence accepted: removed stake is still there to slash when evidence lands.
    "evidence_max_age_slots": Bound(256, 16, 1_024, "slashing evidence about older slots is refused"),
    "unbonding_blocks": Bound(2_048, 1_025, 1_000_000, "blocks removed stake waits before it is paid"),
    # emission
    "block_emission": Bound(1 * TAO, 0, 100 * TAO, "rao emitted per block before halvings"),
    "halving_supply": Bound(21_000_000 * TAO, 1, 10**18, "supply cap that sets the halving points"),
    # subnets
    "subnet_lock_cost": Bound(100 * TAO, 0, 10**17, "rao locked to create a subnet"),
    "max_subnets": Bound(32, 1, 1_024, "number of subnets, root included"),
    "owner_cut": Bound(11_796, 0, U16_MAX, "subnet owner's share of subnet emission (u16)"),
    "default_take": Bound(11_796, 0, 11_796, "delegate take of a new hotkey (u16)"),
    "max_take": Bound(11_796, 0, U16_MAX, "highest delegate take a hotkey may set (u16)"),
    "min_stake": Bound(2_000_000, 0, 10**15, "smallest add_stake amount (rao)"),
    "stake_threshold": Bound(0, 0, 10**17, "stake needed for weights and permits (rao)"),
    # governance
    "proposal_deposit": Bound(10 * TAO, 0, 10**17, "rao deposited with a proposal"),
    "voting_period": Bound(100, 2, 1_000_000, "blocks a proposal is open for votes"),
    "enactment_delay": Bound(10, 0, 1_000_000, "blocks between the end of voting and enactment"),
    "quorum_permille": Bound(300, 1, 1_000, "share of total stake that must vote (yes+no+abstain)"),
    "pass_permille": Bound(500, 1, 1_000, "share of yes among yes+no needed to pass (strictly more)"),
    "protocol_version": Bound(1, 1, 2**32 - 1, "protocol version active now (governance upgrades it)"),
}

# Set by genesis and never changed: slot s starts at genesis_time_ms + s * slot_ms and its epoch is
# s // epoch_slots, counted from genesis; a new value would move every past slot and epoch, and a
# node restarted after the change would compute the clock's slot wrongly and stop producing.
GENESIS_ONLY_PARAMS = frozenset({"slot_ms", "epoch_slots"})

# Subnet hyperparameters (epoch spec §5, new-subnet values); `owner` marks the owner-settable ones.
@dataclass(frozen=True)
class HyperBound(Bound):
    owner: bool = True


SUBNET_HYPERPARAMS: dict[str, HyperBound] = {
    "tempo": HyperBound(360, 2, 50_400, "blocks between epochs"),
    "kappa": HyperBound(32_767, 0, U16_MAX, "consensus quantile (u16)", owner=False),
    "bonds_penalty": HyperBound(65_535, 0, U16_MAX, "bonds penalty (u16)"),
    "bonds_moving_average": HyperBound(900_000, 0, 975_000, "bonds EMA, per million"),
    "yuma3_on": HyperBound(1, 0, 1, "1: Yuma 3 bonds; 0: original Yuma"),
    "liquid_alpha_on": HyperBound(0, 0, 1, "liquid alpha for bonds"),
    "alpha_low": HyperBound(45_875, 1_638, U16_MAX, "liquid alpha low (u16)"),
    "alpha_high": HyperBound(58_982, 1_638, U16_MAX, "liquid alpha high (u16)"),
    "alpha_sigmoid_steepness": HyperBound(1_000, 0, 32_767, "liquid alpha steepness"),
    "max_allowed_uids": HyperBound(256, 1, 4_096, "uids on the subnet"),
    "max_allowed_validators": HyperBound(64, 1, 4_096, "validator permits"),
    "min_allowed_weights": HyperBound(1, 0, 4_096, "minimum weights per row"),
    "max_weight_limit": HyperBound(65_535, 0, U16_MAX, "largest normalised weight (u16)"),
    "immunity_period": HyperBound(5_000, 0, 100_000, "blocks a new uid cannot be pruned"),
    "weights_rate_limit": HyperBound(100, 0, 100_000, "blocks between weight sets / commits"),
    "weights_version_key": HyperBound(0, 0, 2**64 - 1, "minimum version key"),
    "activity_cutoff": HyperBound(5_000, 1, 100_000, "blocks without weights before a uid is inactive"),
    "commit_reveal_enabled": HyperBound(1, 0, 1, "weights must be committed then revealed"),
    "reveal_period_epochs": HyperBound(1, 1, 100, "epochs between commit and reveal"),
    "registration_burn": HyperBound(1 * TAO, 500_000, 100 * TAO, "initial registration burn (rao)", owner=False),
    # Dynamic burn: every `adjustment_interval` blocks the burn becomes
    # burn * (registrations + target) / (2 * target), within [min_burn, max_burn]: above the target
    # it rises, without registrations it halves. At most `max_regs_per_interval` per interval.
    "adjustment_interval": HyperBound(100, 1, 50_400, "blocks between registration burn adjustments"),
    "target_regs_per_interval": HyperBound(2, 1, 4_096, "registrations per interval that keep the burn"),
    "max_regs_per_interval": HyperBound(6, 1, 4_096, "registrations accepted per interval"),
    "min_burn": HyperBound(500_000, 500_000, 100 * TAO, "lowest registration burn (rao)", owner=False),
    "max_burn": HyperBound(100 * TAO, 500_000, 10_000 * TAO, "highest registration burn (rao)", owner=False),
}


def default_params() -> dict[str, int]:
    return {name: b.default for name, b in GLOBAL_PARAMS.items()}


def default_hyperparams() -> dict[str, int]:
    return {name: b.default for name, b in SUBNET_HYPERPARAMS.items()}


def check_param(name: str, value: int) -> str | None:
    """None if `value` is allowed for global parameter `name`, else the reason."""
    bound = GLOBAL_PARAMS.get(name)
    if bound is None:
        return f"unknown parameter {name!r}"
    if not bound.low <= value <= bound.high:
        return f"{name}={value} outside [{bound.low}, {bound.high}]"
    return None


def check_hyperparam(name: str, value: int, *, by_owner: bool) -> str | None:
    bound = SUBNET_HYPERPARAMS.get(name)
    if bound is None:
        return f"unknown hyperparameter {name!r}"
    if by_owner and not bound.owner:
        return f"{name} is not settable by the subnet owner"
    if not bound.low <= value <= bound.high:
        return f"{name}={value} outside [{bound.low}, {bound.high}]"
    return None
