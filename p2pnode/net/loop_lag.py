"""How late our own event loop runs: the local half of "who caused this timeout?".

A task sleeps `interval_s` at a time and records by how much each wakeup came late. A wakeup is late
when the loop was busy with other work (a block import, a burst of gossip) or when the process did
not get a CPU (many peers on a few cores). While the loop is late, an answer that has already
arrived waits unread in a socket buffer, so a request can time out through no fault of the peer it
asked. `lag_between(start, end)` is the lateness recorded over a request's window, and
`remote_share(start, end)` what share of a timeout the remote can be blamed for:
1 when our loop kept time, falling to 0 once our own lateness reaches `forgive_at` of the window.

A truly unresponsive peer still pays in full whenever our loop is on time; only the part of its
window we ourselves lost is forgiven. Remote input cannot buy forgiveness cheaply: to make our loop
late it must make us work, and the work it sends is bounded and scored elsewhere.

Memory is bounded: only the last `history_s` of samples are kept (at most history_s / interval_s).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class LoopLagConfig:
    interval_s: float = 0.25
    history_s: float = 120.0
    # Our own lateness at which a timeout is forgiven entirely, as a share of the request's window.
    forgive_at: float = 0.25

    def __post_init__(self) -> None:
        if not self.interval_s > 0 or not self.history_s >= self.interval_s:
            raise ValueError("interval_s must be positive and history_s at least interval_s")
        if not 0 < self.forgive_at <= 1:
            raise ValueError("forgive_at must be in (0, 1]")


class LoopLagMonitor:
    """Samples the event loop's lateness; see the module docstring."""

    def __init__(self, config: LoopLagConfig | None = None) -> None:
        self.config = config or LoopLagConfig()
        # (wakeup time, lateness of that wakeup), oldest first.
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(self.config.history_s / self.config.interval_s) + 1)
        self.total_lag_s = 0.0
        self.max_lag_s = 0.0
        self.samples_taken = 0

    def record(self, woke_at: float, lateness: float) -> None:
        """One wakeup that came `lateness` seconds late (the monitor's task calls this; tests too)."""
        lateness = max(0.0, lateness)
        self._samples.append((woke_at, lateness))
        self.total_lag_s += lateness
        self.max_lag_s = max(self.max_lag_s, lateness)
        self.samples_taken += 1

    def lag_between(self, start: float, end: float) -> float:
        """Lateness recorded by wakeups in (start, end]: how long our loop stalled in that window."""
        lag = 0.0
        for woke_at, lateness in reversed(self._samples):
            if woke_at <= start:
                break
            if woke_at <= end:
                # A wakeup late by more than it lies inside the window only counts its inside part.
                lag += min(lateness, woke_at - start)
        return lag

    def remote_share(self, start: float, end: float) -> float:
        """The share (0..1) of a timeout over [start, end] that is the remote's fault."""
        window = end - start
        if window <= 0:
            return 1.0
        lost = self.lag_between(start, end) / window
        return max(0.0, 1.0 - lost / self.config.forgive_at)

    def recent_lag(self, seconds: float) -> float:
        """Lateness over the `seconds` before the latest sample (for statistics)."""
        if not self._samples:
            return 0.0
        latest = self._samples[-1][0]
        return self.lag_between(latest - seconds, latest)

    async def run(self) -> None:
        interval = self.config.interval_s
        while True:
            asked = trio.current_time()
            await trio.sleep(interval)
            woke_at = trio.current_time()
            self.record(woke_at, woke_at - asked - interval)
