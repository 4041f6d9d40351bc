"""Profiling a running peer on demand: `P2PNODE_PROFILE=DIR`, then SIGUSR1 to start and stop.

A peer started with the variable set installs a SIGUSR1 handler: the first signal starts a
cProfile of the process (the trio loop runs in its main thread, so every task is covered), the
next one stops it and writes `DIR/<pid>-<n>.prof` (read it with `python -m pstats`); times are
the process's CPU time. Benchmarks
use it to profile one peer of a running network over a measurement window, without paying the
profiler's cost on every peer or over start-up.
"""

from __future__ import annotations

import cProfile
import os
import signal
import time
from pathlib import Path
from types import FrameType

PROFILE_ENV = "P2PNODE_PROFILE"


class SignalToggledProfiler:
    """Starts and stops a cProfile on each SIGUSR1; see the module docstring."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[Path] = []
        self._profile: cProfile.Profile | None = None

    def install(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGUSR1, self._toggle)

    def _toggle(self, _signum: int, _frame: FrameType | None) -> None:
        if self._profile is None:
            # CPU time, not wall time: on a shared machine wall time counts waiting for a core.
            self._profile = cProfile.Profile(time.process_time)
            self._profile.enable()
            return
        self.stop()

    def stop(self) -> None:
        """Stop a running profile and write it; nothing to do when none runs."""
        profile, self._profile = self._profile, None
        if profile is None:
            return
        profile.disable()
        path = self.out_dir / f"{os.getpid()}-{len(self.written)}.prof"
        profile.dump_stats(path)
        self.written.append(path)


def profiler_from_env(environ: dict[str, str] | None = None) -> SignalToggledProfiler | None:
    """The installed profiler when `P2PNODE_PROFILE` names a directory, else None."""
    target = (os.environ if environ is None else environ).get(PROFILE_ENV, "").strip()
    if not target:
        return None
    profiler = SignalToggledProfiler(Path(target))
    profiler.install()
    return profiler
