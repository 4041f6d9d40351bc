"""Fixed-point semantics of epoch spec §1: rounding, saturation, conversions, exp/sigmoid (TV11)."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from p2pnode.chain import fixed
from p2pnode.chain.fixed import (
    I32F32_MAX,
    I32F32_MIN,
    ONE32,
    checked_div32,
    exp32,
    exp_safe32,
    from_ratio,
    from_u16_proportion,
    liquid_alpha_sigmoid,
    max_upscale_to_u16,
    mul32,
    normalize32,
    safe_div32,
    saturating_div32,
    sigmoid_safe32,
    to_u16_proportion,
)

i64 = st.integers(I32F32_MIN, I32F32_MAX)


def f64(value: float) -> int:
    """`I32F32::from_num(f64)`: nearest raw to the literal's exact binary64 value, ties to even."""
    exact = Fraction(value)
    return from_ratio(exact.numerator, exact.denominator)


def f32(value: float) -> int:
    """`I32F32::from_num(f32)` (subtensor's `fixed()`): the literal rounded to binary32 first."""
    return f64(struct.unpack("<f", struct.pack("<f", value))[0])


# --- §1.2 operation semantics ------------------------------------------------------------------------


@given(i64, i64)
def test_mul_floors_the_exact_product_and_saturates(a: int, b: int) -> None:
    exact = Fraction(a * b, ONE32 * ONE32)
    expected = max(I32F32_MIN, min(I32F32_MAX, math.floor(exact * ONE32)))
    assert mul32(a, b) == expected


def test_mul_rounds_negative_products_towards_minus_infinity() -> None:
    assert mul32(-1, 1) == -1  # -2^-64 floors to -2^-32, not 0
    assert mul32(1, 1) == 0


@given(i64, i64)
def test_div_truncates_towards_zero_and_safe_div_is_zero_on_overflow(a: int, b: int) -> None:
    if b == 0:
        assert checked_div32(a, b) is None
        assert safe_div32(a, b) == 0
        return
    exact = Fraction(a * ONE32, b)
    truncated = int(exact)  # int() of a Fraction truncates towards zero
    if I32F32_MIN <= truncated <= I32F32_MAX:
        assert checked_div32(a, b) == truncated
        assert safe_div32(a, b) == truncated
    else:
        assert checked_div32(a, b) is None
        assert safe_div32(a, b) == 0
        assert saturating_div32(a, b) in (I32F32_MIN, I32F32_MAX)


def test_safe_div_of_an_overflowing_quotient_is_zero_not_saturated() -> None:
    assert safe_div32(I32F32_MAX, ONE32 // 2) == 0
    assert saturating_div32(I32F32_MAX, ONE32 // 2) == I32F32_MAX


def test_float_literals_round_to_nearest_ties_to_even() -> None:
    assert from_ratio(1, 2) == ONE32 // 2
    assert from_ratio(1, 3 * ONE32) == 0  # 1/3 of an ulp rounds down
    assert from_ratio(1, 2 * ONE32) == 0  # half an ulp: tie, to even (0)
    assert from_ratio(3, 2 * ONE32) == 2  # 1.5 ulp: tie, to even (2)
    assert f64(0.1) == 429496730


def test_u16_round_trip_loses_and_the_loss_is_reproduced() -> None:
    assert from_u16_proportion(1) == 65537  # floor(2^32 / 65535)
    assert to_u16_proportion(from_u16_proportion(1)) == 0
    assert to_u16_proportion(ONE32) == 65535
    assert to_u16_proportion(-5) == 0  # floor, then clamped to u16
    assert to_u16_proportion(2 * ONE32) == 65535


def test_normalize_sums_to_slightly_less_than_one() -> None:
    normed = normalize32([ONE32, ONE32, ONE32])
    assert normed == [1431655765] * 3
    assert sum(normed) == ONE32 - 1
    assert normalize32([0, 0]) == [0, 0]


def test_weight_max_upscale_matches_the_stored_rows_of_the_vectors() -> None:
    raws = [v << 32 for v in (32767, 32767)]
    assert max_upscale_to_u16(raws) == [65535, 65535]  # TV3
    assert max_upscale_to_u16([v << 32 for v in (43690, 21845)]) == [65535, 32768]  # TV4
    assert max_upscale_to_u16([0, 0]) == [0, 0]


# --- §1.3 constants ----------------------------------------------------------------------------------


def test_constants_of_section_1_3() -> None:
    assert from_u16_proportion(32767) == 2147450879  # kappa
    for bma, alpha in ((900_000, 429496730), (975_000, 107374183)):
        ratio = fixed.safe_div64(fixed.from_int64(bma), fixed.from_int64(10**6))
        assert ONE32 - fixed.fixed64_to_fixed32(ratio) == alpha
    assert (from_u16_proportion(45875), from_u16_proportion(58982)) == (3006509875, 3865503334)
    weights = [16383, 32767, 49149, 65535]
    raws = [w << 32 for w in weights]
    assert normalize32(raws) == [429486243, 858998702, 1288458730, 1718023619]
    stake64 = fixed.normalize64([fixed.from_int64(1)] * 10)
    assert fixed.fixed64_to_fixed32(stake64[0]) == 429496729
    assert [exp_safe32(x << 32) for x in (-5, 5, 1, -1)] == [28939262, 637429664624, 11674931200, 1580030169]
    low, high = from_u16_proportion(45875), from_u16_proportion(58982)
    alphas = [liquid_alpha_sigmoid(0, d, 0, low, high, 1000 << 32) for d in (0, ONE32 // 2, ONE32)]
    assert alphas == [3012258989, 3436006604, 3859754218]


def test_e_constant_is_e_truncated_to_23_fractional_bits() -> None:
    # e = sum 1/k!; the partial sum to k=40 is below e by less than 2/41!, far below 2^-23.
    partial = sum(Fraction(1, math.factorial(k)) for k in range(41))
    upper = partial + Fraction(2, math.factorial(41))
    assert math.floor(partial * 2**23) == math.floor(upper * 2**23) == 22802600
    assert fixed.E_I9F23_AS_I32F32 == 22802600 << 9
    assert exp32(ONE32) == 11674931200


# --- TV11: exp and sigmoid, exact equality (tests/math.rs::test_math_sigmoid_safe, exp_safe) ---------


def test_exp_safe_clamps_to_plus_minus_twenty() -> None:
    assert exp_safe32(0) == exp32(0) == ONE32
    assert exp_safe32(-21 << 32) == exp_safe32(I32F32_MIN) == exp32(-20 << 32)
    assert exp_safe32(21 << 32) == exp_safe32(I32F32_MAX) == exp32(20 << 32)


def test_tv11_sigmoid_rho_30() -> None:
    xs = [I32F32_MIN, 0, f64(0.4), f64(0.5), f64(0.6), ONE32, I32F32_MAX]
    got = [sigmoid_safe32(x, 30 << 32, f64(0.5)) for x in xs]
    assert got == [8, 1313, 203692573, 2147483648, 4091274722, 4294965983, 4294967288]
    targets = [0.0000000019, 0.0000003057, 0.0474258729, 0.5, 0.952574127, 0.9999996943, 0.9999999981]
    assert got == [f64(t) for t in targets]


def test_tv11_sigmoid_rho_40_on_f32_inputs() -> None:
    xs = [f32(v) for v in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    got = [sigmoid_safe32(x, 40 << 32, f64(0.5)) for x in xs]
    assert got == [8, 483, 26389, 1440318, 77250201, 2147483648, 4217717184, 4293526978, 4294940907,
                   4294966813, 4294967288]


def test_tv11_sigmoid_with_saturating_rho_and_kappa() -> None:
    xs = [I32F32_MIN, 0, f64(0.4), f64(0.5), f64(0.6), ONE32, I32F32_MAX]
    tiny, half = f32(0.0000000019), f64(0.5)
    assert [sigmoid_safe32(x, I32F32_MAX, I32F32_MAX) for x in xs] == [tiny] * 6 + [half]
    assert [sigmoid_safe32(x, I32F32_MIN, I32F32_MIN) for x in xs] == [half] + [tiny] * 6
