"""Binary fixed-point arithmetic with substrate-fixed v0.6.0 + subtensor safe-math semantics (epoch spec §1).

A fixed-point number is carried as its raw two's-complement integer (a plain Python ``int``): the value
is ``raw / 2**FRAC``. There are no objects per number, so vector code can stay in ``map``/``sum``.

Types used by the epoch (suffix in the function names):

| suffix | type   | raw range            | fractional bits |
| ------ | ------ | -------------------- | --------------- |
| ``32`` | I32F32 | signed 64-bit        | 32              |
| ``64`` | I64F64 | signed 128-bit       | 64              |
| ``96`` | I96F32 | signed 128-bit       | 32              |

Rounding rules (§1.2):

* ``mul``: ``floor(a * b / 2**F)`` (arithmetic shift, so towards -inf for negative products);
* ``div``: ``trunc(a * 2**F / b)`` towards zero; ``checked_div`` is ``None`` on a zero divisor or when
  the quotient does not fit; ``safe_div`` turns that ``None`` into 0; ``saturating_div`` clamps;
* ``saturating_*`` clamp to the type's range; ``checked_*`` return ``None`` on overflow;
* conversion to an integer or to fewer fractional bits floors; to more bits is exact.

No floats anywhere: constants that the chain writes as float literals are exact integers here
(see ``from_ratio`` and the constants below).
"""

from __future__ import annotations

from collections.abc import Sequence

# --- type bounds (raw) -----------------------------------------------------------------------------

FRAC32 = 32
ONE32 = 1 << 32
HALF32 = 1 << 31
I32F32_MIN = -(1 << 63)
I32F32_MAX = (1 << 63) - 1

FRAC64 = 64
ONE64 = 1 << 64
I64F64_MIN = -(1 << 127)
I64F64_MAX = (1 << 127) - 1

I96F32_MIN = -(1 << 127)
I96F32_MAX = (1 << 127) - 1

U16_MAX = 65535
U64_MAX = (1 << 64) - 1

# The constant e as substrate-fixed's `transcendental::exp` returns it for an input of exactly 1:
# `I9F23::from_bits(consts::E.to_bits() >> 103)`, i.e. floor(e * 2**23), widened to 32 fractional bits.
# floor(e * 2**23) = 22802600 (e * 2**23 = 22802600.99...); tests re-derive it from an exact series.
E_I9F23_AS_I32F32 = 22802600 << 9  # 11674931200, 2.7182817459...


def _clamp(raw: int, lo: int, hi: int) -> int:
    return lo if raw < lo else hi if raw > hi else raw


def _div_trunc(num: int, den: int) -> int:
    """Integer division rounding towards zero (Rust `/` on integers); `den` must be non-zero."""
    q = abs(num) // abs(den)
    return q if (num < 0) == (den < 0) else -q


# --- I32F32 ------------------------------------------------------------------------------------------


def sat32(raw: int) -> int:
    """Clamp a raw value to the I32F32 range."""
    return _clamp(raw, I32F32_MIN, I32F32_MAX)


def from_int32(value: int) -> int:
    """`I32F32::saturating_from_num(integer)`: exact, clamped."""
    return sat32(value << FRAC32)


def add32(a: int, b: int) -> int:
    """`saturating_add`."""
    return sat32(a + b)


def sub32(a: int, b: int) -> int:
    """`saturating_sub`."""
    return sat32(a - b)


def mul32(a: int, b: int) -> int:
    """`saturating_mul`: floor of the exact product, clamped."""
    return sat32((a * b) >> FRAC32)


def checked_mul32(a: int, b: int) -> int | None:
    raw = (a * b) >> FRAC32
    return raw if I32F32_MIN <= raw <= I32F32_MAX else None


def checked_div32(a: int, b: int) -> int | None:
    """`checked_div`: truncating quotient, None on a zero divisor or overflow."""
    if b == 0:
        return None
    raw = _div_trunc(a << FRAC32, b)
    return raw if I32F32_MIN <= raw <= I32F32_MAX else None


def safe_div32(a: int, b: int) -> int:
    """subtensor `safe_div`: the checked quotient, or 0 on a zero divisor or overflow."""
    raw = checked_div32(a, b)
    return 0 if raw is None else raw


def saturating_div32(a: int, b: int) -> int:
    """`saturating_div`: truncating quotient clamped to the range; x/0 saturates by sign of x."""
    if b == 0:
        return 0 if a == 0 else (I32F32_MAX if a > 0 else I32F32_MIN)
    return sat32(_div_trunc(a << FRAC32, b))


def neg32(a: int) -> int:
    """`saturating_neg`."""
    return sat32(-a)


def to_u16(raw: int) -> int:
    """`saturating_to_num::<u16>()` of an I32F32: floor, clamped to [0, 65535]."""
    return _clamp(raw >> FRAC32, 0, U16_MAX)


def to_u64(raw: int) -> int:
    """`saturating_to_num::<u64>()` of a value with 32 fractional bits (I32F32 or I96F32)."""
    return _clamp(raw >> FRAC32, 0, U64_MAX)


def to_u16_proportion(raw: int) -> int:
    """`fixed_proportion_to_u16`: floor(p * 65535) as u16, via `saturating_mul(I32F32(65535))`."""
    return to_u16(mul32(raw, U16_MAX << FRAC32))


def from_u16_proportion(value: int) -> int:
    """`u16_proportion_to_fixed`: I32F32(u) / I32F32(65535) with a truncating division."""
    return safe_div32(value << FRAC32, U16_MAX << FRAC32)


def normalize32(values: Sequence[int]) -> list[int]:
    """`inplace_normalize`: divide by the exact sum unless it is 0 (then a copy is returned)."""
    total = sum(values)
    if total == 0:
        return list(values)
    return [safe_div32(v, total) for v in values]


def max_upscale_to_u16(values: Sequence[int]) -> list[int]:
    """`vec_max_upscale_to_u16` on I32F32 raws: scale so the max becomes 65535, rounding half away."""
    if not values:
        return []
    u16_max = U16_MAX << FRAC32
    top = max(values)
    if top == 0:
        return [to_u16(mul32(v, u16_max)) for v in values]
    if top > 32768 << FRAC32:
        factor = safe_div32(u16_max, top)
        return [to_u16(round32(mul32(v, factor))) for v in values]
    return [to_u16(round32(safe_div32(mul32(v, u16_max), top))) for v in values]


def round32(raw: int) -> int:
    """`round()`: to the nearest integer, ties away from zero, saturating."""
    if raw >= 0:
        return sat32(((raw + HALF32) >> FRAC32) << FRAC32)
    return sat32(-(((-raw + HALF32) >> FRAC32) << FRAC32))


# --- I64F64 ------------------------------------------------------------------------------------------


def sat64(raw: int) -> int:
    return _clamp(raw, I64F64_MIN, I64F64_MAX)


def from_int64(value: int) -> int:
    """`I64F64::saturating_from_num(integer)`."""
    return sat64(value << FRAC64)


def checked_div64(a: int, b: int) -> int | None:
    if b == 0:
        return None
    raw = _div_trunc(a << FRAC64, b)
    return raw if I64F64_MIN <= raw <= I64F64_MAX else None


def safe_div64(a: int, b: int) -> int:
    raw = checked_div64(a, b)
    return 0 if raw is None else raw


def to_u64_from64(raw: int) -> int:
    """`saturating_to_num::<u64>()` of an I64F64."""
    return _clamp(raw >> FRAC64, 0, U64_MAX)


def fixed64_to_fixed32(raw: int) -> int:
    """`I32F32::saturating_from_num(I64F64)`: drop 32 fractional bits (floor), clamp."""
    return sat32(raw >> (FRAC64 - FRAC32))


def normalize64(values: Sequence[int]) -> list[int]:
    """`inplace_normalize_64`."""
    total = sum(values)
    if total == 0:
        return list(values)
    return [safe_div64(v, total) for v in values]


# --- I96F32 ------------------------------------------------------------------------------------------


def sat96(raw: int) -> int:
    return _clamp(raw, I96F32_MIN, I96F32_MAX)


def from_int96(value: int) -> int:
    return sat96(value << FRAC32)


def mul96(a: int, b: int) -> int:
    return sat96((a * b) >> FRAC32)


# --- exact constants from rationals ------------------------------------------------------------------


def from_ratio(num: int, den: int, frac: int = FRAC32) -> int:
    """Raw value nearest to num/den with `frac` fractional bits, ties to even.

    This is how a float literal becomes fixed point, once the literal's exact binary value is
    written as a ratio (e.g. `0.5` is 1/2; a binary64 value is m / 2**k).
    """
    if den <= 0:
        raise ValueError("den must be positive")
    q, r = divmod(num << frac, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


# --- transcendental (substrate-fixed `transcendental::exp`, I32F32) ----------------------------------

EXP_SAFE_MIN = -20 << FRAC32
EXP_SAFE_MAX = 20 << FRAC32


def exp32(raw: int) -> int | None:
    """substrate-fixed `exp::<I32F32, I32F32>`: Taylor series, checked; None where Rust returns Err.

    x == 0 gives 1; x == 1 gives the 23-bit constant e; otherwise 1 + t + sum_{i=2}^{31} t^i/i!
    with every term computed as checked_mul then checked_div (both rounding per §1.2), and the
    reciprocal for negative inputs.
    """
    if raw == 0:
        return ONE32
    if raw == ONE32:
        return E_I9F23_AS_I32F32
    negative = raw < 0
    t = -raw if negative else raw
    if t > I32F32_MAX:  # `-I32F32::MIN` overflows in Rust too; exp_safe never gets here
        return None
    result = t + ONE32
    if result > I32F32_MAX:
        return None
    term = t
    for i in range(2, 32):
        prod = (term * t) >> FRAC32
        if prod > I32F32_MAX:
            return None
        # checked_div by the integer i: trunc((prod << 32) / (i << 32)) == prod // i for prod >= 0
        term = prod // i
        if term == 0:
            break  # every later term is 0 too: 0 * t = 0, 0 / i = 0, result + 0 = result
        result += term
        if result > I32F32_MAX:
            return None
    if negative:
        return checked_div32(ONE32, result)
    return result


def exp_safe32(raw: int) -> int:
    """subtensor `exp_safe`: clamp the input to [-20, 20]; on error 0 for x <= 0, else I32F32::MAX."""
    x = EXP_SAFE_MIN if raw < EXP_SAFE_MIN else EXP_SAFE_MAX if raw > EXP_SAFE_MAX else raw
    out = exp32(x)
    if out is None:
        return 0 if x <= 0 else I32F32_MAX
    return out


def sigmoid_safe32(x: int, rho: int, kappa: int) -> int:
    """subtensor `sigmoid_safe`: 1 / (1 + exp_safe(-rho * (x - kappa))), all saturating."""
    offset = sub32(x, kappa)
    neg_rho = mul32(rho, neg32(ONE32))
    exp_input = mul32(neg_rho, offset)
    denominator = add32(exp_safe32(exp_input), ONE32)
    return safe_div32(ONE32, denominator)


def clamp32(value: int, low: int, high: int) -> int:
    """`clamp_i32f32`: `value.min(high).max(low)` (so low wins if low > high)."""
    v = high if value > high else value
    return low if v < low else v


def liquid_alpha_sigmoid(
    consensus: int, weight: int, bond: int, alpha_low: int, alpha_high: int, steepness: int
) -> int:
    """subtensor `liquid_alpha_sigmoid` (epoch spec §3.9b): the per-entry EMA alpha, all raw I32F32.

    `steepness` is the raw I32F32 of the i16 hyperparameter.
    """
    diff_buy = clamp32(sub32(weight, consensus), 0, ONE32)
    diff_sell = clamp32(sub32(bond, weight), 0, ONE32)
    combined = diff_buy if weight >= bond else diff_sell
    slope = saturating_div32(steepness, -100 << FRAC32)
    x = mul32(slope, sub32(combined, HALF32))
    sigmoid = saturating_div32(ONE32, add32(ONE32, exp_safe32(x)))
    alpha = add32(alpha_low, mul32(sigmoid, sub32(alpha_high, alpha_low)))
    return clamp32(alpha, alpha_low, alpha_high)
