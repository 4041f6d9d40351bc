"""Properties of the epoch on random valid inputs (hypothesis), and of the emission helpers."""

from __future__ import annotations

import dataclasses
import random
from array import array
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pnode.chain import yuma
from p2pnode.chain.emission import (
    block_emission,
    halvings,
    settle_epoch,
    split_pro_rata,
    split_subnet_emission,
    split_take,
)
from p2pnode.chain.fixed import ONE32
from p2pnode.chain.yuma import (
    EpochInput,
    EpochOutput,
    InvalidEpochInput,
    InvalidWeights,
    SparseRow,
    _Epoch,
    canonicalise_weights,
    immune_owner_uids,
    max_upscale_weights,
    run_epoch,
    select_uid_to_prune,
)
from p2pnode.epoch_case import render_document, result_document
from p2pnode.testing.yuma_reference import run_epoch_reference

U16 = st.integers(0, 65535)
CASES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rows(draw: st.DrawFn, n: int, *, canonical: bool) -> list[list[tuple[int, int]]]:
    out = []
    for _ in range(n):
        uids = draw(st.lists(st.integers(0, n + 1), unique=True, max_size=n + 2))
        if canonical:
            uids = sorted(u for u in uids if u < n)
        out.append([(u, draw(st.sampled_from([0, 1, 65535]) | U16)) for u in uids])
    return out


@st.composite
def epoch_inputs(draw: st.DrawFn, *, canonical: bool = False, max_n: int = 9) -> EpochInput:
    n = draw(st.integers(1, max_n))
    block = draw(st.integers(0, 50))
    blocks = st.integers(0, block)
    yuma3 = draw(st.booleans())
    return EpochInput(
        n=n,
        current_block=block,
        tempo=draw(st.integers(0, 4)),
        activity_cutoff=draw(st.integers(0, 40)),
        last_update=draw(st.lists(blocks, min_size=n, max_size=n)),
        block_at_registration=draw(st.lists(blocks, min_size=n, max_size=n)),
        stake=draw(st.lists(st.sampled_from([0, 1]) | st.integers(0, 10**15), min_size=n, max_size=n)),
        validator_permit=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        max_allowed_validators=n if canonical else draw(st.integers(0, n + 1)),
        weights=draw(rows(n, canonical=canonical)),
        bonds=draw(rows(n, canonical=canonical)),
        emission=draw(st.sampled_from([10**9, 2**64 - 1]) | st.integers(0, 2**64 - 1)),
        stake_threshold=draw(st.sampled_from([0, 0, 10, 10**6])),
        owner_uid=draw(st.none() | st.integers(0, n - 1)),
        last_mech_step_block=draw(st.sampled_from([0]) | blocks),
        commit_blocks=draw(st.none() | st.lists(st.none() | blocks, min_size=n, max_size=n)),
        kappa=draw(st.sampled_from([32767, 0, 65535]) | U16),
        bonds_penalty=draw(st.sampled_from([65535, 0]) | U16),
        bonds_moving_average=draw(st.sampled_from([900_000, 975_000, 0, 1_000_000]) | st.integers(0, 10**6)),
        yuma3_on=yuma3,
        liquid_alpha_on=yuma3 and draw(st.booleans()),
        alpha_low=draw(U16),
        alpha_high=draw(U16),
        alpha_sigmoid_steepness=draw(st.sampled_from([1000, -1000, 32767]) | st.integers(-32768, 32767)),
    )


def assert_well_formed(inp: EpochInput, out: EpochOutput) -> None:
    n = inp.n
    for name in ("stake_weight", "consensus", "incentive", "dividends", "validator_trust"):
        values = getattr(out, name)
        assert len(values) == n and all(0 <= v <= 65535 for v in values), name
    assert sum(out.emission) <= inp.emission
    assert sum(out.server_emission) + sum(out.validator_emission) <= inp.emission
    for i, row in enumerate(out.bonds):
        if not out.validator_permit[i]:
            assert len(row) == 0
        pairs = row.pairs()
        assert all(0 <= j < n and 0 <= v <= 65535 for j, v in pairs)
        assert len({j for j, _ in pairs}) == len(pairs)


@CASES
@given(epoch_inputs())
def test_random_inputs_run_and_never_pay_more_than_the_emission(inp: EpochInput) -> None:
    assert_well_formed(inp, run_epoch(inp))


@CASES
@given(epoch_inputs())
def test_fast_epoch_equals_the_literal_reference(inp: EpochInput) -> None:
    assert run_epoch(inp) == run_epoch_reference(inp)


def assert_chained_epochs_match_reference(inp: EpochInput, epochs: int) -> None:
    """`epochs` epochs in a row, each fed the bonds, permits and block the previous one left (as the
    chain does); the fast epoch equals the reference at every step."""
    for _ in range(epochs):
        out = run_epoch(inp)
        assert out == run_epoch_reference(inp)
        inp = dataclasses.replace(
            inp, bonds=out.bonds, validator_permit=out.validator_permit, current_block=inp.current_block + 1
        )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(epoch_inputs(max_n=40), st.integers(1, 3))
def test_fast_equals_reference_over_chained_epochs(inp: EpochInput, epochs: int) -> None:
    """Bonds and permits fed back as the chain does; larger n reaches the packed paths' edges."""
    assert_chained_epochs_match_reference(inp, epochs)


@CASES
@given(epoch_inputs())
def test_two_runs_give_identical_bytes_and_leave_the_input_alone(inp: EpochInput) -> None:
    before = dataclasses.replace(inp)
    first = render_document(result_document(run_epoch(inp)))
    second = render_document(result_document(run_epoch(inp)))
    assert first == second
    assert inp == before


def relabel(inp: EpochInput, perm: list[int]) -> EpochInput:
    """The same subnet with uid i renamed perm[i]; rows stay sorted by uid."""
    n = inp.n
    inverse = [0] * n
    for old, new in enumerate(perm):
        inverse[new] = old

    def vector(values: Any) -> list[Any]:
        return [values[inverse[new]] for new in range(n)]

    def matrix(rows: Any) -> list[list[tuple[int, int]]]:
        return [sorted((perm[j], v) for j, v in rows[inverse[new]] if j < n) for new in range(n)]

    return dataclasses.replace(
        inp,
        last_update=vector(inp.last_update),
        block_at_registration=vector(inp.block_at_registration),
        stake=vector(inp.stake),
        validator_permit=vector(inp.validator_permit),
        weights=matrix(inp.weights),
        bonds=matrix(inp.bonds),
        owner_uid=None if inp.owner_uid is None else perm[inp.owner_uid],
        commit_blocks=None if inp.commit_blocks is None else vector(inp.commit_blocks),
    )


@CASES
@given(epoch_inputs(canonical=True), st.randoms(use_true_random=False))
def test_relabelling_uids_relabels_the_outputs(inp: EpochInput, rnd: Any) -> None:
    """Order does not matter (epoch spec §9 item 15) once rows are sorted (item 8) and every uid with
    stake gets a permit (so no top-k tie is broken by uid, item 4)."""
    perm = list(range(inp.n))
    rnd.shuffle(perm)
    out, moved = run_epoch(inp), run_epoch(relabel(inp, perm))
    for name in ("active", "stake_weight", "consensus", "incentive", "dividends", "validator_trust",
                 "emission", "server_emission", "validator_emission", "validator_permit"):
        values = getattr(out, name)
        assert [getattr(moved, name)[perm[i]] for i in range(inp.n)] == list(values), name
    for i in range(inp.n):
        assert dict(moved.bonds[perm[i]].pairs()) == {perm[j]: v for j, v in out.bonds[i].pairs()}


def test_unsorted_rows_change_liquid_alpha_as_on_chain() -> None:
    """epoch spec §9 item 8: the liquid-alpha merge assumes rows sorted by uid; a stored row in
    another order reads some weights as 0, which changes the bonds."""
    base: dict[str, Any] = dict(
        n=4, current_block=10, tempo=1, activity_cutoff=100, last_update=[5, 5, 5, 5],
        block_at_registration=[0, 0, 0, 0], stake=[10, 5, 0, 0], validator_permit=[True, True, False, False],
        max_allowed_validators=2, bonds=[[(2, 30000), (3, 10000)], [(2, 20000)], [], []], emission=10**9,
        yuma3_on=True, liquid_alpha_on=True, bonds_penalty=0, alpha_low=6553, alpha_high=40000,
    )
    sorted_rows = [[(2, 65535), (3, 20000)], [(2, 40000), (3, 65535)], [], []]
    unsorted_rows = [[(3, 20000), (2, 65535)], [(3, 65535), (2, 40000)], [], []]
    a = run_epoch(EpochInput(weights=sorted_rows, **base))
    b = run_epoch(EpochInput(weights=unsorted_rows, **base))
    assert a.consensus == b.consensus
    assert dict(a.bonds[0].pairs()) != dict(b.bonds[0].pairs())
    assert [j for j, _ in b.bonds[0].pairs()] == [3, 2]  # stored in the weight row's order
    assert b == run_epoch_reference(EpochInput(weights=unsorted_rows, **base))


# --- input validation -------------------------------------------------------------------------------


def base_input(**changes: Any) -> EpochInput:
    fields: dict[str, Any] = dict(
        n=2, current_block=5, tempo=1, activity_cutoff=10, last_update=[1, 1], block_at_registration=[0, 0],
        stake=[1, 1], validator_permit=[True, True], max_allowed_validators=2, weights=[[], []],
        bonds=[[], []], emission=10,
    )
    fields.update(changes)
    return EpochInput(**fields)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stake": [1]}, "stake"),
        ({"stake": [2**63, 1]}, "stake"),
        ({"stake": [-1, 1]}, "stake"),
        ({"weights": [[(0, 65536)], []]}, "weights[0]"),
        ({"weights": [[(1, 5), (1, 6)], []]}, "weights[0]"),
        ({"weights": [[(1,)], []]}, "weights[0]"),
        ({"bonds": [[], [(0, 1.5)]]}, "bonds[1]"),
        ({"owner_uid": 2}, "owner_uid"),
        ({"validator_permit": [1, 0]}, "validator_permit"),
        ({"bonds_moving_average": 1_000_001}, "bonds_moving_average"),
        ({"alpha_sigmoid_steepness": 40000}, "alpha_sigmoid_steepness"),
        ({"commit_blocks": [None]}, "commit_blocks"),
        ({"yuma3_on": 1}, "yuma3_on"),
    ],
)
def test_invalid_inputs_are_refused_with_the_field_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEpochInput) as exc:
        base_input(**changes)
    assert exc.value.field == field


def test_rows_are_held_as_sparse_rows_and_compare_by_content() -> None:
    inp = base_input(weights=[[(1, 7)], []])
    assert inp.weights[0] == SparseRow.from_pairs([(1, 7)])
    assert inp.weights[0].pairs() == [(1, 7)]
    assert base_input(weights=[[(1, 7)], []]) == base_input(weights=[SparseRow.from_pairs([(1, 7)]), []])


def test_empty_subnet() -> None:
    inp = dataclasses.replace(base_input(), n=0, last_update=[], block_at_registration=[], stake=[],
                              validator_permit=[], weights=[], bonds=[])
    assert run_epoch(inp).emission == ()


# --- weights at submission (§6.1) --------------------------------------------------------------------


def test_canonicalise_weights_sorts_and_refuses_malformed_submissions() -> None:
    assert canonicalise_weights([3, 1, 2], [30, 10, 20]) == [(1, 10), (2, 20), (3, 30)]
    cases = [
        (([1, 2], [1]), "length_mismatch"),
        (([1, 1], [1, 2]), "duplicate_uid"),
        (([70000], [1]), "uid_out_of_range"),
        (([1], [65536]), "value_out_of_range"),
        (([1.0], [1]), "not_an_integer"),
    ]
    for (uids, values), reason in cases:
        with pytest.raises(InvalidWeights) as exc:
            canonicalise_weights(uids, values)
        assert exc.value.reason == reason
    with pytest.raises(InvalidWeights) as exc:
        canonicalise_weights([5], [1], n=5)
    assert exc.value.reason == "uid_out_of_range"


@given(st.lists(U16, min_size=1, max_size=50))
def test_max_upscale_brings_the_largest_weight_to_65535(values: list[int]) -> None:
    scaled = max_upscale_weights(values)
    if max(values) == 0:
        assert scaled == [0] * len(values)
    else:
        assert max(scaled) == 65535
        assert all(0 <= s <= 65535 for s in scaled)
        # order is kept: larger submitted weights never get smaller stored ones
        assert all(scaled[i] <= scaled[j] for i in range(len(values)) for j in range(len(values))
                   if values[i] <= values[j])


# --- emission helpers --------------------------------------------------------------------------------

SUPPLY = 21_000_000 * 10**9


def test_block_emission_halves_at_half_three_quarters_and_seven_eighths_of_supply() -> None:
    assert block_emission(0) == 10**9
    assert block_emission(SUPPLY // 2 - 1) == 10**9
    assert block_emission(SUPPLY // 2) == 5 * 10**8
    assert block_emission(SUPPLY * 3 // 4) == 25 * 10**7
    assert block_emission(SUPPLY * 7 // 8) == 125 * 10**6
    assert block_emission(SUPPLY) == 0
    assert halvings(SUPPLY * 3 // 4 - 1) == 1
    assert block_emission(100, base=7, supply=100) == 0


@given(st.integers(0, 10**18), st.lists(st.integers(0, 10**12), min_size=1, max_size=20))
def test_split_pro_rata_is_exact_and_proportional(amount: int, weights: list[int]) -> None:
    shares = split_pro_rata(amount, weights)
    assert sum(shares) == amount
    total = sum(weights) or len(weights)
    eff = weights if sum(weights) else [1] * len(weights)
    for share, w in zip(shares, eff, strict=True):
        assert amount * w // total <= share <= amount * w // total + 1


@given(st.integers(0, 10**18), U16)
def test_subnet_split_and_take_conserve_every_rao(amount: int, cut: int) -> None:
    split = split_subnet_emission(amount, cut)
    assert split.owner_cut + split.miners + split.validators == amount
    assert split.owner_cut == amount * cut // 65535
    assert 0 <= split.validators - split.miners <= 1
    take, rest = split_take(amount, cut)
    assert take + rest == amount


@CASES
@given(epoch_inputs())
def test_settling_an_epoch_accounts_for_every_rao(inp: EpochInput) -> None:
    out = run_epoch(inp)
    burn = [inp.owner_uid] if inp.owner_uid is not None else []
    s = settle_epoch(inp.emission, out.server_emission, out.validator_emission, burn)
    assert sum(s.miner_payouts) + sum(s.validator_payouts) + s.burned + s.undistributed == inp.emission
    assert s.undistributed >= 0


def test_settle_epoch_refuses_overpayment() -> None:
    with pytest.raises(ValueError):
        settle_epoch(10, [6], [5])


# --- pruning (§3.14) ---------------------------------------------------------------------------------


def test_prune_prefers_the_lowest_emission_non_immune_uid_with_ties_by_age_then_uid() -> None:
    emission = [5, 1, 1, 1, 9]
    registered = [0, 30, 20, 20, 0]
    # block 100, immunity 50: uids 0..4 are all past immunity (100 - 30 = 70 >= 50)
    assert select_uid_to_prune(emission, registered, 100, 50, 0) == 2  # emission 1; oldest 20; uid 2 < 3
    assert select_uid_to_prune(emission, registered, 100, 50, 0, owner_immune_uids=[2]) == 3
    # only 5 non-immune uids and at least 5 must stay: fall back to the best immune one (none here)
    assert select_uid_to_prune(emission, registered, 100, 50, 5) is None


def test_prune_falls_back_to_the_best_immune_uid() -> None:
    emission = [3, 2, 7]
    registered = [90, 95, 10]  # uids 0 and 1 immune at block 100 with immunity 20
    assert select_uid_to_prune(emission, registered, 100, 20, 0) == 2
    assert select_uid_to_prune(emission, registered, 100, 20, 1) == 1  # 1 free uid is not > 1
    assert select_uid_to_prune(emission, registered, 100, 20, 1, owner_immune_uids=[1]) == 0


def test_immune_owner_uids_put_the_owner_hotkey_first() -> None:
    registered = [5, 1, 1, 9]
    assert immune_owner_uids([3, 2, 1], registered, None, limit=2) == [1, 2]
    assert immune_owner_uids([3, 2, 1], registered, 0, limit=2) == [0, 1]
    assert immune_owner_uids([3, 2, 1], registered, 2, limit=2) == [1, 2]
    assert immune_owner_uids([], registered, 3) == [3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(epoch_inputs(canonical=True, max_n=40), st.integers(1, 3))
def test_liquid_alpha_on_sorted_rows_equals_reference_over_chained_epochs(inp: EpochInput, epochs: int) -> None:
    """Rows sorted by uid take the packed liquid-alpha path; it must match the reference's per-entry
    merge bit for bit, with its own bonds fed back."""
    inp = dataclasses.replace(inp, yuma3_on=True, liquid_alpha_on=True)
    assert_chained_epochs_match_reference(inp, epochs)


@pytest.mark.parametrize("bonds_penalty", [65535, 0, 30000])
def test_liquid_alpha_of_one_times_a_weight_of_one_is_exact(bonds_penalty: int) -> None:
    """alpha = 1 (alpha_low = alpha_high = 65535) on a single full weight and a full bond: a product
    of exactly 2^64, one more than a 64-bit lane holds, still gives the reference's bonds."""
    inp = EpochInput(
        n=3, current_block=10, tempo=1, activity_cutoff=100, last_update=[5, 5, 5],
        block_at_registration=[0, 0, 0], stake=[10, 5, 0], validator_permit=[True, True, False],
        max_allowed_validators=3, weights=[[(2, 65535)], [(1, 3), (2, 65535)], []],
        bonds=[[(2, 65535)], [(1, 65535), (2, 7)], []], emission=10**9, yuma3_on=True,
        liquid_alpha_on=True, alpha_low=65535, alpha_high=65535, bonds_penalty=bonds_penalty,
    )
    assert _Epoch(inp).liquid_dense
    out = run_epoch(inp)
    assert out == run_epoch_reference(inp)
    assert out.bonds[0].pairs() == [(2, 65535)]
    # every entry with its own alpha (full bonds above half weights: combined = 1/2), alpha * b = 2^64
    spread = dataclasses.replace(inp, weights=[[(1, 65535), (2, 65535)], [(2, 65535)], []],
                                 bonds=[[(1, 65535), (2, 65535)], [(2, 65535)], []])
    assert run_epoch(spread) == run_epoch_reference(spread)


def test_original_yuma_stored_bond_rows_with_many_few_and_zero_entries() -> None:
    """The original-Yuma bond rows as stored: a row missing more than 64 uids (kept by compress), a
    row missing a few (kept by deletion), and an entry whose EMA is > 0 but whose u16 is 0 (kept)."""
    n = 160
    weights = [
        [(j, 60_000) for j in range(80)],  # no weight on uids 80.. : a bond row missing 80 uids
        [(j, 1 + (j * 7919) % 65535) for j in range(n) if j % 40 != 3],  # missing 4 uids
        [(j, 65535 if j == 5 else 1 + (j * 104729) % 65535) for j in range(n)],
        [(j, 1 if j == 5 else 30_000) for j in range(n)],  # a tiny share of column 5
    ] + [[] for _ in range(n - 4)]
    inp = EpochInput(
        n=n, current_block=1_000, tempo=10, activity_cutoff=5_000, last_update=[990] * n,
        block_at_registration=[0] * n, stake=[10**12, 10**12, 10**14, 10**9] + [0] * (n - 4),
        validator_permit=[True] * 4 + [False] * (n - 4), max_allowed_validators=4, weights=weights,
        bonds=[[] for _ in range(n)], emission=10**9, yuma3_on=False, bonds_moving_average=0,
    )
    out = run_epoch(inp)
    assert out == run_epoch_reference(inp)
    present = [{j for j, _ in row.pairs()} for row in out.bonds]
    assert n - len(present[0]) > 64
    assert 0 < n - len(present[1]) <= 64
    assert any(v == 0 for _, v in out.bonds[3].pairs())


# --- consensus by bisection ------------------------------------------------------------------------


def consensus_both_ways(inp: EpochInput, kappa: int) -> tuple[list[int], list[int]]:
    """(by bisection, by sorting each column) on one epoch's weights, for a kappa in (0, total]."""
    epoch = _Epoch(inp)
    for step in ("process_activity", "process_stake", "process_permits", "process_active_stake", "process_weights"):
        getattr(epoch, step)()
    a = epoch.active_stake
    voters = [i for i in range(inp.n) if a[i] > 0]
    stake_hat = yuma._normalize([a[i] for i in voters])
    kappa = max(1, min(kappa, sum(stake_hat)))
    sorting = [0] * inp.n
    epoch.consensus_by_sorting(voters, stake_hat, kappa, range(inp.n), sorting)
    return epoch.consensus_by_bisection(voters, stake_hat, kappa), sorting


@st.composite
def voting_subnets(draw: st.DrawFn) -> EpochInput:
    """Every uid votes on every uid with weights spread, tied or bunched (a few values apart)."""
    n = draw(st.integers(2, 24))
    shape = draw(st.sampled_from(["spread", "ties", "bunched", "zeros"]))
    values = {
        "spread": U16,
        "ties": st.sampled_from([0, 7, 65535]),
        "bunched": st.integers(40_000, 40_003),
        "zeros": st.sampled_from([0, 0, 0, 1, 65535]),
    }[shape]
    weights = [[(j, draw(values)) for j in range(n)] for _ in range(n)]
    return EpochInput(
        n=n, current_block=10, tempo=1, activity_cutoff=100, last_update=[9] * n,
        block_at_registration=[0] * n,
        stake=draw(st.lists(st.sampled_from([1, 10**12]) | st.integers(1, 10**14), min_size=n, max_size=n)),
        validator_permit=[True] * n, max_allowed_validators=n, weights=weights, bonds=[[]] * n, emission=10**9,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(voting_subnets(), st.sampled_from([1, 1 << 31, 1 << 32]) | st.integers(1, 1 << 32),
       st.sampled_from([(32, 12, 64), (1, 12, 64), (10**9, 40, 2), (10**9, 3, 0), (10**9, 0, 64)]))
def test_consensus_by_bisection_equals_sorting(inp: EpochInput, kappa: int, tuning: tuple[int, int, int]) -> None:
    """Each tuning (stop ratio, pass limit, entries a column may keep) sends columns down a different
    branch: answered by a bracket of width one, by the gathered entries, or sorted whole."""
    per_pass, passes, column_max = tuning
    with mock.patch.multiple(yuma, _BISECT_ENTRIES_PER_PASS=per_pass, _BISECT_PASSES_MAX=passes,
                             _BISECT_COLUMN_ENTRIES_MAX=column_max):
        bisection, sorting = consensus_both_ways(inp, kappa)
    assert bisection == sorting


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(epoch_inputs(max_n=30), st.integers(1, 2))
def test_epochs_with_consensus_by_bisection_equal_the_reference(inp: EpochInput, epochs: int) -> None:
    """The whole epoch with the bisection used at every size (it starts at 4,096 weight entries)."""
    with mock.patch.object(yuma, "_BISECT_MIN_ENTRIES", 0):
        assert_chained_epochs_match_reference(inp, epochs)


def test_scaled_bonds_from_u16_equal_scaling_the_proportions() -> None:
    """The EMA's decayed bonds made in one multiply (no 65535 in the row) or two (a 65535, whose
    proportion is exactly 1) are the same numbers, for factors up to 1."""
    rng = random.Random(3)
    epoch = _Epoch(base_input(n=64, last_update=[1] * 64, block_at_registration=[0] * 64, stake=[1] * 64,
                              validator_permit=[True] * 64, weights=[[]] * 64, bonds=[[]] * 64))
    for row in ([rng.randrange(0, 65535) for _ in range(64)], [65535] * 64,
                [rng.choice([0, 65534, 65535, 255, 65280]) for _ in range(64)]):
        dense = array("H", row)
        for factor in (1, ONE32 // 3, ONE32 - 1, ONE32):
            assert epoch.scaled_from_u16(dense, factor) == epoch.scale_row(epoch.from_u16(dense), factor)


def test_weight_proportions_on_64_bit_lanes_are_exact() -> None:
    """`_Epoch.proportions` is floor(u * 2^32 / total) for every u16 lane, on both of its paths (one
    multiply where the magic number's excess allows a shorter shift, else the magic split in two);
    the sample reaches both, and rows with a lone weight, tiny totals and 65535s."""
    rng = random.Random(9)
    n = 96
    epoch = _Epoch(base_input(n=n, last_update=[1] * n, block_at_registration=[0] * n, stake=[1] * n,
                              validator_permit=[True] * n, weights=[[]] * n, bonds=[[]] * n))
    lanes = epoch.rows
    paths = set()
    rows = [[65535] + [0] * (n - 1), [1] + [0] * (n - 1), [1, 2] + [0] * (n - 2), [65535] * n]
    rows += [[rng.choice([0, 1, 65535, rng.randrange(65536)]) for _ in range(n)] for _ in range(400)]
    for row in rows:
        dense = array("H", row)
        total = sum(row)
        if not total:
            continue
        k = 15 + total.bit_length()
        magic = (1 << (32 + k)) // total + 1
        paths.add(min(65535, total) * (magic * total - (1 << (32 + k))) < (1 << k))
        packed, words = epoch.proportions(lanes.pack_u16(dense), total)
        expected = [(u << 32) // total for u in row]
        assert list(words) == expected
        assert packed == lanes.pack(array("Q", expected))
    assert paths == {True, False}


@pytest.mark.parametrize("shape", ["spread", "bunched", "two_camps"])
def test_consensus_by_bisection_at_its_default_settings(shape: str) -> None:
    """600 uids, 80 of them voting (48,000 votes; the default settings, nothing patched): spread
    weights end in a few gathered entries per column, bunched ones (80 votes within a few units
    of each other, more than a column may keep) in columns sorted whole, and two camps of
    validators with tied values in many gathered ties; all equal the per-column sort."""
    rng = random.Random(shape)
    n, voters = 600, 80

    def weight(i: int, j: int) -> int:
        if shape == "spread":
            return rng.randrange(65536)
        if shape == "bunched":
            return 50_000 + rng.randrange(4)
        return 65535 if (i < voters // 2) == (j % 2 == 0) else 1

    weights = [[(j, weight(i, j)) for j in range(n)] if i < voters else [] for i in range(n)]
    inp = EpochInput(
        n=n, current_block=10, tempo=1, activity_cutoff=100, last_update=[9] * n, block_at_registration=[0] * n,
        stake=[rng.randrange(10**12, 10**14) if i < voters else 0 for i in range(n)],
        validator_permit=[i < voters for i in range(n)], max_allowed_validators=voters, weights=weights,
        bonds=[[]] * n, emission=10**9,
    )
    bisection, sorting = consensus_both_ways(inp, (32767 << 32) // 65535)
    assert bisection == sorting
