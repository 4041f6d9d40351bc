"""The node's only reader of time.

Services take a `Clock` and never call `time` or trio's clock themselves, so the same code runs on
the wall clock and, in the simulator, on trio's virtual clock (`trio.testing.MockClock`), where
sleeping costs no real time.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (or since the simulation's origin)."""

    async def sleep_until_ms(self, when_ms: int) -> None:
        """Return at `when_ms` (at once if it has passed); a trio checkpoint either way."""


class SystemClock:
    """Wall-clock time, shifted by `offset_ms` (tests of a badly set clock); sleeps with trio."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    async def sleep_until_ms(self, when_ms: int) -> None:
        await trio.sleep(max(0, when_ms - self.now_ms()) / 1000)


class TrioClock:
    """Time read from trio's clock, plus a fixed origin: under MockClock, virtual time.

    `origin_ms` is the Unix-ms value of trio time 0.0, so a simulation whose genesis time is
    `origin_ms` starts at slot 0.
    """

    def __init__(self, origin_ms: int = 0) -> None:
        self.origin_ms = origin_ms

    def now_ms(self) -> int:
        # round, not int: 2.675 s of float virtual time must read as 2675 ms, the instant slept to
        return self.origin_ms + round(trio.current_time() * 1000)

    async def sleep_until_ms(self, when_ms: int) -> None:
        await trio.sleep_until((when_ms - self.origin_ms) / 1000)
