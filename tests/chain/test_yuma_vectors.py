"""Every test vector of epoch spec §8, replayed through `run_epoch`.

The subtensor tests drive the pallet (register, set weights, run the epoch); `Subnet` below keeps
the same state between epochs (permits and bonds from the last epoch, last update, registration
block) and feeds it to `run_epoch`. Every epoch is also run through the literal reference port and
the two must agree exactly. "Asserted" values are those subtensor's tests assert; "derived" ones
come from the spec's independent re-implementation and are asserted here too.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Any

import pytest

from p2pnode.chain.fixed import ONE32, from_ratio, from_u16_proportion
from p2pnode.chain.yuma import (
    EpochInput,
    EpochOutput,
    max_upscale_weights,
    run_epoch,
    select_uid_to_prune,
    topk_nonzero,
    weighted_median_by_threshold,
)
from p2pnode.testing.yuma_reference import run_epoch_reference, weighted_median, weighted_median_col_sparse

E = 1_000_000_000


def f32(value: float) -> int:
    """subtensor's `fixed(f32)`: the literal rounded to binary32, then to I32F32 (exact here)."""
    exact = Fraction(struct.unpack("<f", struct.pack("<f", value))[0])
    return from_ratio(exact.numerator, exact.denominator)


class Subnet:
    """The pallet state one epoch reads, carried from epoch to epoch as the chain would."""

    def __init__(
        self, stake: list[int], block: int, *, tempo: int, max_validators: int, activity_cutoff: int = 5000,
        **hyper: Any,
    ) -> None:
        n = len(stake)
        self.n, self.stake, self.block = n, list(stake), block
        self.tempo, self.max_validators, self.activity_cutoff, self.hyper = tempo, max_validators, activity_cutoff, hyper
        self.last_update = [block] * n  # registration sets LastUpdate
        self.registered = [block] * n
        self.permits = [False] * n
        self.weights: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self.bonds: list[Any] = [[] for _ in range(n)]
        self.emission = [0] * n

    def set_weights(self, uid: int, uids: list[int], values: list[int]) -> None:
        """§6.1 storage: max-upscaled, in submission order; LastUpdate = block."""
        self.weights[uid] = list(zip(uids, max_upscale_weights(values), strict=True))
        self.last_update[uid] = self.block

    def replace_lowest(self, new_stake: int = 0) -> int:
        """A registration on a full subnet (§3.14): ImmunityPeriod 5000, MinNonImmuneUids 10."""
        uid = select_uid_to_prune(self.emission, self.registered, self.block, 5000, 10)
        assert uid is not None
        self.weights[uid] = []
        self.bonds[uid] = []
        self.weights = [[(j, 0 if j == uid else v) for j, v in row] for row in self.weights]
        self.permits[uid] = False
        self.last_update[uid] = self.registered[uid] = self.block
        self.stake[uid] = new_stake
        return uid

    def epoch(self) -> EpochOutput:
        inp = EpochInput(
            n=self.n, current_block=self.block, tempo=self.tempo, activity_cutoff=self.activity_cutoff,
            last_update=self.last_update, block_at_registration=self.registered, stake=self.stake,
            validator_permit=self.permits, max_allowed_validators=self.max_validators,
            weights=self.weights, bonds=self.bonds, emission=E, **self.hyper,
        )
        out = run_epoch(inp)
        assert out == run_epoch_reference(inp)
        self.permits = list(out.validator_permit)
        self.bonds = list(out.bonds)
        self.emission = list(out.emission)
        return out


def bond(out: EpochOutput, i: int, j: int) -> int:
    return dict(out.bonds[i].pairs()).get(j, 0)


# --- TV1 ---------------------------------------------------------------------------------------------


def test_tv1_ten_uids_with_self_weights_are_paid_by_stake() -> None:
    net = Subnet([1] * 10, 0, tempo=65534, max_validators=10)
    net.block = 1
    for uid in range(10):
        net.set_weights(uid, [uid], [65535])
    out = net.epoch()
    assert out.incentive == out.dividends == out.consensus == (0,) * 10
    assert out.emission == (99_999_999,) * 10


# --- TV2 ---------------------------------------------------------------------------------------------


def test_tv2_bonds_original_yuma_over_seven_epochs() -> None:
    net = Subnet([1, 2, 3, 4, 0, 0, 0, 0], 1, tempo=1, max_validators=8)
    assert net.epoch().validator_permit == (True,) * 4 + (False,) * 4
    net.block = 2
    for v in range(4):
        net.set_weights(v, [4, 5, 6, 7], [16383, 32767, 49149, 65535])
    out = net.epoch()
    assert [bond(out, i, 4) for i in range(4)] == [16383, 32767, 49151, 65535]
    assert out.consensus[4:] == out.incentive[4:] == (6553, 13107, 19660, 26214)
    assert out.dividends[:4] == (6553, 13106, 19660, 26214)
    assert out.validator_trust[:4] == (65534,) * 4
    assert out.emission == (49999998, 99999999, 150000000, 200000001, 49998779, 100000610, 149996337, 200004272)

    net.block = 3
    net.set_weights(0, [0], [65535])
    out = net.epoch()
    assert [bond(out, i, 4) for i in range(4)] == [14582, 32767, 49151, 65535]
    assert out.consensus[4:] == out.incentive[4:] == (6553, 13107, 19660, 26214)
    assert out.dividends[:4] == (5897, 13252, 19879, 26505)
    assert out.emission == (44998351, 101110561, 151667215, 202223870, 49998779, 100000610, 149996337, 200004272)

    net.block = 4
    net.set_weights(1, [1], [65535])
    out = net.epoch()
    assert [bond(out, i, 4) for i in range(4)] == [12603, 28321, 49151, 65535]
    assert out.dividends[:4] == (5307, 11927, 20699, 27599)
    assert out.emission == (40496805, 90999783, 157929636, 210573773, 49998779, 100000610, 149996337, 200004272)

    # only validator 3 (0.4 of active stake, below kappa) still votes: consensus 0, stake fallback
    net.block = 5
    net.set_weights(2, [2], [65535])
    out = net.epoch()
    assert [bond(out, i, 7) for i in range(4)] == [12602, 28320, 49150, 65535]
    assert out.consensus == out.incentive == out.dividends == (0,) * 8
    assert out.emission == (99999999, 199999999, 299999999, 399999999, 0, 0, 0, 0)

    net.block = 6
    net.set_weights(2, [7], [65535])
    out = net.epoch()
    assert [bond(out, i, 7) for i in range(4)] == [10951, 24609, 49150, 65535]
    assert out.consensus[4:] == (0, 0, 0, 26214)
    assert out.incentive[4:] == (0, 0, 0, 65535)
    assert out.validator_trust[:4] == (0, 0, 26214, 26214)
    assert out.dividends[:4] == (4776, 10734, 21438, 28585)
    assert out.emission == (36443733, 81898628, 163565493, 218092144, 0, 0, 0, 500000000)

    expected = {
        7: ([9559, 21482, 49150, 65535], (4299, 9660, 22103, 29471),
            (32799427, 73706612, 168638129, 224855830, 0, 0, 0, 500000000)),
        8: ([8376, 18824, 49150, 65535], (3868, 8694, 22701, 30269),
            (29518068, 66336137, 173203134, 230942659, 0, 0, 0, 500000000)),
    }
    for block, (bonds7, dividends, emission) in expected.items():
        net.block = block
        out = net.epoch()
        assert [bond(out, i, 7) for i in range(4)] == bonds7
        assert out.dividends[:4] == dividends
        assert out.emission == emission


# --- TV3 ---------------------------------------------------------------------------------------------


def test_tv3_active_stake_masks_inactive_validators() -> None:
    net = Subnet([1] * 4, 0, tempo=1, max_validators=4)
    net.epoch()
    net.block = 1
    for v in (0, 1):
        net.set_weights(v, [2, 3], [32767, 32767])
    assert net.weights[0] == [(2, 65535), (3, 65535)]
    out = net.epoch()
    assert out.dividends[:2] == (32767, 32767)
    assert out.emission == (250_000_000,) * 4
    for v in (0, 1):
        assert [bond(out, v, j) for j in range(4)] == [0, 0, 65535, 65535]

    net.block = 5002  # uid 1's weights are now older than the activity cutoff
    net.set_weights(0, [2, 3], [32767, 32767])
    out = net.epoch()
    assert out.active[:2] == (True, False)
    assert (out.dividends[0], out.emission[0]) == (36044, 274_999_999)
    assert (out.dividends[1], out.emission[1]) == (29490, 224_999_999)
    assert [bond(out, 0, j) for j in (2, 3)] == [65535, 65535]
    assert [bond(out, 1, j) for j in (2, 3)] == [53619, 53619]

    net.set_weights(1, [2, 3], [32767, 32767])
    net.block = 5003
    out = net.epoch()
    assert (out.dividends[0], out.emission[0]) == (35716, 272_501_132)
    assert (out.dividends[1], out.emission[1]) == (29818, 227_498_866)
    assert [bond(out, 0, j) for j in (2, 3)] == [65535, 65535]
    assert [bond(out, 1, j) for j in (2, 3)] == [54712, 54712]


# --- TV4 ---------------------------------------------------------------------------------------------


def test_tv4_outdated_weights_of_a_replaced_uid_are_masked() -> None:
    net = Subnet([1] * 4, 1, tempo=0, max_validators=4, activity_cutoff=1)
    net.epoch()
    net.block = 2
    for v in (0, 1):
        net.set_weights(v, [2, 3], [43690, 21845])
    for s in (2, 3):
        net.set_weights(s, [s], [65535])
    assert net.weights[0] == [(2, 65535), (3, 32768)]
    out = net.epoch()
    assert out.emission == (250000000, 250000000, 333331637, 166668361)
    assert out.incentive == (0, 0, 43689, 21845)

    assert net.replace_lowest() == 3  # lowest emission; every uid is immune, none may go free
    net.block = 3
    net.set_weights(0, [2, 3], [43690, 21845])
    out = net.epoch()
    assert (out.dividends[0], out.emission[0]) == (32767, 250_000_000)
    assert (bond(out, 0, 2), bond(out, 0, 3)) == (65535, 65535)
    assert out.consensus == (0, 0, 43689, 0)
    assert out.incentive == (0, 0, 65535, 0)
    assert out.emission == (250000000, 250000000, 500000000, 0)


# --- TV5 ---------------------------------------------------------------------------------------------


def test_tv5_zero_weight_fallbacks() -> None:
    net = Subnet([1, 0], 0, tempo=65534, max_validators=100)
    assert net.epoch().emission == (E, 0)  # no weights
    net.block = 1
    net.set_weights(1, [1], [65535])
    assert net.epoch().emission == (E, 0)  # only the miner's self-weight
    net.block = 2
    net.set_weights(0, [1], [65535])
    assert net.replace_lowest() == 1  # the miner re-registers in the block of the weight
    assert net.epoch().emission == (E, 0)  # so the weight is outdated
    net.block = 3
    net.set_weights(0, [1], [65535])
    out = net.epoch()
    assert out.emission == (500_000_000, 500_000_000)
    assert (out.consensus, out.incentive, out.dividends) == ((0, 65535), (0, 65535), (65535, 0))


# --- TV7 and its siblings: Yuma 3 with liquid alpha ----------------------------------------------------

A_TO_4, TO_3, TO_4 = [0, 65535], [65535, 0], [0, 65535]


def yuma3_scenario(schedule: dict[int, list[list[int]]]) -> list[EpochOutput]:
    """setup_yuma_3_scenario: stakes [8, 1, 1, 0, 0], 3 permits, penalty 0, liquid alpha (0.1, 0.3)."""
    net = Subnet(
        [8, 1, 1, 0, 0], 1, tempo=1, max_validators=3, kappa=32767, bonds_penalty=0,
        bonds_moving_average=975_000, alpha_sigmoid_steepness=1000, yuma3_on=True, liquid_alpha_on=True,
        alpha_low=6553, alpha_high=19660,
    )
    net.block = 2
    net.epoch()
    outs = []
    for e in range(6):
        for v, w in enumerate(schedule.get(e, [])):
            net.set_weights(v, [3, 4], w)
        net.block += 1
        outs.append(net.epoch())
    return outs


def assert_close_u16(values: tuple[int, ...], targets: list[float], tol: float = 1e-3) -> None:
    """subtensor's check: |from_u16(value) - fixed(target)| <= fixed(1e-3)."""
    for v, t in zip(values, targets, strict=True):
        assert abs(from_u16_proportion(v) - f32(t)) <= f32(tol), (values, targets)


def test_tv7_yuma3_kappa_moves_first() -> None:
    outs = yuma3_scenario({0: [TO_3] * 3, 1: [A_TO_4, TO_3, TO_3], 2: [TO_4, TO_4, TO_3], 3: [TO_4] * 3})
    target_dividends = [[0.8, 0.1, 0.1], [1.0, 0.0, 0.0], [0.9382, 0.0618, 0.0], [0.8819, 0.0773, 0.0407],
                        [0.8564, 0.0844, 0.0592], [0.8418, 0.0884, 0.0697]]
    derived_dividends = [(52428, 6553, 6553), (65535, 0, 0), (61486, 4048, 0), (57796, 5068, 2669),
                         (56122, 5531, 3881), (55170, 5795, 4569)]
    derived_emission = [
        (400000000, 49999999, 49999999, 500000000, 0), (500000000, 0, 0, 0, 500000000),
        (469114009, 30885990, 0, 0, 500000000), (440959013, 38671990, 20368996, 0, 500000000),
        (428185483, 42204163, 29610352, 0, 500000000), (420923057, 44213590, 34863351, 0, 500000000),
    ]
    for out, target, dividends, emission in zip(outs, target_dividends, derived_dividends, derived_emission, strict=True):
        assert_close_u16(out.dividends[:3], target)
        assert out.dividends[:3] == dividends
        assert out.emission == emission
    assert outs[1].consensus == (0, 0, 0, 0, 65535)
    assert [outs[1].bonds[i].pairs() for i in range(3)] == [[(3, 5951), (4, 6640)], [(3, 24229)], [(3, 24229)]]
    # bond targets: listed by the test but compared by nothing there (TV7 of the epoch tests caveat)
    target_bonds = [[[0.1013, 0.0], [0.1013, 0.0], [0.1013, 0.0]], [[0.0908, 0.1013], [0.3697, 0.0], [0.3697, 0.0]],
                    [[0.0815, 0.1924], [0.3170, 0.1013], [0.5580, 0.0]], [[0.0731, 0.2742], [0.2765, 0.1924], [0.4306, 0.1013]],
                    [[0.0656, 0.3478], [0.2435, 0.2742], [0.3589, 0.1924]], [[0.0588, 0.4139], [0.2157, 0.3478], [0.3089, 0.2742]]]
    for out, targets in zip(outs, target_bonds, strict=True):
        for i in range(3):
            assert_close_u16((bond(out, i, 3), bond(out, i, 4)), targets[i])


@pytest.mark.parametrize(
    ("schedule", "target_dividends"),
    [
        pytest.param(  # test_yuma_3_kappa_moves_second
            {0: [TO_3] * 3, 1: [TO_3, TO_4, TO_3], 2: [TO_4, TO_4, TO_3], 3: [TO_4] * 3},
            [[0.8, 0.1, 0.1], [0.8446, 0.0498, 0.1056], [0.6868, 0.3132, 0.0], [0.7421, 0.2090, 0.0489],
             [0.7625, 0.1706, 0.0669], [0.7730, 0.1508, 0.0762]],
            id="kappa_moves_second",
        ),
        pytest.param(  # test_yuma_3_kappa_moves_last
            {0: [TO_3] * 3, 1: [TO_3, TO_4, TO_3], 2: [TO_3, TO_4, TO_4], 3: [TO_4] * 3},
            [[0.8, 0.1, 0.1], [0.8446, 0.0498, 0.1056], [0.8966, 0.0333, 0.0701], [0.4663, 0.3210, 0.2127],
             [0.5976, 0.2340, 0.1683], [0.6592, 0.1932, 0.1475]],
            id="kappa_moves_last",
        ),
    ],
)
def test_tv7_siblings_within_subtensor_tolerance(schedule: dict[int, list[list[int]]], target_dividends: list[list[float]]) -> None:
    for out, target in zip(yuma3_scenario(schedule), target_dividends, strict=True):
        assert_close_u16(out.dividends[:3], target)


# --- TV10: the median kernel (tests/math.rs::test_math_weighted_median) --------------------------------

MEDIAN_CASES = [
    ([0.49, 0.51], [0.5, 1.0], 1.0),
    ([0.51, 0.49], [0.5, 1.0], 0.5),
    ([0.49, 0.0, 0.51], [0.5, 0.7, 1.0], 1.0),
    ([0.49, 0.01, 0.5], [0.5, 0.7, 1.0], 0.7),
    ([0.49, 0.51, 0.0], [0.5, 0.7, 1.0], 0.7),
    ([0.0, 0.49, 0.51], [0.5, 0.7, 1.0], 1.0),
    ([0.0, 0.49, 0.0, 0.51], [0.5, 0.5, 1.0, 1.0], 1.0),
    ([0.0, 0.49, 0.0, 0.51, 0.0], [0.5, 0.5, 1.0, 1.0, 0.5], 1.0),
    ([0.2] * 5, [0.8, 0.2, 1.0, 0.6, 0.4], 0.6),
    ([0.1] * 10, [0.8, 0.8, 0.2, 0.2, 1.0, 1.0, 0.6, 0.6, 0.4, 0.4], 0.6),
]


@pytest.mark.parametrize(("stake", "score", "expected"), MEDIAN_CASES)
def test_tv10_weighted_median(stake: list[float], score: list[float], expected: float) -> None:
    stakes, scores = [f32(s) for s in stake], [f32(x) for x in score]
    minority = ONE32 - f32(0.51)
    total = sum(stakes)
    assert weighted_median(stakes, scores, range(len(stakes)), minority, 0, total) == f32(expected)
    # the closed form used by run_epoch, which only ever sees positive stakes
    positive = [k for k, s in enumerate(stakes) if s > 0]
    closed = weighted_median_by_threshold([stakes[k] for k in positive], [scores[k] for k in positive], total - minority)
    assert closed == f32(expected)


def test_tv10_weighted_median_edge_cases() -> None:
    assert weighted_median([], [], [], ONE32 - f32(0.51), 0, 0) == 0
    assert weighted_median_by_threshold([], [], 0) == 0


@pytest.mark.parametrize(
    ("stake", "majority", "expected"),
    [
        ([0.0, 0.75, 0.25, 0.0], 0.24, [0.0, 0.3, 0.4]),
        ([0.0, 0.75, 0.25, 0.0], 0.26, [0.0, 0.2, 0.4]),
        ([0.0, 0.75, 0.25, 0.0], 0.76, [0.0, 0.2, 0.1]),
    ],
)
def test_weighted_median_col_sparse(stake: list[float], majority: float, expected: list[float]) -> None:
    """tests/math.rs::test_math_weighted_median_col_sparse, with the epoch's closed form alongside."""
    matrix = [[0.0, 0.1, 0.0], [0.0, 0.2, 0.4], [0.0, 0.3, 0.1], [0.0, 0.4, 0.5]]
    rows = [[(j, f32(v)) for j, v in enumerate(r) if v] for r in matrix]
    stakes = [f32(s) for s in stake]
    assert weighted_median_col_sparse(stakes, rows, 3, f32(majority)) == [f32(x) for x in expected]
    voters = [i for i, s in enumerate(stakes) if s > 0]
    total = sum(stakes[i] for i in voters)
    shares = [(stakes[i] << 32) // total for i in voters]
    for j in range(3):
        col = [dict(rows[i]).get(j, 0) for i in voters]
        assert weighted_median_by_threshold(shares, col, f32(majority)) == f32(expected[j])


def test_topk_nonzero_ties_lose_at_the_lower_uid() -> None:
    """tests/math.rs::test_math_is_topk cases (all values non-zero but the first)."""
    assert topk_nonzero(list(range(10)), 5) == [False] * 5 + [True] * 5
    assert topk_nonzero([0, 1, 2, 3, 4, 5, 5, 5, 5, 6], 5) == [False] * 5 + [True] * 5
    assert topk_nonzero([9, 0, 8, 1, 7, 2, 6, 3, 5, 4], 5) == [True, False] * 5
    assert topk_nonzero([7, 7, 7, 7], 2) == [False, False, True, True]
    assert topk_nonzero(list(range(10)), 100) == [False] + [True] * 9  # n < k: only zeros lose
    assert topk_nonzero(list(range(10)), 0) == [False] * 10


# --- TV12: commit-reveal masking (qualitative in subtensor's tests) ------------------------------------


def commit_reveal_case(commit_block: int | None, *, enabled: bool = True) -> EpochOutput:
    """Validator 0 (all the stake) weights uids 1 and 2; uid 2 re-registered at block 150."""
    return run_epoch(EpochInput(
        n=3, current_block=200, tempo=100, activity_cutoff=5000, last_update=[180, 100, 150],
        block_at_registration=[10, 10, 150], stake=[1000, 0, 0], validator_permit=[True, False, False],
        max_allowed_validators=3, weights=[[(1, 65535), (2, 65535)], [], []], bonds=[[], [], []],
        emission=E, commit_blocks=[commit_block, None, None] if enabled else None,
    ))


def test_tv12_uid_registered_after_a_live_commit_gets_no_incentive() -> None:
    out = commit_reveal_case(120)
    assert out.incentive == (0, 65535, 0)


def test_tv12_no_mask_without_a_live_commit_or_with_commit_reveal_off() -> None:
    assert commit_reveal_case(None).incentive[2] > 0  # only expired commits: not masked
    assert commit_reveal_case(160).incentive[2] > 0  # committed after the registration
    assert commit_reveal_case(120, enabled=False).incentive[2] > 0


# --- TV13: coinbase checks ----------------------------------------------------------------------------


def test_tv13_owner_cut_base() -> None:
    from p2pnode.chain.emission import split_subnet_emission

    assert split_subnet_emission(E, owner_cut=0).owner_cut == 0
    assert split_subnet_emission(E, owner_cut=65535).owner_cut == E


def test_tv13_two_stakers_without_weights_share_the_whole_emission() -> None:
    out = run_epoch(EpochInput(
        n=2, current_block=10, tempo=360, activity_cutoff=5000, last_update=[1, 1],
        block_at_registration=[1, 1], stake=[10**9, 10**9], validator_permit=[False, False],
        max_allowed_validators=64, weights=[[], []], bonds=[[], []], emission=E,
    ))
    for uid in (0, 1):
        paid = out.server_emission[uid] + out.validator_emission[uid]
        assert abs(paid - E // 2) <= 10

