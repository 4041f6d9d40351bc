"""Yuma Consensus: one epoch of one subnet, bit-exact with subtensor's sparse `epoch_mechanism`.

The specification is `docs/spec/epoch.md` (§3 the algorithm, §1 the arithmetic, §9 the traps).
`run_epoch` is a pure function of an `EpochInput`: no clock, randomness, I/O or floats. Every value
is a raw fixed-point integer (see `p2pnode.chain.fixed`).

How it is fast enough in pure Python:

* Value equivalence. The chain's matrices are sparse, but every step except one gives the same
  values on dense rows in which an absent entry is 0 (sums, floor products, `min` against the
  consensus, column normalisations, EMAs that keep only entries > 0). So each row that takes part
  (a permitted validator's weights, a stored bond row) is dense; rows that take no part are None.
  The exception is the Yuma 3 liquid-alpha EMA, which keeps exactly the entries of the new weight
  row in their stored order (§3.9b, §9 item 8); that path runs entry by entry.
* Packed lanes. A dense row (or a column) is one Python int holding every entry in a 64- or
  128-bit lane, so one big-int multiply, shift or mask acts on all entries at C speed; an exact
  division by a scalar is a multiply by a magic number (see `_Lanes.div`).
* The stake-weighted median uses the closed form of §3.6 item 4 (the largest t whose votes >= t
  hold kappa), found for every column at once by bisection on packed rows; only the few votes
  left near each answer are sorted (`_Epoch.consensus_by_bisection`).

`p2pnode.testing.yuma_reference` is a literal, slow port of the chain code used to cross-check this.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, compress, repeat, takewhile
from operator import add, and_, floordiv, itemgetter, mul, rshift

from p2pnode.chain.errors import ChainError, Rejected
from p2pnode.chain.fixed import (
    E_I9F23_AS_I32F32,
    EXP_SAFE_MAX,
    EXP_SAFE_MIN,
    FRAC32,
    HALF32,
    I32F32_MAX,
    ONE32,
    U16_MAX,
    U64_MAX,
    clamp32,
    fixed64_to_fixed32,
    from_int64,
    max_upscale_to_u16,
    safe_div64,
    sat32,
    saturating_div32,
)

# `u16_proportion_to_fixed` ((u << 32) // 65535) for the liquid-alpha path, which works per entry.
_FROM_U16 = [(u << FRAC32) // U16_MAX for u in range(U16_MAX + 1)]

I16_MIN = -(1 << 15)
I16_MAX = (1 << 15) - 1
I64F64_INT_MAX = (1 << 63) - 1  # the largest integer an I64F64 holds: bounds the total stake
BONDS_MOVING_AVERAGE_MAX = 1_000_000  # above it the EMA alpha would be negative


# --- errors ------------------------------------------------------------------------------------------


class InvalidEpochInput(ChainError, ValueError):
    """An `EpochInput` field is out of range or malformed; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidWeights(Rejected, ValueError):
    """A weight submission is malformed; `reason` is a stable snake_case name."""


# --- sparse rows -------------------------------------------------------------------------------------

_LITTLE_ENDIAN = sys.byteorder == "little"
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _le_bytes(words: array[int]) -> bytes:
    """An array's items as little-endian bytes."""
    if _LITTLE_ENDIAN:
        return words.tobytes()
    swapped = array(words.typecode, words)
    swapped.byteswap()
    return swapped.tobytes()


def _from_le(typecode: str, data: bytes | bytearray) -> array[int]:
    words = array(typecode)
    words.frombytes(data)
    if not _LITTLE_ENDIAN:
        words.byteswap()
    return words


class SparseRow:
    """One stored sparse row: destination uids and u16 values (parallel `array('H')`s).

    Iterates as `(uid, value)` pairs in stored order, so it can be used wherever a list of pairs
    is; it exists so that rows of thousands of entries are not thousands of tuples. A row is not
    changed once made, so the order of its uids is worked out once (`order`).
    """

    __slots__ = ("uids", "values", "_order")

    def __init__(self, uids: array[int], values: array[int]) -> None:
        if uids.typecode != "H" or values.typecode != "H" or len(uids) != len(values):
            raise ValueError("SparseRow needs two u16 arrays of equal length")
        self.uids = uids
        self.values = values
        self._order: tuple[bool, list[tuple[int, int]] | None] | None = None

    def order(self) -> tuple[bool, list[tuple[int, int]] | None]:
        """(whether the uids are strictly ascending, their runs of consecutive uids as (start
        index, end index) when they are and have at most `_FEW` gaps, else None)."""
        if self._order is None:
            self._order = _row_order(self.uids)
        return self._order

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, int]]) -> SparseRow:
        """Raises TypeError or ValueError for entries that are not pairs of u16 integers."""
        if not pairs:
            return EMPTY_ROW
        try:
            pair_shaped = set(map(len, pairs)) == {2}
        except TypeError:
            pair_shaped = False
        if not pair_shaped:
            raise ValueError("entries must be (uid, value) pairs")
        # itemgetter, not zip(*pairs): no object per entry, so no cyclic-GC passes over big inputs
        uids, values = list(map(_FIRST, pairs)), list(map(_SECOND, pairs))
        if not set(map(type, uids)) | set(map(type, values)) <= {int}:
            raise TypeError("uids and values must be integers")
        try:
            return cls(array("H", uids), array("H", values))
        except OverflowError:
            raise ValueError("uids and values must be u16") from None

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.uids, self.values, strict=True))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.uids, self.values, strict=True)

    def __len__(self) -> int:
        return len(self.uids)

    def __bool__(self) -> bool:
        return len(self.uids) > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SparseRow):
            return self.uids == other.uids and self.values == other.values
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.uids.tobytes(), self.values.tobytes()))

    def __repr__(self) -> str:
        return f"SparseRow({self.pairs()!r})"


EMPTY_ROW = SparseRow(array("H"), array("H"))

RowLike = SparseRow | Sequence[tuple[int, int]]


# --- inputs and outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochInput:
    """Everything one epoch of one subnet (one mechanism) reads (epoch spec §2).

    Per-uid sequences have length `n`. `weights[i]` and `bonds[i]` are the stored sparse rows of
    uid i as `(dest_uid, u16)` pairs in stored order (or `SparseRow`s; either way they are held as
    `SparseRow`s after validation). Weights are stored max-upscaled (§6.1); destinations >= n are
    ignored, for weights and bonds alike. `validator_permit` is the permit vector of the *previous*
    epoch, `stake` the epoch stake weight per uid in rao. `commit_blocks` is None when commit-reveal
    is off, else per uid the earliest unexpired commit block (None: no commit). Hyperparameters
    default to subtensor's storage defaults.
    """

    n: int
    current_block: int
    tempo: int
    activity_cutoff: int
    last_update: Sequence[int]
    block_at_registration: Sequence[int]
    stake: Sequence[int]
    validator_permit: Sequence[bool]
    max_allowed_validators: int
    weights: Sequence[RowLike]
    bonds: Sequence[RowLike]
    emission: int
    stake_threshold: int = 0
    owner_uid: int | None = None
    last_mech_step_block: int = 0
    commit_blocks: Sequence[int | None] | None = None
    kappa: int = 32_767
    bonds_penalty: int = 65_535
    bonds_moving_average: int = 900_000
    yuma3_on: bool = False
    liquid_alpha_on: bool = False
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1_000

    def __post_init__(self) -> None:
        _validate_input(self)


@dataclass(frozen=True, slots=True)
class EpochOutput:
    """What the epoch publishes and stores (epoch spec §3.11, §3.12); per-uid tuples of length n.

    u16 proportions: `stake_weight`, `consensus`, `incentive`, `dividends`, `validator_trust`.
    rao: `emission` (the stored Emission, from the combined share), `server_emission` (to miners),
    `validator_emission` (to validators). `validator_permit` holds the new permits and `bonds` the
    rows as stored after the epoch (empty for uids without a new permit).
    """

    active: tuple[bool, ...]
    stake_weight: tuple[int, ...]
    consensus: tuple[int, ...]
    incentive: tuple[int, ...]
    dividends: tuple[int, ...]
    validator_trust: tuple[int, ...]
    emission: tuple[int, ...]
    server_emission: tuple[int, ...]
    validator_emission: tuple[int, ...]
    validator_permit: tuple[bool, ...]
    bonds: tuple[SparseRow, ...]


def _is_int(value: object) -> bool:
    return type(value) is int


def _check_uint(name: str, value: object, bits: int) -> None:
    if not _is_int(value):
        raise InvalidEpochInput(name, "must be an integer")
    if not 0 <= value < (1 << bits):  # type: ignore[operator]
        raise InvalidEpochInput(name, f"must be in [0, 2^{bits})")


def _check_uint_vector(name: str, values: Sequence[object], n: int, bits: int) -> None:
    if len(values) != n:
        raise InvalidEpochInput(name, f"must have n={n} entries, has {len(values)}")
    if n and not set(map(type, values)) <= {int}:
        raise InvalidEpochInput(name, "entries must be integers")
    if n and (min(values) < 0 or max(values) >= (1 << bits)):  # type: ignore[type-var, operator]
        raise InvalidEpochInput(name, f"entries must be in [0, 2^{bits})")


def _check_rows(name: str, rows: Sequence[RowLike], n: int) -> tuple[SparseRow, ...]:
    """Validate stored rows and hold each as a `SparseRow`."""
    if len(rows) != n:
        raise InvalidEpochInput(name, f"must have n={n} rows, has {len(rows)}")
    full = array("H", range(n)).tobytes()
    out: list[SparseRow] = []
    for i, row in enumerate(rows):
        if isinstance(row, SparseRow):
            parsed = row
        elif not row:
            out.append(EMPTY_ROW)
            continue
        else:
            try:
                parsed = SparseRow.from_pairs(row)
            except (TypeError, ValueError) as exc:
                raise InvalidEpochInput(f"{name}[{i}]", str(exc)) from None
        dest = parsed.uids
        if dest.tobytes() != full and not parsed.order()[0] and len(set(dest)) != len(dest):
            raise InvalidEpochInput(f"{name}[{i}]", "duplicate destination uid")
        out.append(parsed)
    return tuple(out)


def _validate_input(inp: EpochInput) -> None:
    setattr_ = object.__setattr__
    if not _is_int(inp.n) or not 0 <= inp.n <= U16_MAX:
        raise InvalidEpochInput("n", "must be an integer in [0, 65535]")
    n = inp.n
    for name in ("current_block", "tempo", "activity_cutoff", "emission", "stake_threshold",
                 "last_mech_step_block", "bonds_moving_average"):
        _check_uint(name, getattr(inp, name), 64)
    if inp.bonds_moving_average > BONDS_MOVING_AVERAGE_MAX:
        raise InvalidEpochInput("bonds_moving_average", "must be at most 1000000 (per million)")
    for name in ("max_allowed_validators", "kappa", "bonds_penalty", "alpha_low", "alpha_high"):
        _check_uint(name, getattr(inp, name), 16)
    steep = inp.alpha_sigmoid_steepness
    if not _is_int(steep) or not I16_MIN <= steep <= I16_MAX:
        raise InvalidEpochInput("alpha_sigmoid_steepness", "must be an i16 integer")
    for name in ("yuma3_on", "liquid_alpha_on"):
        if type(getattr(inp, name)) is not bool:
            raise InvalidEpochInput(name, "must be a bool")
    for name in ("last_update", "block_at_registration", "stake"):
        values = tuple(getattr(inp, name))
        _check_uint_vector(name, values, n, 64)
        setattr_(inp, name, values)
    if sum(inp.stake) > I64F64_INT_MAX:
        raise InvalidEpochInput("stake", "total stake exceeds the I64F64 range (2^63 - 1 rao)")
    permits = tuple(inp.validator_permit)
    if len(permits) != n or not set(map(type, permits)) <= {bool}:
        raise InvalidEpochInput("validator_permit", f"must be n={n} booleans")
    setattr_(inp, "validator_permit", permits)
    owner = inp.owner_uid
    if owner is not None and (not _is_int(owner) or not 0 <= owner < n):
        raise InvalidEpochInput("owner_uid", "must be null or a uid below n")
    if inp.commit_blocks is not None:
        cbs = tuple(inp.commit_blocks)
        if len(cbs) != n:
            raise InvalidEpochInput("commit_blocks", f"must have n={n} entries")
        for cb in cbs:
            if cb is not None and (not _is_int(cb) or not 0 <= cb <= U64_MAX):
                raise InvalidEpochInput("commit_blocks", "entries must be null or u64 blocks")
        setattr_(inp, "commit_blocks", cbs)
    setattr_(inp, "weights", _check_rows("weights", inp.weights, n))
    setattr_(inp, "bonds", _check_rows("bonds", inp.bonds, n))


# --- weights at submission (§6.1) --------------------------------------------------------------------


def canonicalise_weights(
    uids: Sequence[int], values: Sequence[int], n: int | None = None
) -> list[tuple[int, int]]:
    """A weight submission as `(uid, value)` pairs sorted by uid.

    Sorting at submission removes the chain's row-order dependence (epoch spec §9 item 8). Raises
    `InvalidWeights` (reasons: length_mismatch, not_an_integer, uid_out_of_range,
    value_out_of_range, duplicate_uid, too_many_weights) instead of guessing.
    """
    if len(uids) != len(values):
        raise InvalidWeights("length_mismatch", f"{len(uids)} uids, {len(values)} values")
    for u in uids:
        if not _is_int(u):
            raise InvalidWeights("not_an_integer", f"uid {u!r}")
        if not 0 <= u <= U16_MAX or (n is not None and u >= n):
            raise InvalidWeights("uid_out_of_range", f"uid {u}")
    for v in values:
        if not _is_int(v):
            raise InvalidWeights("not_an_integer", f"value {v!r}")
        if not 0 <= v <= U16_MAX:
            raise InvalidWeights("value_out_of_range", f"value {v}")
    if len(set(uids)) != len(uids):
        seen: set[int] = set()
        dup = next(u for u in uids if u in seen or seen.add(u))  # type: ignore[func-returns-value]
        raise InvalidWeights("duplicate_uid", f"uid {dup}")
    if n is not None and len(uids) > n:
        raise InvalidWeights("too_many_weights", f"{len(uids)} weights for {n} uids")
    return sorted(zip(uids, values, strict=True))


def max_upscale_weights(values: Sequence[int]) -> list[int]:
    """The stored form of u16 weight values (§6.1): scaled so the largest is 65535.

    `vec_u16_max_upscale_to_u16`: with max > 32768 the factor 65535/max is truncated first, then
    `round(v * factor)`; otherwise `round(v * 65535 / max)`; rounding is half away from zero.
    """
    return max_upscale_to_u16([v << FRAC32 for v in values])


# --- small exact kernels (also used by tests) --------------------------------------------------------


def topk_nonzero(values: Sequence[int], k: int) -> list[bool]:
    """`is_topk_nonzero`: True for non-zero values among the k largest; ties: lower index loses."""
    n = len(values)
    result = [v != 0 for v in values]
    if n < k:
        return result
    for idx in sorted(range(n), key=values.__getitem__)[: n - k]:  # stable ascending sort
        result[idx] = False
    return result


def weighted_median_by_threshold(stake: Sequence[int], score: Sequence[int], threshold: int) -> int:
    """Closed form of subtensor's `weighted_median` (epoch spec §3.6 item 4), positive stakes.

    The largest score s with sum(stake_i : score_i >= s) >= threshold, else the smallest score,
    or 0 for no scores. The iterative algorithm called with `minority`, `lo = 0` and
    `hi = sum(stake)` corresponds to threshold = hi - minority; in the epoch that is kappa.
    """
    m = len(score)
    if m == 0:
        return 0
    order = sorted(range(m), key=score.__getitem__, reverse=True)
    pos = bisect_left(list(accumulate(map(stake.__getitem__, order))), threshold)
    return score[order[pos]] if pos < m else score[order[-1]]


def select_uid_to_prune(
    emission: Sequence[int],
    block_at_registration: Sequence[int],
    current_block: int,
    immunity_period: int,
    min_non_immune_uids: int,
    owner_immune_uids: Sequence[int] = (),
) -> int | None:
    """The uid a registration on a full subnet replaces (epoch spec §3.14), or None if none may go.

    Owner-immune uids are never chosen. Among the others the best candidate has the lowest
    emission, then the lowest registration block, then the lowest uid; a non-immune candidate is
    taken only while more than `min_non_immune_uids` uids are non-immune, else the best immune one.
    """
    skip = set(owner_immune_uids)
    free_count = 0
    best_free: tuple[int, int, int] | None = None
    best_immune: tuple[int, int, int] | None = None
    for uid, (em, reg) in enumerate(zip(emission, block_at_registration, strict=True)):
        if uid in skip:
            continue
        key = (em, reg, uid)
        if max(current_block - reg, 0) < immunity_period:
            if best_immune is None or key < best_immune:
                best_immune = key
        else:
            free_count += 1
            if best_free is None or key < best_free:
                best_free = key
    if free_count > min_non_immune_uids and best_free is not None:
        return best_free[2]
    return None if best_immune is None else best_immune[2]


def immune_owner_uids(
    owner_coldkey_uids: Sequence[int],
    block_at_registration: Sequence[int],
    owner_uid: int | None,
    limit: int = 1,
) -> list[int]:
    """Uids that are never pruned (§3.14): the owner coldkey's uids on the subnet, oldest
    registration first (then lowest uid), cut to `limit`, with the owner hotkey's uid put first."""
    ordered = sorted(owner_coldkey_uids, key=lambda u: (block_at_registration[u], u))[:limit]
    if owner_uid is not None and owner_uid not in ordered:
        ordered = [owner_uid, *ordered][:limit]
    return ordered


# --- packed lanes ------------------------------------------------------------------------------------
#
# A vector of non-negative raws is packed into one int, lane k at bits [k*bits, (k+1)*bits). One
# big-int operation then acts on every lane at C speed:
#   * lane-wise add: `a + b` (callers keep every lane below its width);
#   * floor(lane * f / 2^32) for a scalar f, i.e. a raw `saturating_mul` that cannot saturate:
#     clear each lane's low 32 bits of `p * f`, then shift the whole int right by 32;
#   * floor(lane * 2^32 / d) for a scalar d > 0, i.e. a raw `safe_div`: multiply by the magic
#     number m = floor(2^(32+k) / d) + 1 with k = x_bits + bitlen(d), then take bits >= k of each
#     lane. For every lane x < 2^x_bits this is exact: x*m/2^k exceeds x*2^32/d by less than
#     x/2^k < 1/d, and x*2^32/d is at least 1/d below the next integer;
#   * lane-wise min of 64-bit lanes holding values < 2^63, with a guard bit.
# Lanes travel through little-endian bytes and `array('Q')` (C speed, no int per entry).


def _int_from_words(words: array[int]) -> int:
    return int.from_bytes(words if _LITTLE_ENDIAN else _le_bytes(words), "little")


class _Lanes:
    """`count` lanes of `bits` (64 or 128) bits each."""

    def __init__(self, count: int, bits: int) -> None:
        self.count = count
        self.bits = bits
        self.step = bits // 64
        self.width = bits // 8 * count
        self.ones = _int_from_words(array("Q", [1] + [0] * (self.step - 1)) * count)
        self.guard = self.ones << (bits - 1)
        self.zero_words = array("Q", [0]) * (self.step * count)
        self._masks: dict[int, int] = {}
        self.high = self.mask(bits) ^ self.mask(FRAC32)  # bits [32, bits) of every lane

    def mask(self, width: int) -> int:
        """The low `width` bits of every lane set."""
        m = self._masks.get(width)
        if m is None:
            m = self._masks[width] = ((1 << width) - 1) * self.ones
        return m

    def nonzero_flags(self, packed: int) -> int:
        """The guard bit of every lane that is not 0 (lanes < 2^(bits-1); no borrow can occur)."""
        return ((packed | self.guard) - self.ones) & self.guard

    def flagged_lanes(self, flags: int) -> list[int]:
        """Indices, ascending, of the lanes whose guard bit is set in `flags` (no other bits set)."""
        lane_bytes = self.bits // 8
        guards = flags.to_bytes(self.width, "little")[lane_bytes - 1 :: lane_bytes]  # 0x80 or 0
        out = []
        k = guards.find(0x80)
        while k >= 0:
            out.append(k)
            k = guards.find(0x80, k + 1)
        return out

    def pack(self, values: array[int]) -> int:
        """Words (< 2^64) into lanes."""
        if self.step == 1:
            return _int_from_words(values)
        words = array("Q", self.zero_words)
        words[0 :: self.step] = values
        return _int_from_words(words)

    def pack_u16(self, values: array[int]) -> int:
        """u16 words into lanes, copying bytes (no int per entry)."""
        raw = _le_bytes(values)
        lane_bytes = 8 * self.step
        spread = bytearray(lane_bytes * len(values))
        spread[0::lane_bytes] = raw[0::2]
        spread[1::lane_bytes] = raw[1::2]
        return int.from_bytes(spread, "little")

    def unpack(self, packed: int) -> array[int]:
        """The lanes (each < 2^64) as words."""
        words = _from_le("Q", packed.to_bytes(self.width, "little"))
        return words if self.step == 1 else words[0 :: self.step]

    def unpack_u16(self, packed: int) -> array[int]:
        """The lanes (each < 2^16) as u16 words."""
        return _u16_from_lanes(packed.to_bytes(self.width, "little"), 8 * self.step, 0)

    def scale(self, packed: int, factor: int) -> int:
        """floor(lane * factor / 2^32) where every lane * factor < 2^bits."""
        return ((packed * factor) & self.high) >> FRAC32

    def products(self, a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
        """For factors in [0, 2^32], lane-wise floor(a_k * b_k / 2^32) and a 1 in each lane whose
        product has a fraction. The products are made entry by entry (the one per-entry step)."""
        try:
            packed = self.pack(array("Q", map(mul, a, b)))
        except OverflowError:  # a product of exactly 2^64 (1 * 1 in I32F32)
            products = list(map(mul, a, b))
            whole = self.pack(array("Q", map(rshift, products, repeat(FRAC32))))
            fraction = self.pack(array("Q", map(and_, products, repeat(ONE32 - 1))))
        else:
            whole = (packed & self.high) >> FRAC32
            fraction = packed & self.mask(FRAC32)
        return whole, self.nonzero_flags(fraction) >> 63

    def div(self, packed: int, divisor: int, x_bits: int) -> int:
        """floor(lane * 2^32 / divisor) for lanes < 2^x_bits (x_bits <= 47 on 128-bit lanes)."""
        k = x_bits + divisor.bit_length()
        magic = (1 << (FRAC32 + k)) // divisor + 1
        return ((packed * magic) >> k) & self.mask(self.bits - k)

    def minimum(self, a: int, b: int) -> int:
        """Lane-wise min of 64-bit lanes holding values < 2^63."""
        ge = ((a | self.guard) - b) & self.guard  # the guard bit survives where a >= b
        select = ge - (ge >> 63)  # every value bit set where a >= b
        return a ^ ((a ^ b) & select)


class _KeepBits(dict[int, int]):
    """k -> bits [k, lane width) of every lane, computed on first use."""

    def __init__(self, lanes: _Lanes) -> None:
        super().__init__()
        self.lanes = lanes

    def __missing__(self, k: int) -> int:
        bits = self[k] = self.lanes.mask(self.lanes.bits) ^ self.lanes.mask(k)
        return bits


def _u16_from_lanes(data: bytes | bytearray, stride: int, offset: int) -> array[int]:
    """The low 16 bits of little-endian lanes `stride` bytes apart, starting at byte `offset`."""
    lo = data[offset::stride]
    raw = bytearray(2 * len(lo))
    raw[0::2] = lo
    raw[1::2] = data[offset + 1 :: stride]
    return _from_le("H", raw)


# Consensus by bisection (`_Epoch.consensus_by_bisection`): used from this many weight entries (m
# voters x n columns; below it sorting each column is as quick); passes stop once the open brackets
# hold at most one entry in this many, or after this many passes; a column left with more entries
# than this is sorted whole. The stake sums share a lane with a count above this bit.
_BISECT_MIN_ENTRIES = 4096
_BISECT_ENTRIES_PER_PASS = 32
_BISECT_PASSES_MAX = 12
_BISECT_COLUMN_ENTRIES_MAX = 64
_COUNT_SHIFT = 40

_FEW = 64  # up to this many gaps or holes, rows are handled by block copies instead of per entry


@lru_cache(maxsize=64)
def _lanes64(count: int) -> _Lanes:
    return _Lanes(count, 64)


def _row_order(uids: array[int]) -> tuple[bool, list[tuple[int, int]] | None]:
    """`SparseRow.order` of u16 uids, computed on packed lanes, not per entry."""
    count = len(uids)
    if count < 2:
        return True, [(0, count)] if count else []
    lanes = _lanes64(count)
    packed = lanes.pack_u16(uids)
    following = (packed >> 64) | lanes.guard  # lane k: 2^63 + uids[k+1] (top lane: 2^63)
    inner = lanes.guard ^ (1 << (64 * count - 1))  # guard bits of every lane but the top one
    if (following - packed - lanes.ones) & inner != inner:  # some uids[k+1] - uids[k] < 1
        return False, None
    gaps = (following - packed - 2 * lanes.ones) & inner  # uids[k+1] - uids[k] >= 2
    if gaps.bit_count() > _FEW:
        return True, None
    runs, start = [], 0
    for k in lanes.flagged_lanes(gaps):
        runs.append((start, k + 1))
        start = k + 1
    runs.append((start, count))
    return True, runs


class _Columns:
    """The columns of an R x n matrix of words, each as an int of R 128-bit lanes (lane p holds row
    p's word j: `_Lanes(R, 128)`). The rows are stacked as they are and a column is read with one
    strided slice; laying the matrix out column by column instead writes every word R words away
    from the last, which costs more than all the reads.
    """

    def __init__(self, rows: Sequence[array[int] | None], n: int) -> None:
        self.n = n
        self.stack = array("Q")
        zero = array("Q", [0]) * n
        for row in rows:
            if row is None:
                self.stack += zero
            elif row.typecode == "Q":
                self.stack += row
            else:  # u16 words widened by copying bytes (no int per entry)
                raw, wide = _le_bytes(row), bytearray(8 * n)
                wide[0::8] = raw[0::2]
                wide[1::8] = raw[1::2]
                self.stack += _from_le("Q", wide)
        self.spread = array("Q", [0]) * (2 * len(rows))

    def column(self, j: int) -> int:
        spread = self.spread
        spread[0::2] = self.stack[j :: self.n]
        return _int_from_words(spread)


def _lane_words(data: bytes, step: int) -> Sequence[int]:
    """The low 64-bit word of every lane of little-endian bytes (lanes of `step` words)."""
    if _LITTLE_ENDIAN:
        return memoryview(data).cast("Q")[::step]
    return _from_le("Q", data)[::step]


# --- the epoch ---------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _fold_cuts(count: int, width: int) -> tuple[tuple[int, int], ...]:
    """`_lane_sum`'s (cut, mask below the cut) per fold, made once per shape (the masks are as large
    as half the packed int, so making them on every call costs as much as the fold)."""
    cuts = []
    while count > 1:
        half = count >> 1
        cut = half * width
        cuts.append((cut, (1 << cut) - 1))
        count -= half
    return tuple(cuts)


def _lane_sum(packed: int, count: int, width: int) -> int:
    """The sum of `count` lanes of `width` bits, folding halves onto each other (the sum, and so
    every partial sum, must fit in a lane)."""
    for cut, below in _fold_cuts(count, width):
        packed = (packed & below) + (packed >> cut)
    return packed


def _normalize(values: list[int]) -> list[int]:
    """`inplace_normalize` for non-negative raws: v / sum (truncating), unchanged when sum is 0."""
    total = sum(values)
    if total == 0:
        return values
    return list(map(floordiv, map(mul, values, repeat(ONE32)), repeat(total)))


def _to_u16(values: Sequence[int]) -> tuple[int, ...]:
    """`fixed_proportion_to_u16` on non-negative raws: floor(v * 65535 / 2^32), capped."""
    out = list(map(rshift, map(mul, values, repeat(U16_MAX)), repeat(FRAC32)))
    if out and max(out) > U16_MAX:
        out = [min(v, U16_MAX) for v in out]
    return tuple(out)


def _merge_lookup(entries: Sequence[tuple[int, int]]) -> dict[int, int]:
    """What subtensor's peekable merge over columns 0..n-1 finds in a row (epoch spec §9 item 8).

    The merge skips entries whose uid is below the current column and waits at the first one that
    is not, so on a row not sorted by uid it misses entries: an entry is found iff its uid is >=
    the column the merge stands at when it reaches the entry.
    """
    found = dict(entries)
    if len(found) == len(entries) and list(found) == sorted(found):
        return found  # strictly ascending uids (rows as stored on chain): the merge finds every entry
    found = {}
    column = 0
    for j, v in entries:
        if j >= column:
            found[j] = v
            column = j + 1
    return found


# exp32's divisors: floor(floor(p / 2^32) / i) == p // (i << 32) for p >= 0.
_EXP_DIVISORS = tuple(i << FRAC32 for i in range(2, 32))


def exp_safe32_fast(raw: int) -> int:
    """`fixed.exp_safe32`, bit-identical, for the per-entry liquid alpha.

    The same series with the same truncations, minus exp32's overflow checks: within exp_safe's
    clamp [-20, 20] none can fire (every partial sum is at most e^20 < 2^31, and every product
    term * t at most 20 times the series' largest term, 20^19/19! < 2^26). tests/chain checks it
    against `exp_safe32`.
    """
    x = EXP_SAFE_MIN if raw < EXP_SAFE_MIN else EXP_SAFE_MAX if raw > EXP_SAFE_MAX else raw
    if x == 0:
        return ONE32
    if x == ONE32:
        return E_I9F23_AS_I32F32
    t = -x if x < 0 else x
    result = term = t
    result += ONE32
    for divisor in _EXP_DIVISORS:
        term = term * t // divisor
        if not term:
            break  # every later term is 0 too
        result += term
    # 1 / result for negative inputs: result >= 1, so the truncating quotient is a floor and fits.
    return (ONE32 << FRAC32) // result if x < 0 else result


# Bracketing exp: the series of exp_safe32_fast, S(t) for t = |x| (t > 0), is only needed through
# alpha, which moves in steps: alpha is monotone in S, so when alpha is the same at both ends of an
# interval known to hold S, that is alpha exactly. The interval comes from A ~ 2^32 * e^T (T =
# t / 2^32) with a proven error bound:
#   * S <= P(T) <= 2^32 e^T, where P is the 31-term Taylor polynomial (every term is floored);
#   * S >= P(T) - _SERIES_LOSS[c]: term_i = floor(term_(i-1) * T / i) loses e_i <= e_(i-1) T / i + 1
#     against the exact term (e_1 = 0), summed over i <= 31, with c = ceil(T);
#   * P(T) >= 2^32 e^T - _SERIES_TAIL[c], the terms i >= 32 of e^T (geometric bound, c <= 8 < 33).
# A = 2^32 * e^(coarse + fine) * (1 + r + r^2 / 2) with e^(k / 64) and e^(k / 4096) from tables held
# to 64 bits (each within 2 units of 2^-64 relative), r < 2^-12: the dropped r^3 / 6 e^r < 2^-38.5
# relative, and all the roundings together stay below 2^-58, so |A - 2^32 e^T| <= A / 2^37 + 2.
# Inputs with T > 8, and the rare interval whose ends give different alphas, take the series.
_BRACKET_BITS = 64
_BRACKET_T_MAX = 8 << FRAC32


def _loss_bounds() -> tuple[list[int], list[int]]:
    from fractions import Fraction  # exact rationals, once at import

    loss, tail = [0], [0]
    for c in range(1, 9):
        e, total = Fraction(0), Fraction(0)
        for i in range(2, 32):
            e = e * c / i + 1
            total += e
        loss.append(-(-total.numerator // total.denominator))
        term = Fraction(c**32 * (1 << FRAC32), 1)
        for i in range(2, 33):
            term /= i
        bound = term / (1 - Fraction(c, 33))
        tail.append(-(-bound.numerator // bound.denominator))
    return loss, tail


_SERIES_LOSS, _SERIES_TAIL = _loss_bounds()
_SERIES_MARGIN = [loss + tail for loss, tail in zip(_SERIES_LOSS, _SERIES_TAIL, strict=True)]


def _exp_fraction(num: int, den: int) -> int:
    """e^(num/den) * 2^64 within 2 (num/den <= 8): the series with 40 guard bits; each floor loses
    under 1 guard unit and the losses, carried forward by at most num/(den*i), stay below 2^20 of
    them, as does the tail after the last non-zero term."""
    guard = 40
    term = total = 1 << (_BRACKET_BITS + guard)
    i = 1
    while term:
        term = term * num // (den * i)
        total += term
        i += 1
    return total >> guard


class _ExpTables(dict[int, int]):
    """k -> e^(k / den) * 2^64, made on first use."""

    def __init__(self, den: int) -> None:
        super().__init__()
        self.den = den

    def __missing__(self, k: int) -> int:
        value = self[k] = _exp_fraction(k, self.den)
        return value


_EXP_COARSE = _ExpTables(64)  # t >> 26: steps of 1/64
_EXP_FINE = _ExpTables(4096)  # (t >> 20) & 63: steps of 1/4096


class _LiquidAlpha:
    """`liquid_alpha_sigmoid` as a function of the clamped difference `combined` alone (the rest
    of its inputs are fixed for an epoch), memoised: many entries share a value (0 above all)."""

    def __init__(self, low: int, high: int, steepness: int) -> None:
        self.low, self.high = low, high
        self.slope = saturating_div32(steepness, -100 << FRAC32)
        self.cache: dict[int, int] = {}
        self.bases: dict[int, int] = {}  # t >> 20 -> e^((t >> 20) / 4096) * 2^64

    def compute(self, combined: int) -> int:
        """The reference's saturating steps without their clamps, none of which binds: combined,
        low and high lie in [0, 1] and |slope| < 328, so |x| < 164; exp(x) < 2^31 once clamped to
        [-20, 20], so 1 + exp(x) fits and the sigmoid lies in [0, 1]. A positive divisor makes the
        truncating division a floor."""
        alpha = self.cache[combined] = self.value(combined)
        return alpha

    def value(self, combined: int) -> int:
        """`compute` without the memo."""
        x = (self.slope * (combined - HALF32)) >> FRAC32
        t = -x if x < 0 else x
        alpha = self.bracketed(x, t)
        return self.of_exp(exp_safe32_fast(x)) if alpha is None else alpha

    def values_of_keys(self, keys: Iterable[int]) -> dict[int, int]:
        """key -> alpha for keys k = c ^ (c >> 16) of `combined` values c (see `ema_liquid_packed`):
        `value` with `bracketed` written out in one loop (this runs once per distinct value)."""
        low, high, slope, bases = self.low, self.high, self.slope, self.bases
        span, margin, one64 = high - low, _SERIES_MARGIN, ONE32 << FRAC32
        fine_bits = (1 << 20) - 1
        out: dict[int, int] = {}
        for key in keys:
            x = (slope * ((key ^ (key >> 16) ^ (key >> 32)) - HALF32)) >> FRAC32
            t = -x if x < 0 else x
            if 0 < t <= _BRACKET_T_MAX and x != ONE32:
                step = t >> 20
                base = bases.get(step)
                if base is None:
                    base = bases[step] = (_EXP_COARSE[step >> 6] * _EXP_FINE[step & 63]) >> _BRACKET_BITS
                r = t & fine_bits
                approx = (base * ((1 << 64) + (r << FRAC32) + ((r * r) >> 1))) >> 96
                slack = (approx >> 37) + 2
                lo = approx - slack - margin[-(-t >> FRAC32)]
                if lo >= ONE32:
                    hi = approx + slack
                    if x < 0:
                        lo, hi = one64 // hi, one64 // lo
                    sigmoid = one64 // (ONE32 + lo)
                    alpha = low + ((sigmoid * span) >> FRAC32)
                    alpha = high if alpha > high else alpha
                    alpha = low if alpha < low else alpha
                    if one64 // (ONE32 + hi) == sigmoid or alpha == self.of_exp(hi):
                        out[key] = alpha
                        continue
            out[key] = self.of_exp(exp_safe32_fast(x))
        return out

    def of_exp(self, exp: int) -> int:
        """alpha from exp(x): monotone in exp (the sigmoid falls as exp grows; floors keep order)."""
        low, high = self.low, self.high
        sigmoid = (ONE32 << FRAC32) // (ONE32 + exp)
        return clamp32(low + ((sigmoid * (high - low)) >> FRAC32), low, high)

    def bracketed(self, x: int, t: int) -> int | None:
        """alpha for 0 < t = |x| <= 8 (x != 1) without the series, or None when the interval
        known to hold the series (see `_BRACKET_BITS`) spans two alphas, or t is out of range."""
        if not 0 < t <= _BRACKET_T_MAX or x == ONE32:
            return None
        bits = _BRACKET_BITS
        step = t >> 20
        base = self.bases.get(step)
        if base is None:
            base = self.bases[step] = (_EXP_COARSE[step >> 6] * _EXP_FINE[step & 63]) >> bits
        r = t & ((1 << 20) - 1)
        first = r << (bits - FRAC32)
        approx = (base * ((1 << bits) + first + ((first * r) >> (FRAC32 + 1)))) >> (2 * bits - FRAC32)
        slack = (approx >> 37) + 2
        lo = approx - slack - _SERIES_MARGIN[-(-t >> FRAC32)]  # the margin for ceil(T)
        hi = approx + slack
        if lo < ONE32:
            return None
        if x < 0:  # exp_safe32 takes the reciprocal, which reverses the interval
            lo, hi = (ONE32 << FRAC32) // hi, (ONE32 << FRAC32) // lo
        # of_exp at both ends, written out: equal sigmoids (the common case) give equal alphas
        low, high = self.low, self.high
        sigmoid = (ONE32 << FRAC32) // (ONE32 + lo)
        alpha = low + ((sigmoid * (high - low)) >> FRAC32)
        alpha = high if alpha > high else alpha
        alpha = low if alpha < low else alpha
        other = (ONE32 << FRAC32) // (ONE32 + hi)
        if other == sigmoid:
            return alpha
        return alpha if alpha == self.of_exp(hi) else None


class _Epoch:
    """Working state of one `run_epoch` call; each `process_*` is one step of epoch spec §3.

    Rows that take part are packed ints of n 64-bit lanes (`self.rows`); an absent or all-zero row
    is None. Column-wise divisions run on columns packed in 128-bit lanes.
    """

    def __init__(self, inp: EpochInput) -> None:
        self.inp = inp
        n = self.n = inp.n
        self.rows = _Lanes(n, 64)
        self.full_row = array("H", range(n))
        self.full_row_bytes = self.full_row.tobytes()
        self.zero_row = array("Q", [0]) * n
        bar = inp.block_at_registration
        self.uids_by_registration = sorted(range(n), key=bar.__getitem__)
        self.sorted_registration = [bar[j] for j in self.uids_by_registration]
        self.liquid = inp.yuma3_on and inp.liquid_alpha_on
        # With every row sorted by uid (as p2pnode stores them) the chain's merge finds every entry,
        # so the liquid-alpha EMA runs on packed rows; otherwise entry by entry (§9 item 8).
        self.liquid_dense = self.liquid and all(
            row.order()[0]  # type: ignore[union-attr]
            for rows in (inp.weights, inp.bonds)
            for row in rows
            if row
        )

    # helpers ------------------------------------------------------------------------------------

    def registered_at_or_after(self, block: int) -> list[int]:
        """Uids j with block_at_registration[j] >= block (the ones a `<=` mask removes)."""
        return self.uids_by_registration[bisect_left(self.sorted_registration, block):]

    def dense_u16(self, row: SparseRow, masked: Sequence[int], values: array[int] | None = None) -> array[int]:
        """A stored row as n u16 words (absent, destination >= n, or `masked`: 0); `values`, when
        given, stand in for the row's own values."""
        uids = row.uids
        if values is None:
            values = row.values
        if uids.tobytes() == self.full_row_bytes:  # (array == compares item by item)
            dense = values[:]
        else:
            runs = row.order()[1] if len(uids) > _FEW else None
            if runs is not None and uids[-1] < self.n:
                dense = array("H", bytes(2 * self.n))
                for a, b in runs:
                    dense[uids[a] : uids[a] + b - a] = values[a:b]
            else:
                lookup = dict(zip(uids, values, strict=True))
                dense = array("H", map(lookup.get, self.full_row, repeat(0, self.n)))
        for j in masked:
            dense[j] = 0
        return dense

    def from_u16(self, dense: array[int]) -> int:
        """`u16_proportion_to_fixed` ((u << 32) // 65535) of u16 words, packed in 64-bit lanes.

        2^32 = 65535 * 65537 + 1, so (u << 32) // 65535 = u * 65537 + u // 65535, and for a u16
        the last term is 1 exactly when u = 65535, i.e. bit 16 of u + 1.
        """
        lanes = self.rows
        packed = lanes.pack_u16(dense)
        if b"\xff\xff" not in dense.tobytes():  # no 65535 (a byte search; it may also match across two words)
            return packed * 65537
        return packed * 65537 + (((packed + lanes.ones) >> 16) & lanes.ones)

    def scaled_from_u16(self, dense: array[int], factor: int) -> int:
        """`scale_row(from_u16(dense), factor)` for 0 < factor <= 2^32: without a 65535 the two
        multiplies are one, by 65537 * factor (u * 65537 < 2^32, so every lane stays below 2^64)."""
        if b"\xff\xff" in dense.tobytes():
            return self.scale_row(self.from_u16(dense), factor)
        return self.rows.scale(self.rows.pack_u16(dense), 65537 * factor)

    def proportions(self, packed: int, total: int) -> tuple[int, array[int]]:
        """floor(u * 2^32 / total) of u16 lanes u <= total, 0 < total (packed in 64-bit lanes, as
        `_Lanes.pack_u16` makes them): packed in 64-bit lanes, and as words.

        `_Lanes.div` needs k = 16 + bitlen(total) to be exact for every u16, and then u * magic
        reaches 2^65, one bit over the lane. So first k one less (magic <= 2^48 + 1, products
        below 2^64), exact when u * e < 2^k for the largest u, e = magic * total - 2^(32 + k) being
        the magic number's excess (most totals; checked per row). Otherwise the full k with the
        magic split at bit 17: floor((u * hi * 2^17 + u * lo) / 2^k) = floor((u * hi +
        floor(u * lo / 2^17)) / 2^(k - 17)), both products below 2^48. Each quotient is at most
        2^32 * u / total, below 2^(64 - k) and 2^(81 - k) respectively, so the masks keep it whole.
        """
        lanes = self.rows
        k = 15 + total.bit_length()
        magic = (1 << (FRAC32 + k)) // total + 1
        if min(U16_MAX, total) * (magic * total - (1 << (FRAC32 + k))) < (1 << k):
            quotients = ((packed * magic) >> k) & lanes.mask(64 - k)
        else:
            k += 1
            magic = (1 << (FRAC32 + k)) // total + 1
            high, low = magic >> 17, magic & ((1 << 17) - 1)
            scaled = packed * high + (((packed * low) >> 17) & lanes.mask(47))
            quotients = (scaled >> (k - 17)) & lanes.mask(81 - k)
        return quotients, lanes.unpack(quotients)

    def scale_row(self, packed: int, factor: int) -> int:
        """floor(lane * factor / 2^32) on 64-bit lanes holding values <= 1, factor in [0, 1]."""
        if factor == ONE32:
            return packed
        return self.rows.scale(packed, factor) if factor else 0

    # §3.1 - §3.4 --------------------------------------------------------------------------------

    def process_activity(self) -> None:
        inp = self.inp
        cutoff, block = inp.activity_cutoff, inp.current_block
        self.active = [min(lu + cutoff, U64_MAX) >= block for lu in inp.last_update]

    def process_stake(self) -> None:
        inp = self.inp
        stake = list(inp.stake)
        threshold, owner = inp.stake_threshold, inp.owner_uid
        if threshold:
            stake = [s if s >= threshold or i == owner else 0 for i, s in enumerate(stake)]
        total = sum(stake)
        # I64F64 normalisation, (s << 64) / (total << 64) = (s << 64) // total, then to I32F32
        self.stake = [((s << 64) // total) >> 32 for s in stake] if total else [0] * self.n

    def process_permits(self) -> None:
        inp = self.inp
        owner = inp.owner_uid
        old = list(inp.validator_permit)
        new = topk_nonzero(self.stake, inp.max_allowed_validators)
        if owner is not None:
            old[owner] = True
            new[owner] = True
        self.old_permit = old
        self.new_permit = new

    def process_active_stake(self) -> None:
        a = [
            s if act and perm else 0
            for s, act, perm in zip(self.stake, self.active, self.old_permit, strict=True)
        ]
        self.active_stake = _normalize(a)

    # §3.5 weights ---------------------------------------------------------------------------------

    def row_threshold(self, i: int) -> int:
        """Destination j survives the outdated and commit-reveal masks iff its registration block
        is below this (both masks are `<=` on the row's block, commit block + 1 for `<`)."""
        inp = self.inp
        threshold = inp.last_update[i]
        if inp.commit_blocks is not None:
            cb = inp.commit_blocks[i]
            if cb is not None and cb + 1 < threshold:
                threshold = cb + 1
        return threshold

    def process_weights(self) -> None:
        inp = self.inp
        n, owner = self.n, inp.owner_uid
        packed: list[int | None] = [None] * n
        words: list[array[int] | None] = [None] * n
        ordered: list[list[tuple[int, int]] | None] = [None] * n  # liquid alpha, entry by entry
        presence: list[int] = [0] * n  # liquid alpha on packed rows: 1 in the lane of each entry
        totals = [0] * n  # the sum of each row's u16 weights after masking
        bar = inp.block_at_registration
        newest_registration = max(bar)
        for i in range(n):
            stored = inp.weights[i]
            if not self.old_permit[i] or not stored:
                continue
            threshold = self.row_threshold(i)
            masked = self.registered_at_or_after(threshold) if newest_registration >= threshold else []
            dense = self.dense_u16(stored, masked)  # type: ignore[arg-type]
            if i != owner:
                dense[i] = 0
            u16_lanes = self.rows.pack_u16(dense)
            total = _lane_sum(u16_lanes, n, 64)
            if self.liquid_dense:
                ones = self.dense_u16(stored, masked, array("H", [1]) * len(stored))  # type: ignore[arg-type]
                if i != owner:
                    ones[i] = 0
                presence[i] = self.rows.pack_u16(ones)
            elif self.liquid:
                ordered[i] = [
                    (j, (v << FRAC32) // total if total else 0)
                    for j, v in stored
                    if j < n and (j != i or i == owner) and bar[j] < threshold
                ]
            if total:
                packed[i], words[i] = self.proportions(u16_lanes, total)
                totals[i] = total
        self.weights = packed
        self.weight_totals = totals
        self.weight_words = words
        self.weights_ordered = ordered
        self.weights_presence = presence

    # §3.6 consensus -------------------------------------------------------------------------------

    def process_consensus(self) -> None:
        n = self.n
        a = self.active_stake
        voters = [i for i in range(n) if a[i] > 0]
        m = len(voters)
        if m == 0:
            consensus = [0] * n
        elif m == 1:
            # a one-entry partition returns its score whatever the stake
            consensus = list(self.weight_words[voters[0]] or self.zero_row)
        else:
            stake_hat = _normalize([a[i] for i in voters])
            kappa = (self.inp.kappa << FRAC32) // U16_MAX
            if 0 < kappa <= sum(stake_hat) and m * n >= _BISECT_MIN_ENTRIES:
                consensus = self.consensus_by_bisection(voters, stake_hat, kappa)
            else:
                consensus = [0] * n
                self.consensus_by_sorting(voters, stake_hat, kappa, range(n), consensus)
        self.consensus = consensus
        self.consensus_packed = self.rows.pack(array("Q", consensus))

    def consensus_by_sorting(
        self, voters: list[int], stake_hat: list[int], kappa: int, columns_to_do: Iterable[int], out: list[int]
    ) -> None:
        """The stake-weighted median of each listed column by sorting it (§3.6 item 4), into `out`."""
        n, m = self.n, len(voters)
        stack = array("Q")
        for i in voters:
            stack += self.weight_words[i] or self.zero_row
        positions = range(m)
        stake_at = stake_hat.__getitem__
        below = kappa.__gt__
        columns = memoryview(stack)  # a strided view, copied once by tolist
        for j in columns_to_do:
            col = columns[j::n].tolist()  # a list's items exist already; an array makes one per read
            if not any(col):
                out[j] = 0
                continue
            order = sorted(positions, key=col.__getitem__, reverse=True)
            # the first position whose running stake reaches kappa, the sums stopped there
            pos = len(list(takewhile(below, accumulate(map(stake_at, order)))))
            out[j] = col[order[pos]] if pos < m else col[order[-1]]

    def consensus_by_bisection(self, voters: list[int], stake_hat: list[int], kappa: int) -> list[int]:
        """The stake-weighted medians of all columns at once, for 0 < kappa <= sum(stake_hat).

        With S_j(t) the stake of the voters whose weight on column j is >= t, the median is the
        largest t with S_j(t) >= kappa (a weight of the column: S_j only steps at weights). Each
        pass halves every column's bracket [lo_j, hi_j) (S_j(lo_j) >= kappa > S_j(hi_j)) with a few
        packed operations per voter row, so the cost is per row, not per entry. A bracket of width
        one is the answer; once few entries lie in the open brackets, those entries are sorted
        per column, starting from the stake above the bracket. A column whose bracket still holds
        many entries (values bunched closer than the passes resolve) is sorted whole.
        """
        n, m, lanes = self.n, len(voters), self.rows
        guard, ones = lanes.guard, lanes.ones
        words = [self.weight_words[i] or self.zero_row for i in voters]
        totals = [self.weight_totals[i] for i in voters if self.weight_totals[i]]
        if not totals:
            return [0] * n
        # a bound on every weight: u <= 65535 and u <= the row's total
        top = min(ONE32, (U16_MAX << FRAC32) // min(totals))
        guarded = [(self.weights[i] or 0) | guard for i in voters]  # lanes 2^63 + w (w <= 2^32)
        # Each pass sums, per column, stake + 2^40 per voter at or above the midpoint: the stake
        # (at most 2^32) in the low 40 bits of the lane, the count of such voters in the bits above.
        unit = 1 << _COUNT_SHIFT
        stake_bits, count_bits = lanes.mask(_COUNT_SHIFT), lanes.mask(64 - _COUNT_SHIFT)
        addends = [s + unit for s in stake_hat]
        lo, hi = 0, (top + 1) * ones
        at_lo, at_hi = sum(addends) * ones, 0  # stake and count of the entries >= lo, >= hi
        kappa_lanes, two, low63 = kappa * ones, 2 * ones, lanes.mask(63)
        for _ in range(_BISECT_PASSES_MAX):
            still_open = (((hi - lo) | guard) - two) & guard  # brackets holding two or more values
            if not still_open:
                break
            pending = ((at_lo - at_hi) >> _COUNT_SHIFT) & count_bits & (still_open - (still_open >> 63))
            if _lane_sum(pending, n, 64) * _BISECT_ENTRIES_PER_PASS <= m * n:
                break
            mid = ((lo + hi) >> 1) & low63
            # g - mid keeps the guard bit iff w >= mid. The flags are multiplied where they stand
            # (bit 63): each lane's sum, below 2^57, then lies in bits [63, 120) of its lane and the
            # next, clear of the next lane's own sum, and one shift brings every sum down.
            at_mid = 0
            for g, addend in zip(guarded, addends, strict=True):
                at_mid += ((g - mid) & guard) * addend
            at_mid >>= 63
            reached = (((at_mid & stake_bits) | guard) - kappa_lanes) & guard
            up = reached - (reached >> 63)  # every value bit of the lanes where S(mid) >= kappa
            down = low63 ^ up
            lo ^= (lo ^ mid) & up
            at_lo ^= (at_lo ^ at_mid) & up
            hi ^= (hi ^ mid) & down
            at_hi ^= (at_hi ^ at_mid) & down
        consensus = list(lanes.unpack(lo))  # right where the bracket is [lo, lo + 1)
        widths = lanes.unpack(hi - lo)
        counts = lanes.unpack(((at_lo - at_hi) >> _COUNT_SHIFT) & count_bits)
        few = array("Q", [0]) * n  # all bits of the lanes whose bracket entries are gathered
        crowded = []
        for j in compress(range(n), map((1).__lt__, widths)):
            if counts[j] <= _BISECT_COLUMN_ENTRIES_MAX:
                few[j] = U64_MAX
            else:
                crowded.append(j)
        if crowded:
            self.consensus_by_sorting(voters, stake_hat, kappa, crowded, consensus)
        gather = lanes.pack(few)
        if not gather:
            return consensus
        lo_open, hi_open = lo & gather, hi & gather  # elsewhere [0, 0), which holds nothing
        # one key per entry in an open bracket: column, then value, then voter position
        value_shift = voter_bits = m.bit_length()
        value_bits = top.bit_length()
        column_shift = value_shift + value_bits
        keys: list[int] = []
        for p, g in enumerate(guarded):
            inside = (g - lo_open) & ~(g - hi_open) & guard
            if inside:
                w = words[p]
                keys += [(j << column_shift) | (w[j] << value_shift) | p for j in lanes.flagged_lanes(inside)]
        keys.sort(reverse=True)
        above = lanes.unpack(at_hi & stake_bits)
        voter_mask, value_mask = (1 << voter_bits) - 1, (1 << value_bits) - 1
        column, running, found = -1, 0, False
        for key in keys:  # columns one after another, values descending within each
            j = key >> column_shift
            if j != column:
                column, running, found = j, above[j], False
            elif found:
                continue
            running += stake_hat[key & voter_mask]
            if running >= kappa:
                consensus[j] = (key >> value_shift) & value_mask
                found = True
        return consensus

    # §3.7 - §3.8 ----------------------------------------------------------------------------------

    def process_clip_and_ranks(self) -> None:
        n, a, lanes = self.n, self.active_stake, self.rows
        c = self.consensus_packed
        clipped: list[int | None] = [None] * n
        trust = [0] * n
        ranks = 0
        for i, w in enumerate(self.weights):
            if w is None:
                continue
            # min(w, C_j); an entry above a zero consensus is dropped, which is the value 0
            wc = lanes.minimum(w, c)
            clipped[i] = wc
            trust[i] = _lane_sum(wc, n, 64)
            if a[i]:
                ranks += self.scale_row(wc, a[i])
        self.clipped = clipped
        self.validator_trust = trust
        self.incentive = _normalize(list(lanes.unpack(ranks)))

    # §3.9 bonds -----------------------------------------------------------------------------------

    def process_weights_for_bonds(self) -> None:
        beta = (self.inp.bonds_penalty << FRAC32) // U16_MAX
        self.beta = beta
        if beta == 0:
            self.weights_for_bonds = self.weights
        elif beta == ONE32:
            self.weights_for_bonds = self.clipped
        else:
            # w + floor(beta * (wc - w)) = w - ceil(beta * (w - wc)), with every lane non-negative
            lanes = self.rows
            round_up = lanes.ones * (ONE32 - 1)
            out: list[int | None] = []
            for w, wc in zip(self.weights, self.clipped, strict=True):
                if w is None or wc is None:
                    out.append(None)
                    continue
                out.append(w - ((((w - wc) * beta + round_up) & lanes.high) >> FRAC32))
            self.weights_for_bonds = out

    def bonds_u16(self) -> list[array[int] | None]:
        """Stored bonds as dense u16 words, bonds to uids registered since the last epoch masked."""
        inp = self.inp
        lms = inp.last_mech_step_block
        last_tempo = max(inp.current_block - inp.tempo, 0) if lms == 0 else lms + 1
        self.last_tempo = last_tempo
        masked = self.registered_at_or_after(last_tempo)
        rows: list[array[int] | None] = [None] * self.n
        for i, stored in enumerate(inp.bonds):
            if stored:
                dense = self.dense_u16(stored, masked)  # type: ignore[arg-type]
                if any(dense):
                    rows[i] = dense
        return rows

    def ema_alpha(self) -> int:
        """`1 - I32F32(I64F64(bonds_moving_average) / I64F64(1e6))`, in [0, 1] by input bounds."""
        bma = fixed64_to_fixed32(safe_div64(from_int64(self.inp.bonds_moving_average), from_int64(10**6)))
        return sat32(ONE32 - bma)

    def process_bonds_yuma2(self) -> None:
        """§3.9a, original Yuma: column-normalised bonds and stake-weighted delta.

        The row-wise steps (delta, column sums) run on packed rows; the column normalisations
        run column by column on the rows that hold a bond or a delta.
        """
        n, a, lanes = self.n, self.active_stake, self.rows
        bonds = self.bonds_u16()
        bond_sums = 0
        for row in bonds:
            if row is not None:
                bond_sums += lanes.pack_u16(row)
        delta: list[int | None] = [
            None if (wb is None or not a[i]) else self.scale_row(wb, a[i])
            for i, wb in enumerate(self.weights_for_bonds)
        ]
        delta_sums = sum(d for d in delta if d is not None)
        rows = [i for i in range(n) if bonds[i] is not None or delta[i] is not None]
        self.bond_rows = rows
        self.bond_image: bytearray | None = None
        if not rows:
            self.dividends = [0] * n
            return
        r = len(rows)
        bond_columns = _Columns([bonds[i] for i in rows], n)
        delta_columns = _Columns([None if delta[i] is None else lanes.unpack(delta[i]) for i in rows], n)  # type: ignore[arg-type]
        bsum = lanes.unpack(bond_sums) if bond_sums else self.zero_row
        dsum = lanes.unpack(delta_sums) if delta_sums else self.zero_row
        alpha = self.ema_alpha()
        keep = ONE32 - alpha
        incentive = self.incentive
        cols = _Lanes(r, 128)
        width, high = cols.width, cols.high
        # `_Lanes.div` written out (this loop runs per column): the result bits of a lane after
        # dividing with shift k are its bits [k, 128), selected by `keep_bits[k]` before the shift.
        keep_bits = _KeepBits(cols)
        # Every divided lane is at most its divisor (a column entry against the column's sum, an
        # entry against the column's largest), so x_bits = bitlen(divisor) is exact: the magic
        # numbers are a 30-bit digit shorter than with x_bits = 33, and so is each multiply by them.
        # what storage needs of each column, 4 bytes per entry, column after column: the stored u16
        # and a byte that is not 0 where the EMA entry is > 0 (an entry kept even when its u16 is 0)
        store_image = bytearray(4 * r * n)
        dividends = 0
        for j in range(n):
            bs, ds = bsum[j], dsum[j]
            if not (bs or ds):
                continue
            # floor(alpha * delta_n) + floor((1 - alpha) * bonds_n): clear fractions, add, shift
            ema = 0
            if bs:  # bonds_n = floor(u * 2^32 / bs) of u16 lanes
                k = 16 + bs.bit_length()
                column = bond_columns.column(j)
                ema = ((((column * ((1 << (FRAC32 + k)) // bs + 1)) & keep_bits[k]) >> k) * keep) & high
            if ds:  # delta_n = floor(d * 2^32 / ds) of lanes d <= ds
                k = 2 * ds.bit_length()
                column = delta_columns.column(j)
                ema += ((((column * ((1 << (FRAC32 + k)) // ds + 1)) & keep_bits[k]) >> k) * alpha) & high
            ema >>= FRAC32
            if not ema:
                continue
            # the lanes' low words as a list: sum and max over list items make no int per item
            words = _lane_words(ema.to_bytes(width, "little"), 2).tolist()
            ema_sum = sum(words)
            k = 2 * ema_sum.bit_length()
            ema_norm = ((ema * ((1 << (FRAC32 + k)) // ema_sum + 1)) & keep_bits[k]) >> k
            if incentive[j]:  # floored per entry; every term a multiple of 2^32, shifted once at the end
                dividends += (ema_norm * incentive[j]) & high
            # storage: column max-upscale (by the largest normalised entry), then u16
            col_max = (max(words) << FRAC32) // ema_sum  # >= every normalised entry
            k = 2 * col_max.bit_length()
            upscaled = ((ema_norm * ((1 << (FRAC32 + k)) // col_max + 1)) & keep_bits[k]) >> k
            # upscaled <= 2^32, so floor(upscaled * 65535 / 2^32) is bytes 4 and 5 of the product's
            # lane; the guard bit (byte 15) flags an EMA entry > 0
            stored = (upscaled * U16_MAX) | cols.nonzero_flags(ema)
            stored_bytes = stored.to_bytes(width, "little")
            at, end = 4 * r * j, 4 * r * (j + 1)
            store_image[at:end:4] = stored_bytes[4::16]
            store_image[at + 1 : end : 4] = stored_bytes[5::16]
            store_image[at + 2 : end : 4] = stored_bytes[15::16]
        per_row = cols.unpack(dividends >> FRAC32) if dividends else array("Q", [0]) * r
        full = [0] * n
        for p, i in enumerate(rows):
            full[i] = per_row[p]
        self.dividends = _normalize(full)
        self.bond_image = store_image

    def process_bonds_yuma3(self) -> None:
        """§3.9b, Yuma 3: bonds as proportions, EMA towards the weights, optional liquid alpha."""
        n, lanes = self.n, self.rows
        bonds = self.bonds_u16()
        self.ema_ordered: list[list[tuple[int, int]]] | None = None
        if self.liquid_dense and any(self.consensus):
            ema: list[int | None] = self.ema_liquid_packed(bonds)
        elif self.liquid and any(self.consensus):
            self.ema_ordered = self.ema_liquid(bonds)
            ema = [
                None if not entries else lanes.pack(self.dense_from_entries(entries))
                for entries in self.ema_ordered
            ]
        else:
            alpha = self.ema_alpha()
            keep = ONE32 - alpha
            ema = []
            for wb, b in zip(self.weights_for_bonds, bonds, strict=True):
                value = 0 if wb is None else self.scale_row(wb, alpha)
                if b is not None and keep:
                    value += self.scaled_from_u16(b, keep)
                ema.append(value or None)
        self.ema_rows = ema
        incentive, a = self.incentive, self.active_stake
        dividends = [0] * n
        voting_rows = [i for i in range(n) if ema[i] is not None and a[i]]
        if voting_rows:
            ema_sums = lanes.unpack(sum(e for e in ema if e is not None))
            columns = _Columns([lanes.unpack(ema[i]) for i in voting_rows], n)  # type: ignore[arg-type]
            cols = _Lanes(len(voting_rows), 128)
            high = cols.high
            keep_bits = _KeepBits(cols)
            totals = 0
            for j in range(n):
                if incentive[j] and ema_sums[j]:
                    # `_Lanes.div` written out (this loop runs per column); each term floored per
                    # entry (a multiple of 2^32), the sum shifted once after the loop
                    # every entry <= the column's sum: x_bits = bitlen(total) (see the original bond step)
                    total, k = ema_sums[j], 2 * ema_sums[j].bit_length()
                    column = columns.column(j)
                    normalised = ((column * ((1 << (FRAC32 + k)) // total + 1)) & keep_bits[k]) >> k
                    totals += (normalised * incentive[j]) & high
            per_row = cols.unpack(totals >> FRAC32) if totals else array("Q", [0]) * len(voting_rows)
            for p, i in enumerate(voting_rows):
                product = (per_row[p] * a[i]) >> FRAC32  # `checked_mul`: 0 on overflow
                dividends[i] = product if product <= I32F32_MAX else 0
        self.dividends = _normalize(dividends)

    def dense_from_entries(self, entries: Sequence[tuple[int, int]]) -> array[int]:
        dense = array("Q", self.zero_row)
        for j, v in entries:
            dense[j] = v
        return dense

    def ordered_bonds(self, i: int) -> list[tuple[int, int]]:
        """Masked stored bond row i as (j, proportion) in stored order (liquid alpha only)."""
        bar, last_tempo, n = self.inp.block_at_registration, self.last_tempo, self.n
        return [(j, _FROM_U16[u]) for j, u in self.inp.bonds[i] if j < n and bar[j] < last_tempo]

    def ordered_weights_for_bonds(self, i: int) -> list[tuple[int, int]]:
        """Row i of the weights for bonds as sparse entries in the chain's order (§3.9 item 2)."""
        beta, c = self.beta, self.consensus
        entries = self.weights_ordered[i] or []
        if beta == 0:
            return entries
        if beta == ONE32:
            return [(j, w if w <= c[j] else c[j]) for j, w in entries if w <= c[j] or c[j] > 0]
        row = self.weights_for_bonds[i]
        if row is None:
            return []
        return [(j, v) for j, v in enumerate(self.rows.unpack(row)) if v > 0]

    def ema_liquid(self, bonds: list[array[int] | None]) -> list[list[tuple[int, int]]]:
        """`mat_ema_alpha_sparse` with the liquid-alpha matrix (§3.9b item 2, §9 item 8).

        The entry's alpha depends on (consensus, weight, bond) only through `combined` (what
        `liquid_alpha_sigmoid` clamps the buy or sell difference to), so it is computed once per
        distinct `combined` (`_LiquidAlpha`). All inputs lie in [0, 1] (proportions, consensus), so
        the saturations of the reference never bind here and are left out.
        """
        inp, c = self.inp, self.consensus
        alpha_of = _LiquidAlpha(_FROM_U16[inp.alpha_low], _FROM_U16[inp.alpha_high],
                                inp.alpha_sigmoid_steepness << FRAC32)
        cache, compute = alpha_of.cache, alpha_of.compute
        out: list[list[tuple[int, int]]] = []
        for i in range(self.n):
            new_entries = self.ordered_weights_for_bonds(i)
            if not new_entries:
                out.append([])
                continue
            old_entries = self.ordered_bonds(i) if bonds[i] is not None else []
            seen_w = _merge_lookup(new_entries)
            seen_b = _merge_lookup(old_entries)
            old_value = dict(old_entries)
            row: list[tuple[int, int]] = []
            for j, w_new in new_entries:
                weight, bond = seen_w.get(j, 0), seen_b.get(j, 0)
                diff = weight - c[j] if weight >= bond else bond - weight
                combined = 0 if diff < 0 else ONE32 if diff > ONE32 else diff
                alpha = cache.get(combined)
                if alpha is None:
                    alpha = compute(combined)
                # alpha and the old bond lie in [0, 1]: decayed needs no clamp; a gain beyond the
                # I32F32 range would end at ONE32 (or 0) through the clamps below either way.
                decayed = ((ONE32 - alpha) * old_value.get(j, 0)) >> FRAC32
                gain = (alpha * w_new) >> FRAC32
                value = decayed + gain if gain > 0 else decayed
                if value > ONE32:
                    value = ONE32
                if value > 0:
                    row.append((j, value))
            out.append(row)
        return out

    def ema_liquid_packed(self, bonds: list[array[int] | None]) -> list[int | None]:
        """`ema_liquid` on packed rows, for rows sorted by uid (the merge then finds every entry).

        Per row: `combined` on packed lanes, the alpha of each distinct `combined` once
        (`_LiquidAlpha`), the two products alpha * w and alpha * b, then the clamp to 1 and the
        entry mask on packed lanes. An entry of the new row whose value ends at 0 is dropped, as is
        every lane that is not an entry of it. Alpha differs per entry, so the products are made
        entry by entry, except on the entries with `combined` = 0 (commonly most: w >= b and
        w <= C), which share one alpha and take it on packed lanes.
        """
        inp, lanes, n = self.inp, self.rows, self.n
        guard, ones, beta = lanes.guard, lanes.ones, self.beta
        consensus = self.consensus_packed
        consensus_zero = (guard ^ lanes.nonzero_flags(consensus)) >> 63  # 1 where C_j = 0
        one_lanes = ones * ONE32
        rows: list[tuple[int, int, int, int, array[int]] | None] = [None] * n
        # Values of `combined` are looked up by a key that mixes their bits (y = x ^ (x >> 16), a
        # bijection on 48-bit lanes): as plain ints they share low bits often enough to make the
        # set and dict probe far longer.
        distinct: set[int] = {0}
        low48 = lanes.mask(48)
        for i in range(n):
            present = self.weights_presence[i]
            if not present:
                continue
            wb = self.weights_for_bonds[i] or 0
            if beta == ONE32:
                # an entry above a zero consensus is dropped by the clip, not kept as 0
                present &= ~((lanes.nonzero_flags(self.weights[i] or 0) >> 63) & consensus_zero)
            elif beta:
                present = lanes.nonzero_flags(wb) >> 63  # built column by column: entries > 0
            if not present:
                continue
            mask = (present << 64) - present  # every bit of each entry's lane
            b = 0 if bonds[i] is None else self.from_u16(bonds[i])  # type: ignore[arg-type]
            # combined = clamp(w - C, 0, 1) where w >= b, else clamp(b - w, 0, 1); both differences
            # lie in [0, 1] once negatives are cut, as w, b and C do
            ge = ((wb | guard) - b) & guard
            buy = (wb - lanes.minimum(wb, consensus)) & (ge - (ge >> 63))
            sell = b - lanes.minimum(wb, b)
            packed = (buy + sell) & mask
            keys = lanes.unpack(packed ^ ((packed >> 16) & low48))
            distinct.update(compress(keys, keys))
            rows[i] = (mask, wb, b, lanes.nonzero_flags(packed), keys)
        alpha_of = _LiquidAlpha(_FROM_U16[inp.alpha_low], _FROM_U16[inp.alpha_high],
                                inp.alpha_sigmoid_steepness << FRAC32)
        # combined = key ^ (key >> 16) ^ (key >> 32) undoes the mix (combined < 2^33)
        alphas = alpha_of.values_of_keys(distinct)
        # floor(alpha * w) + floor((1 - alpha) * b) = floor(alpha * w) + b - ceil(alpha * b)
        zero_alpha, low_bits = alphas[0], lanes.mask(FRAC32)
        out: list[int | None] = [None] * n
        for i, row in enumerate(rows):
            if row is None:
                continue
            mask, wb, b, nonzero, keys = row
            if 2 * nonzero.bit_count() > n:  # mostly distinct alphas: every lane entry by entry
                alpha = list(map(alphas.__getitem__, keys))
                value = b
                if wb:
                    value += lanes.products(alpha, lanes.unpack(wb))[0]
                if b:
                    whole, fraction = lanes.products(alpha, lanes.unpack(b))
                    value -= whole + fraction
            else:
                zero = (guard ^ nonzero) >> 63
                zero_mask = ((zero << 64) - zero) & mask
                w_zero, b_zero = wb & zero_mask, b & zero_mask
                if zero_alpha == ONE32:
                    value = w_zero  # floor(1 * w) + b - ceil(1 * b)
                else:  # products below 2^64: no lane overflows
                    value = b_zero + (((w_zero * zero_alpha) & lanes.high) >> FRAC32)
                    product = b_zero * zero_alpha
                    value -= ((product & lanes.high) >> FRAC32) + (lanes.nonzero_flags(product & low_bits) >> 63)
                if nonzero:
                    w_words = lanes.unpack(wb) if wb else self.zero_row
                    b_words = lanes.unpack(b) if b else self.zero_row
                    others = array("Q", self.zero_row)
                    for j in compress(range(n), keys):
                        a, bond = alphas[keys[j]], b_words[j]
                        others[j] = ((a * w_words[j]) >> FRAC32) + bond + ((-a * bond) >> FRAC32)
                    value += lanes.pack(others)
            value = lanes.minimum(value, one_lanes) & mask
            out[i] = value or None
        return out

    # §3.10 - §3.12 --------------------------------------------------------------------------------

    def stored_bonds(self) -> list[SparseRow]:
        """§3.12: the new bond rows as u16, empty for uids without a new permit."""
        n, permit = self.n, self.new_permit
        out = [EMPTY_ROW] * n
        if self.inp.yuma3_on:
            if self.ema_ordered is not None:
                for i, entries in enumerate(self.ema_ordered):
                    if permit[i] and entries:
                        out[i] = SparseRow(
                            array("H", [j for j, _ in entries]),
                            array("H", [(v * U16_MAX) >> FRAC32 for _, v in entries]),
                        )
                return out
            width = self.rows.width
            for i, ema in enumerate(self.ema_rows):
                if ema is not None and permit[i]:
                    # ema <= 2^32, so each lane of ema * 65535 is below 2^48 and its u16,
                    # floor(ema * 65535 / 2^32), is bytes 4 and 5 of the lane
                    u16 = _u16_from_lanes((ema * U16_MAX).to_bytes(width, "little"), 8, 4)
                    out[i] = self.present_entries(ema, u16)
            return out
        if self.bond_image is None:
            return out
        r = len(self.bond_rows)
        image = _from_le("I", self.bond_image)
        full = self.full_row
        for p, i in enumerate(self.bond_rows):
            if permit[i]:
                row_bytes = _le_bytes(image[p::r])  # this row's 4 bytes per uid
                u16 = _u16_from_lanes(row_bytes, 4, 0)
                present = row_bytes[2::4]
                holes = present.count(0)
                if holes > _FEW:
                    out[i] = SparseRow(array("H", compress(full, present)), array("H", compress(u16, present)))
                    continue
                uids = full[:]
                j = present.rfind(0)
                while j >= 0:  # from the end, so the indices still to delete stay valid
                    del uids[j]
                    del u16[j]
                    j = present.rfind(0, 0, j)
                out[i] = SparseRow(uids, u16)
        return out

    def present_entries(self, present: int, values: array[int]) -> SparseRow:
        """The entries j (ascending) whose lane of `present` (packed, 64-bit lanes) is not 0."""
        lanes = self.rows
        holes = lanes.guard ^ lanes.nonzero_flags(present)
        if not holes:
            return SparseRow(self.full_row[:], values)
        if holes.bit_count() <= _FEW:
            uids, kept = self.full_row[:], values[:]
            for j in reversed(lanes.flagged_lanes(holes)):
                del uids[j]
                del kept[j]
            return SparseRow(uids, kept)
        flags = lanes.unpack(present)
        return SparseRow(array("H", compress(self.full_row, flags)), array("H", compress(values, flags)))

    def output(self) -> EpochOutput:
        incentive, dividends = self.incentive, self.dividends
        combined = list(map(add, incentive, dividends))
        total = sum(combined)
        if total:
            server = list(map(floordiv, map(mul, incentive, repeat(ONE32)), repeat(total)))
            validator = list(map(floordiv, map(mul, dividends, repeat(ONE32)), repeat(total)))
            combined = _normalize(combined)
        else:
            # §3.10 item 3: no consensus; validators are paid by active stake, else by stake
            server = incentive
            validator = combined = self.active_stake if any(self.active_stake) else self.stake
        rao = self.inp.emission

        def amounts(shares: list[int]) -> tuple[int, ...]:
            # I96F32(share) * I96F32(E), to u64: floor(raw * E / 2^32), never above E
            return tuple(map(rshift, map(mul, shares, repeat(rao)), repeat(FRAC32)))

        return EpochOutput(
            active=tuple(self.active),
            stake_weight=_to_u16(self.stake),
            consensus=_to_u16(self.consensus),
            incentive=_to_u16(incentive),
            dividends=_to_u16(dividends),
            validator_trust=_to_u16(self.validator_trust),
            emission=amounts(combined),
            server_emission=amounts(server),
            validator_emission=amounts(validator),
            validator_permit=tuple(self.new_permit),
            bonds=tuple(self.stored_bonds()),
        )


def _empty_output() -> EpochOutput:
    return EpochOutput((), (), (), (), (), (), (), (), (), (), ())


def run_epoch(inp: EpochInput) -> EpochOutput:
    """Run one Yuma Consensus epoch (epoch spec §3): what the chain publishes and stores."""
    if inp.n == 0:
        return _empty_output()
    epoch = _Epoch(inp)
    epoch.process_activity()
    epoch.process_stake()
    epoch.process_permits()
    epoch.process_active_stake()
    epoch.process_weights()
    epoch.process_consensus()
    epoch.process_clip_and_ranks()
    epoch.process_weights_for_bonds()
    if inp.yuma3_on:
        epoch.process_bonds_yuma3()
    else:
        epoch.process_bonds_yuma2()
    return epoch.output()
