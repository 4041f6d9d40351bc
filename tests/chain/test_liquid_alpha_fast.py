"""The epoch's fast liquid-alpha path gives exactly the reference's numbers (`fixed`)."""

from __future__ import annotations

import random

from p2pnode.chain.fixed import (
    EXP_SAFE_MAX,
    EXP_SAFE_MIN,
    I32F32_MAX,
    I32F32_MIN,
    ONE32,
    clamp32,
    exp_safe32,
    liquid_alpha_sigmoid,
    sub32,
)
from p2pnode.chain.yuma import _FROM_U16, _LiquidAlpha, exp_safe32_fast


def test_fast_exp_is_exp_safe32() -> None:
    rng = random.Random(5)
    edges = [0, 1, -1, ONE32, -ONE32, ONE32 + 1, ONE32 - 1, EXP_SAFE_MAX, EXP_SAFE_MIN, EXP_SAFE_MAX + 1,
             EXP_SAFE_MIN - 1, EXP_SAFE_MAX - 1, EXP_SAFE_MIN + 1, I32F32_MAX, I32F32_MIN, 1 << 31, -(1 << 31)]
    inputs = edges + [rng.randrange(EXP_SAFE_MIN - ONE32, EXP_SAFE_MAX + ONE32) for _ in range(3000)]
    inputs += [rng.randrange(-ONE32, ONE32) >> rng.randrange(0, 32) for _ in range(1000)]  # near 0
    for raw in inputs:
        assert exp_safe32_fast(raw) == exp_safe32(raw), raw


def test_memoised_alpha_is_the_reference_sigmoid() -> None:
    rng = random.Random(11)
    settings = [(0, 65535, 1000), (45875, 58982, 1000), (100, 60000, -300), (60000, 100, 32767),
                (1, 2, -32768), (0, 65535, 0), (30000, 40000, 7)]
    for low_u16, high_u16, steep in settings:
        low, high, steepness = _FROM_U16[low_u16], _FROM_U16[high_u16], steep << 32
        alpha_of = _LiquidAlpha(low, high, steepness)
        values = [0, 1, ONE32 // 2, ONE32 - 1, ONE32] + [rng.randrange(0, ONE32 + 1) for _ in range(60)]
        for _ in range(600):
            c, w, b = rng.choice(values), rng.choice(values), rng.choice(values)
            # What ema_liquid computes as the cache key: the clamped buy or sell difference.
            combined = clamp32(sub32(w, c), 0, ONE32) if w >= b else clamp32(sub32(b, w), 0, ONE32)
            expected = liquid_alpha_sigmoid(c, w, b, low, high, steepness)
            assert alpha_of.cache.get(combined, expected) == expected
            assert alpha_of.compute(combined) == expected, (c, w, b, low_u16, high_u16, steep)


def test_bracketed_alpha_is_the_series_alpha_wherever_it_answers() -> None:
    """`_LiquidAlpha.bracketed` skips the exp series when an interval proven to hold it gives one
    alpha; wherever it answers it must be the series' alpha. It must answer nearly always where
    the defaults put x for small buy/sell differences (x near 5), and mostly over 0 < |x| <= 8."""
    rng = random.Random(17)
    for low_u16, high_u16 in [(45875, 58982), (0, 65535), (60000, 100), (1, 2), (65535, 65535)]:
        alpha_of = _LiquidAlpha(_FROM_U16[low_u16], _FROM_U16[high_u16], 1000 << 32)
        edges = [k << 26 for k in range(1, 513)] + [k << 20 for k in range(1, 64)]
        spread = [rng.randrange(1, (8 << 32) + 1) for _ in range(1500)]
        near_five = [(5 << 32) - rng.randrange(0, 1 << 26) for _ in range(500)]
        small = [rng.randrange(1, 1 << rng.randrange(1, 33)) for _ in range(300)]
        answered = {"spread": 0, "near_five": 0}
        for name, ts in [("edges", [e + d for e in edges for d in (-1, 0, 1)]), ("spread", spread),
                         ("near_five", near_five), ("small", small)]:
            for t in ts:
                for x in (t, -t):
                    if x == ONE32:
                        continue
                    alpha = alpha_of.bracketed(x, t)
                    if alpha is not None:
                        answered[name] = answered.get(name, 0) + 1
                        assert alpha == alpha_of.of_exp(exp_safe32(x)), (x, low_u16, high_u16)
        assert answered["near_five"] > 0.95 * 2 * len(near_five), (low_u16, high_u16)
        assert answered["spread"] > 0.7 * 2 * len(spread), (low_u16, high_u16)


def mixed_key(combined: int) -> int:
    """The key `ema_liquid_packed` looks a `combined` value up by."""
    return combined ^ (combined >> 16)


def test_alphas_by_key_equal_the_reference_sigmoid() -> None:
    """`values_of_keys` (the bracket written out in one loop, per distinct value) gives the
    reference alpha on every branch: x = 0, x = 1, |x| beyond the bracket, brackets that miss
    (near |x| = 0 the interval reaches below 1), and both signs."""
    rng = random.Random(23)
    settings = [(45875, 58982, 1000), (0, 65535, 1000), (60000, 100, 32767), (1, 2, -32768),
                (0, 65535, 0), (30000, 40000, 7), (100, 60000, -300)]
    for low_u16, high_u16, steep in settings:
        low, high, steepness = _FROM_U16[low_u16], _FROM_U16[high_u16], steep << 32
        alpha_of = _LiquidAlpha(low, high, steepness)
        combined = [0, 1, ONE32 // 2, ONE32 // 2 + 1, ONE32 // 2 - 1, ONE32 - 1, ONE32]
        combined += [rng.randrange(0, ONE32 + 1) for _ in range(1500)]
        combined += [ONE32 // 2 + rng.randrange(-(1 << 26), 1 << 26) for _ in range(500)]  # |x| small
        if steep:  # x = +-1 exactly, where the series is skipped for the stored constant e
            step = (ONE32 << 32) // abs(alpha_of.slope) if alpha_of.slope else 0
            combined += [c for c in (ONE32 // 2 + step, ONE32 // 2 - step) if 0 <= c <= ONE32]
        by_key = alpha_of.values_of_keys(map(mixed_key, combined))
        for c in combined:
            # the reference's arguments for a pure buy difference: w = c, consensus 0, bond 0
            assert by_key[mixed_key(c)] == liquid_alpha_sigmoid(0, c, 0, low, high, steepness), (c, steep)
