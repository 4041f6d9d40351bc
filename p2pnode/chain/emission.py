"""Emission in exact integer rao (epoch spec §4.2 - §4.4, docs/chain.md).

Every split here returns parts that add up to its input exactly; where a division leaves rao over,
the docstring says where they go. Nothing is rounded away silently and nothing uses floats.

* `block_emission`: rao minted by a block under the halving schedule.
* `split_pro_rata`: an amount over recipients by weight (largest remainder), e.g. over subnets.
* `split_subnet_emission`: a subnet's emission into owner cut, miner pool and validator pool.
* `split_take`: a delegate's take of a dividend.
* `settle_epoch`: an epoch's per-uid rao (from `yuma.run_epoch`) against the amount it was given.

A subnet's emission flows: per block, `block_emission` (split over subnets with `split_pro_rata`)
accrues as the subnet's pending emission; at its epoch, `split_subnet_emission` takes the owner
cut, the miner and validator pools together are the `emission` the epoch distributes, and
`settle_epoch` returns the per-uid payouts plus the rao left undistributed, which go back into
the pending emission for the next epoch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

RAO_PER_TAO = 1_000_000_000
U16_MAX = 65535
DEFAULT_BASE_EMISSION = RAO_PER_TAO  # 1 TAO per block before any halving
DEFAULT_SUPPLY = 21_000_000 * RAO_PER_TAO
DEFAULT_OWNER_CUT = 11_796  # u16 proportion, 11796 / 65535 = 18%


def halvings(issuance: int, supply: int = DEFAULT_SUPPLY) -> int:
    """How many halvings have happened: the largest k with issuance >= supply * (1 - 2^-k).

    subtensor computes k = floor(log2(1 / (1 - issuance / supply))) with fixed-point log2; this is
    the exact integer form (the two can differ only within a few ulps of a halving point).
    Halvings fall at 1/2, 3/4, 7/8, ... of the supply.
    """
    if issuance < 0 or supply <= 0:
        raise ValueError("issuance must be >= 0 and supply > 0")
    if issuance >= supply:
        raise ValueError("supply exhausted")
    # (supply - issuance) * 2^k <= supply  <=>  2^k <= supply // (supply - issuance)
    return (supply // (supply - issuance)).bit_length() - 1


def block_emission(issuance: int, base: int = DEFAULT_BASE_EMISSION, supply: int = DEFAULT_SUPPLY) -> int:
    """Rao minted by the next block: floor(base / 2^k) after k halvings; 0 once the supply is out.

    The same function gives a subnet's alpha emission from that subnet's alpha issuance (§4.2).
    """
    if base < 0:
        raise ValueError("base must be >= 0")
    if issuance >= supply:
        return 0
    return base >> halvings(issuance, supply)


def split_pro_rata(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` over recipients in proportion to non-negative integer `weights`, summing exactly.

    Each gets floor(amount * w / W); the rao left over go one each to the largest fractional
    remainders, ties to the lower index (Hamilton's method). All-zero weights split evenly.
    """
    if amount < 0:
        raise ValueError("amount must be >= 0")
    if not weights:
        if amount:
            raise ValueError("no recipients for a non-zero amount")
        return []
    if min(weights) < 0:
        raise ValueError("weights must be >= 0")
    total = sum(weights)
    if total == 0:
        weights, total = [1] * len(weights), len(weights)
    shares = []
    remainders = []
    for w in weights:
        q, r = divmod(amount * w, total)
        shares.append(q)
        remainders.append(r)
    left = amount - sum(shares)  # < len(weights)
    for idx in sorted(range(len(weights)), key=lambda k: (-remainders[k], k))[:left]:
        shares[idx] += 1
    return shares


@dataclass(frozen=True, slots=True)
class SubnetEmissionSplit:
    """A subnet's emission: owner_cut + miners + validators == the amount split."""

    owner_cut: int
    miners: int
    validators: int


def split_subnet_emission(amount: int, owner_cut: int = DEFAULT_OWNER_CUT) -> SubnetEmissionSplit:
    """Owner cut first, floor(amount * owner_cut / 65535); the rest halves between the miner pool
    (floor of the half) and the validator pool (the other half, so the odd rao goes to validators).

    These are subtensor's pending server / validator buckets with no root share (tao_weight 0).
    """
    if amount < 0:
        raise ValueError("amount must be >= 0")
    if not 0 <= owner_cut <= U16_MAX:
        raise ValueError("owner_cut must be a u16 proportion")
    owner = amount * owner_cut // U16_MAX
    rest = amount - owner
    miners = rest // 2
    return SubnetEmissionSplit(owner_cut=owner, miners=miners, validators=rest - miners)


def split_take(amount: int, take: int) -> tuple[int, int]:
    """A delegate's take of a dividend, floor(amount * take / 65535), and the nominators' rest."""
    if amount < 0:
        raise ValueError("amount must be >= 0")
    if not 0 <= take <= U16_MAX:
        raise ValueError("take must be a u16 proportion")
    cut = amount * take // U16_MAX
    return cut, amount - cut


@dataclass(frozen=True, slots=True)
class EpochSettlement:
    """Where an epoch's emission goes; the four parts sum to the epoch's emission exactly.

    `undistributed` is the floor dust of the epoch (each uid's amount is floored on its own,
    epoch spec §9 item 11); it is not redistributed, so the epoch stays bit-exact, and belongs back in
    the subnet's pending emission for its next epoch. `burned` is incentive to owner uids (§4.4).
    """

    miner_payouts: tuple[int, ...]
    validator_payouts: tuple[int, ...]
    burned: int
    undistributed: int


def settle_epoch(
    emission: int,
    server_emission: Sequence[int],
    validator_emission: Sequence[int],
    burn_uids: Collection[int] = (),
) -> EpochSettlement:
    """Account for an epoch's `server_emission` / `validator_emission` (rao per uid).

    Incentive to `burn_uids` (the subnet owner's hotkeys) is burned rather than paid (§4.4 item 2).
    Raises ValueError if the per-uid amounts add up to more than `emission`.
    """
    if len(server_emission) != len(validator_emission):
        raise ValueError("server and validator emission must have one entry per uid")
    if min(server_emission, default=0) < 0 or min(validator_emission, default=0) < 0:
        raise ValueError("emission amounts must be >= 0")
    paid = sum(server_emission) + sum(validator_emission)
    if paid > emission:
        raise ValueError(f"per-uid emission {paid} exceeds the epoch emission {emission}")
    burn = set(burn_uids)
    miners = tuple(0 if uid in burn else amount for uid, amount in enumerate(server_emission))
    burned = sum(server_emission) - sum(miners)
    return EpochSettlement(
        miner_payouts=miners,
        validator_payouts=tuple(validator_emission),
        burned=burned,
        undistributed=emission - paid,
    )
