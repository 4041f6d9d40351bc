"""The one token-bucket rate limiter of the tree (stdlib only, so every layer may use it).

    buckets = TokenBuckets(rate_per_s=1.0, burst=5.0, max_entries=10_000)
    if not buckets.allow(caller_key, clock.now_ms()):
        refuse()

A bucket per key holds at most `burst` tokens and refills at `rate_per_s`; a request takes one.
Time is integer milliseconds from the caller's clock (`p2pnode.services.clock.Clock.now_ms`), so
the limiter runs on virtual time in tests. Memory is bounded: past `max_entries` keys the least
recently used is forgotten, and comes back with a full bucket. A caller that can mint keys for
free can therefore outrun a per-key table alone; pair it with a shared bucket for that class.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["TokenBuckets"]

K = TypeVar("K", bound=Hashable)


class TokenBuckets(Generic[K]):
    """A token bucket per key (`rate_per_s` tokens/s, at most `burst`), at most `max_entries` keys."""

    def __init__(self, rate_per_s: float, burst: float, max_entries: int = 10_000) -> None:
        if rate_per_s < 0 or burst < 1 or max_entries < 1:
            raise ValueError("rate_per_s >= 0, burst >= 1 and max_entries >= 1 are required")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_entries = max_entries
        self._buckets: OrderedDict[K, tuple[float, int]] = OrderedDict()  # key -> (tokens, at ms)

    def allow(self, key: K, now_ms: int) -> bool:
        """Take one token from `key`'s bucket if it has one; either way the key becomes most recent."""
        tokens, at_ms = self._buckets.pop(key, (self.burst, now_ms))
        # A clock that steps back refills nothing (max 0), rather than draining the bucket.
        tokens = min(self.burst, tokens + max(0, now_ms - at_ms) * self.rate_per_s / 1000)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, max(now_ms, at_ms))
        if len(self._buckets) > self.max_entries:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
