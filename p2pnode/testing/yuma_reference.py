"""A slow, literal port of subtensor's sparse epoch (`epoch_mechanism` and the `math.rs` helpers it
calls), kept to cross-check the fast `p2pnode.chain.yuma.run_epoch` on random cases.

Every function here mirrors one subtensor function of the same name, operation by operation, with
the saturating fixed-point ops of `p2pnode.chain.fixed`. Sparse matrices are lists of rows of
`(column, raw)` tuples. Nothing here is tuned; clarity is the point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from p2pnode.chain.fixed import (
    ONE32,
    U64_MAX,
    add32,
    checked_mul32,
    fixed64_to_fixed32,
    from_int32,
    from_int64,
    from_int96,
    from_u16_proportion,
    liquid_alpha_sigmoid,
    mul32,
    mul96,
    normalize32,
    normalize64,
    safe_div32,
    safe_div64,
    sub32,
    to_u16_proportion,
    to_u64,
    to_u64_from64,
)
from p2pnode.chain.yuma import EMPTY_ROW, EpochInput, EpochOutput, SparseRow

Sparse = list[list[tuple[int, int]]]


def is_topk_nonzero(vector: Sequence[int], k: int) -> list[bool]:
    n = len(vector)
    result = [v != 0 for v in vector]
    if n < k:
        return result
    idxs = sorted(range(n), key=lambda i: vector[i])  # stable ascending
    for idx in idxs[: max(n - k, 0)]:
        result[idx] = False
    return result


def weighted_median(
    stake: Sequence[int],
    score: Sequence[int],
    partition_idx: Sequence[int],
    minority: int,
    partition_lo: int,
    partition_hi: int,
) -> int:
    """The iterative mid-pivot weighted median of `math.rs`."""
    n = len(partition_idx)
    if n == 0:
        return 0
    current = list(partition_idx)
    lo, hi = partition_lo, partition_hi
    iteration, limit = 0, n
    while True:
        size = len(current)
        if size == 0:
            return 0
        if size == 1:
            return score[current[0]]
        pivot = score[current[size // 2]]
        lo_stake = hi_stake = 0
        lower: list[int] = []
        upper: list[int] = []
        for idx in current:
            if score[idx] == pivot:
                continue
            if score[idx] < pivot:
                lo_stake = add32(lo_stake, stake[idx])
                lower.append(idx)
            else:
                hi_stake = add32(hi_stake, stake[idx])
                upper.append(idx)
        if minority < add32(lo, lo_stake) and lower:
            current = lower
            hi = add32(lo, lo_stake)
        elif sub32(hi, hi_stake) <= minority and upper:
            current = upper
            lo = sub32(hi, hi_stake)
        else:
            return pivot
        iteration += 1
        if iteration > limit:
            return 0


def weighted_median_col_sparse(stake: Sequence[int], score: Sparse, columns: int, majority: int) -> list[int]:
    use_stake = normalize32([s for s in stake if s > 0])
    stake_sum = sum(use_stake)
    minority = sub32(stake_sum, majority)
    idx = list(range(len(use_stake)))
    use_score = [[0] * len(use_stake) for _ in range(columns)]
    k = 0
    for s, row in zip(stake, score, strict=True):
        if s > 0:
            for c, val in row:
                if c < columns:
                    use_score[c][k] = val
            k += 1
    return [weighted_median(use_stake, col, idx, minority, 0, stake_sum) for col in use_score]


def mask_rows_sparse(mask: Sequence[bool], m: Sparse) -> Sparse:
    return [[] if masked else list(row) for masked, row in zip(mask, m, strict=True)]


def mask_diag_sparse(m: Sparse) -> Sparse:
    return [[(j, v) for j, v in row if j != i] for i, row in enumerate(m)]


def mask_diag_sparse_except_index(m: Sparse, except_index: int) -> Sparse:
    return [[(j, v) for j, v in row if i != j or (i == except_index and j == except_index)] for i, row in enumerate(m)]


def vec_mask_sparse_matrix(
    m: Sparse, first: Sequence[int], second: Sequence[int], mask_fn: Callable[[int, int], bool]
) -> Sparse:
    return [[(j, v) for j, v in row if not mask_fn(first[i], second[j])] for i, row in enumerate(m)]


def scalar_vec_mask_sparse_matrix(
    m: Sparse, scalar: int, vector: Sequence[int], mask_fn: Callable[[int, int], bool]
) -> Sparse:
    return [[(j, v) for j, v in row if not mask_fn(scalar, vector[j])] for row in m]


def inplace_row_normalize_sparse(m: Sparse) -> None:
    for row in m:
        total = sum(v for _, v in row)
        if total > 0:
            row[:] = [(j, safe_div32(v, total)) for j, v in row]


def col_clip_sparse(m: Sparse, threshold: Sequence[int]) -> Sparse:
    result: Sparse = [[] for _ in m]
    for i, row in enumerate(m):
        for j, v in row:
            if threshold[j] < v:
                if 0 < threshold[j]:
                    result[i].append((j, threshold[j]))
            else:
                result[i].append((j, v))
    return result


def row_sum_sparse(m: Sparse) -> list[int]:
    return [sum(v for _, v in row) for row in m]


def matmul_sparse(m: Sparse, vector: Sequence[int], columns: int) -> list[int]:
    result = [0] * columns
    for i, row in enumerate(m):
        for j, v in row:
            result[j] = add32(result[j], mul32(vector[i], v))
    return result


def matmul_transpose_sparse(m: Sparse, vector: Sequence[int]) -> list[int]:
    result = [0] * len(m)
    for i, row in enumerate(m):
        for j, v in row:
            result[i] = add32(result[i], mul32(vector[j], v))
    return result


def interpolate_sparse(mat1: Sparse, mat2: Sparse, columns: int, ratio: int) -> Sparse:
    if ratio == 0:
        return [list(r) for r in mat1]
    if ratio == ONE32:
        return [list(r) for r in mat2]
    result: Sparse = [[] for _ in mat1]
    for i in range(len(mat1)):
        row1 = [0] * columns
        for j, v in mat1[i]:
            row1[j] = v
        row2 = [0] * columns
        for j, v in mat2[i]:
            row2[j] = v
        for j in range(columns):
            interp = add32(row1[j], mul32(ratio, sub32(row2[j], row1[j])))
            if interp > 0:
                result[i].append((j, interp))
    return result


def inplace_col_normalize_sparse(m: Sparse, columns: int) -> None:
    col_sum = [0] * columns
    for row in m:
        for j, v in row:
            col_sum[j] = add32(col_sum[j], v)
    for row in m:
        row[:] = [(j, v if col_sum[j] == 0 else safe_div32(v, col_sum[j])) for j, v in row]


def inplace_col_max_upscale_sparse(m: Sparse, columns: int) -> None:
    col_max = [0] * columns
    for row in m:
        for j, v in row:
            if col_max[j] < v:
                col_max[j] = v
    for row in m:
        row[:] = [(j, v if col_max[j] == 0 else safe_div32(v, col_max[j])) for j, v in row]


def row_hadamard_sparse(m: Sparse, vector: Sequence[int]) -> Sparse:
    return [[(j, mul32(v, vector[i])) for j, v in row] for i, row in enumerate(m)]


def mat_ema_sparse(new: Sparse, old: Sparse, alpha: int) -> Sparse:
    n = len(new)
    one_minus_alpha = sub32(ONE32, alpha)
    result: Sparse = []
    for new_row, old_row in zip(new, old, strict=True):
        acc = [0] * n
        for j, v in new_row:
            acc[j] = add32(acc[j], mul32(alpha, v))
        for j, v in old_row:
            acc[j] = add32(acc[j], mul32(one_minus_alpha, v))
        result.append([(j, v) for j, v in enumerate(acc) if v > 0])
    return result


def mat_ema_alpha_sparse(new: Sparse, old: Sparse, alpha: list[list[int]]) -> Sparse:
    result: Sparse = []
    for new_row, old_row, alpha_row in zip(new, old, alpha, strict=True):
        decayed = [0] * len(alpha_row)
        for j, old_val in old_row:
            if j < len(alpha_row):
                decayed[j] = mul32(sub32(ONE32, alpha_row[j]), old_val)
        out: list[tuple[int, int]] = []
        for j, new_val in new_row:
            if j < len(alpha_row):
                inc = max(mul32(alpha_row[j], new_val), 0)
                val = min(add32(decayed[j], inc), ONE32)
                if val > 0:
                    out.append((j, val))
        result.append(out)
    return result


def _sparse_value_at(row: Sequence[tuple[int, int]], index: int, column: int) -> tuple[int, int]:
    """The value at `column` of a sparse row (columns ascending) walked on from `index` (0 where the
    row has none), and the index the walk stopped at, for the next, higher column."""
    while index < len(row):
        col, val = row[index]
        if col < column:
            index += 1
        else:
            return (val if col == column else 0), index
    return 0, index


def liquid_alpha_matrix_sparse(
    weights: Sparse, bonds: Sparse, consensus: Sequence[int], low: int, high: int, steepness: int
) -> list[list[int]]:
    alphas = []
    for w_row, b_row in zip(weights, bonds, strict=True):
        row_alphas = []
        wi = bi = 0
        for j, c in enumerate(consensus):
            weight, wi = _sparse_value_at(w_row, wi, j)
            bond, bi = _sparse_value_at(b_row, bi, j)
            row_alphas.append(liquid_alpha_sigmoid(c, weight, bond, low, high, steepness))
        alphas.append(row_alphas)
    return alphas


def mat_vec_mul_sparse(m: Sparse, vector: Sequence[int]) -> Sparse:
    result: Sparse = [[] for _ in m]
    for i, row in enumerate(m):
        for j, v in row:
            if j < len(vector):
                prod = mul32(v, vector[j])
                if prod != 0:
                    result[i].append((j, prod))
    return result


def vec_mul(a: Sequence[int], b: Sequence[int]) -> list[int]:
    out = []
    for x, y in zip(a, b, strict=True):
        prod = checked_mul32(x, y)
        out.append(0 if prod is None else prod)
    return out


def bonds_moving_average_alpha(bonds_moving_average: int) -> int:
    bma = safe_div64(from_int64(bonds_moving_average), from_int64(1_000_000))
    return sub32(ONE32, fixed64_to_fixed32(bma))


def run_epoch_reference(inp: EpochInput) -> EpochOutput:
    """The same contract as `yuma.run_epoch`, computed the slow literal way."""
    n = inp.n
    if n == 0:
        return EpochOutput((), (), (), (), (), (), (), (), (), (), ())
    current_block = inp.current_block
    inactive = [min(lu + inp.activity_cutoff, U64_MAX) < current_block for lu in inp.last_update]
    active = [not x for x in inactive]
    bar = list(inp.block_at_registration)
    owner = inp.owner_uid

    # stake
    total_stake = [from_int64(s) for s in inp.stake]
    filtered = [
        0 if (owner != uid and to_u64_from64(s) < inp.stake_threshold) else s
        for uid, s in enumerate(total_stake)
    ]
    filtered = normalize64(filtered)
    stake = [fixed64_to_fixed32(s) for s in filtered]

    # permits
    permits = list(inp.validator_permit)
    if owner is not None:
        permits[owner] = True
    forbids = [not p for p in permits]
    new_permits = is_topk_nonzero(stake, inp.max_allowed_validators)
    if owner is not None:
        new_permits[owner] = True

    # active stake
    active_stake = [0 if (inactive[i] or forbids[i]) else s for i, s in enumerate(stake)]
    active_stake = normalize32(active_stake)

    # weights
    weights: Sparse = [[(j, from_int32(v)) for j, v in row if j < n] for row in inp.weights]
    weights = mask_rows_sparse(forbids, weights)
    weights = mask_diag_sparse(weights) if owner is None else mask_diag_sparse_except_index(weights, owner)
    weights = vec_mask_sparse_matrix(weights, inp.last_update, bar, lambda u, r: u <= r)
    if inp.commit_blocks is not None:
        commit_blocks = [U64_MAX if cb is None else cb for cb in inp.commit_blocks]
        weights = vec_mask_sparse_matrix(weights, commit_blocks, bar, lambda cb, r: cb < r)
    inplace_row_normalize_sparse(weights)

    # consensus, trust, incentive
    kappa = safe_div32(from_int32(inp.kappa), from_int32(65535))
    consensus = weighted_median_col_sparse(active_stake, weights, n, kappa)
    clipped = col_clip_sparse(weights, consensus)
    validator_trust = row_sum_sparse(clipped)
    incentive = normalize32(matmul_sparse(clipped, active_stake, n))

    # bonds
    bonds_penalty = safe_div32(from_int32(inp.bonds_penalty), from_int32(65535))
    weights_for_bonds = interpolate_sparse(weights, clipped, n, bonds_penalty)
    lms = inp.last_mech_step_block
    last_tempo = max(current_block - inp.tempo, 0) if lms == 0 else lms + 1
    if inp.yuma3_on:
        bonds: Sparse = [[(j, from_u16_proportion(u)) for j, u in row if j < n] for row in inp.bonds]
        bonds = scalar_vec_mask_sparse_matrix(bonds, last_tempo, bar, lambda t, r: t <= r)
        if inp.liquid_alpha_on and any(c != 0 for c in consensus):
            alphas = liquid_alpha_matrix_sparse(
                weights_for_bonds,
                bonds,
                consensus,
                from_u16_proportion(inp.alpha_low),
                from_u16_proportion(inp.alpha_high),
                from_int32(inp.alpha_sigmoid_steepness),
            )
            ema_bonds = mat_ema_alpha_sparse(weights_for_bonds, bonds, alphas)
        else:
            ema_bonds = mat_ema_sparse(weights_for_bonds, bonds, bonds_moving_average_alpha(inp.bonds_moving_average))
        ema_norm = [list(r) for r in ema_bonds]
        inplace_col_normalize_sparse(ema_norm, n)
        total_bonds = row_sum_sparse(mat_vec_mul_sparse(ema_norm, incentive))
        dividends = normalize32(vec_mul(total_bonds, active_stake))
    else:
        bonds = [[(j, from_int32(u)) for j, u in row if j < n] for row in inp.bonds]
        bonds = scalar_vec_mask_sparse_matrix(bonds, last_tempo, bar, lambda t, r: t <= r)
        inplace_col_normalize_sparse(bonds, n)
        delta = row_hadamard_sparse(weights_for_bonds, active_stake)
        inplace_col_normalize_sparse(delta, n)
        ema_bonds = mat_ema_sparse(delta, bonds, bonds_moving_average_alpha(inp.bonds_moving_average))
        inplace_col_normalize_sparse(ema_bonds, n)
        dividends = normalize32(matmul_transpose_sparse(ema_bonds, incentive))
        inplace_col_max_upscale_sparse(ema_bonds, n)

    # emission
    combined = [add32(i, d) for i, d in zip(incentive, dividends, strict=True)]
    emission_sum = sum(combined)
    server = list(incentive)
    validator = list(dividends)
    if emission_sum != 0:
        server = [safe_div32(v, emission_sum) for v in server]
        validator = [safe_div32(v, emission_sum) for v in validator]
    combined = normalize32(combined)
    if emission_sum == 0:
        if sum(active_stake) == 0:
            validator = list(stake)
            combined = list(stake)
        else:
            validator = list(active_stake)
            combined = list(active_stake)
    rao = from_int96(inp.emission)

    def amounts(shares: list[int]) -> tuple[int, ...]:
        return tuple(to_u64(mul96(s, rao)) for s in shares)

    bonds_out = tuple(
        SparseRow.from_pairs([(j, to_u16_proportion(v)) for j, v in ema_bonds[i]]) if new_permits[i] else EMPTY_ROW
        for i in range(n)
    )
    return EpochOutput(
        active=tuple(active),
        stake_weight=tuple(to_u16_proportion(v) for v in stake),
        consensus=tuple(to_u16_proportion(v) for v in consensus),
        incentive=tuple(to_u16_proportion(v) for v in incentive),
        dividends=tuple(to_u16_proportion(v) for v in dividends),
        validator_trust=tuple(to_u16_proportion(v) for v in validator_trust),
        emission=amounts(combined),
        server_emission=amounts(server),
        validator_emission=amounts(validator),
        validator_permit=tuple(new_permits),
        bonds=bonds_out,
    )

