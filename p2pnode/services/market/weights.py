"""Scores to weights: pay the margin over the task's baseline, sharpened, quantised to u16."""

from __future__ import annotations

import math

__all__ = ["DEFAULT_BASELINE_TOLERANCE", "quantise_weights", "value_over_baseline"]

U16_MAX = 65535
DEFAULT_BASELINE_TOLERANCE = 1e-9


def value_over_baseline(
    averages: dict[int, tuple[float, float]], sharpness: float, tolerance: float = DEFAULT_BASELINE_TOLERANCE
) -> dict[int, float]:
    """What each miner is paid for: ``max(0, score - baseline - tolerance) ** sharpness``.

    `averages` maps uid -> (average score, average baseline score over the same challenges). A
    miner no better than the task's trivial baseline gets 0; above it, `sharpness` > 1 pays the
    best miners disproportionately more (1: in proportion to the margin). The tolerance absorbs
    rounding: a miner that answers exactly the baseline scores equal to it within ~1e-15.
    """
    values = {}
    for uid, (score, baseline) in averages.items():
        margin = score - baseline - tolerance
        if math.isfinite(margin) and margin > 0:
            values[uid] = margin**sharpness
    return values


def quantise_weights(scores: dict[int, float]) -> tuple[list[int], list[int]]:
    """u16 weights from scores, by uid: the largest score becomes 65535; zero weights are left out."""
    finite = {uid: s for uid, s in scores.items() if math.isfinite(s) and s > 0}
    if not finite:
        return [], []
    top = max(finite.values())
    pairs = [(uid, round(s / top * U16_MAX)) for uid, s in sorted(finite.items())]
    pairs = [(uid, v) for uid, v in pairs if v > 0]
    return [uid for uid, _ in pairs], [v for _, v in pairs]
