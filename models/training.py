"""Helpers shared by the training code of the built-in models."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

# Threads for training the built-in models (scripts and quick start-up training).
TRAINING_THREADS = 1


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every training script takes: the cap on the loop and the torch threads."""
    parser.add_argument("--max-seconds", type=float, default=100.0, help="cap on the training loop (0: none)")
    parser.add_argument(
        "--threads",
        type=int,
        default=TRAINING_THREADS,
        help="torch threads (1 is fastest for these tiny models)",
    )


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous setting.

    Training these tiny models on one thread is as fast as on two when the CPU is idle, and several
    times faster when other processes share the cores: OpenMP workers then spin waiting for each
    other (measured here: 0.09 s/step on one thread against 0.49 s/step on two, same model).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Schedule:
    """How far training has come, as a fraction in [0, 1]: by steps, or by time under a cap.

    Without ``max_seconds`` the fraction is ``step / steps``, so training is deterministic. With it,
    the fraction is the larger of that and ``elapsed / max_seconds``: on a slow or busy machine the
    learning-rate schedule is compressed to fit the time and training stops at the cap, at the
    cost of determinism (`cut_short` tells).
    """

    def __init__(self, steps: int, max_seconds: float | None = None) -> None:
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        self.steps = steps
        self.max_seconds = max_seconds
        self.cut_short = False
        self.steps_done = 0  # steps completed when `fraction` was last asked
        self._started = time.monotonic()

    def fraction(self, step: int) -> float:
        """The fraction done before step ``step`` (0-based); training stops once it reaches 1."""
        self.steps_done = step
        by_steps = step / self.steps
        if self.max_seconds is None:
            return by_steps
        by_time = (time.monotonic() - self._started) / self.max_seconds
        if by_time >= 1.0 and by_steps < 1.0:
            self.cut_short = True
        return max(by_steps, by_time)

    def warn_if_cut_short(self, model_name: str) -> None:
        """Say so when quick start-up training of `model_name` stopped at its time cap."""
        if self.cut_short:
            log.warning("%s: quick training stopped by its %.0f s cap after %d of %d steps (a slow or busy "
                        "CPU); these weights are weaker and not reproducible",
                        model_name, self.max_seconds, self.steps_done, self.steps)


def cosine_rate(base: float, fraction: float, step: int, warmup_steps: int) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to 0 as ``fraction`` goes to 1."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return base * warmup * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))
