"""The tree's one token-bucket limiter (used by the miner's admission and by gossip)."""

from __future__ import annotations

import pytest

from p2pnode.services.ratelimit import TokenBuckets


def test_a_burst_then_the_rate() -> None:
    buckets: TokenBuckets[bytes] = TokenBuckets(rate_per_s=2.0, burst=2.0, max_entries=10)
    assert [buckets.allow(b"a", 0) for _ in range(3)] == [True, True, False]
    assert buckets.allow(b"a", 500) is True  # one token back in 0.5 s
    assert buckets.allow(b"a", 500) is False
    assert buckets.allow(b"b", 500) is True  # buckets are per key
    assert buckets.allow(("topic", b"a"), 500) is True  # any hashable key


def test_a_clock_stepping_back_refills_nothing() -> None:
    buckets: TokenBuckets[bytes] = TokenBuckets(rate_per_s=1.0, burst=1.0)
    assert buckets.allow(b"a", 10_000)
    assert not buckets.allow(b"a", 0)
    assert not buckets.allow(b"a", 10_500)  # still measured from 10 000, the latest time seen
    assert buckets.allow(b"a", 11_000)


def test_memory_is_bounded_and_the_least_recent_key_is_forgotten() -> None:
    buckets: TokenBuckets[bytes] = TokenBuckets(rate_per_s=0.0, burst=1.0, max_entries=2)
    assert buckets.allow(b"a", 0) and buckets.allow(b"b", 0) and buckets.allow(b"c", 0)  # evicts a
    assert len(buckets) == 2
    assert buckets.allow(b"a", 0)  # forgotten, so full again
    assert not buckets.allow(b"c", 0)
    for i in range(1000):
        buckets.allow(i.to_bytes(4, "big"), 0)
    assert len(buckets) == 2


def test_bad_settings_are_refused() -> None:
    for rate, burst, entries in ((-1.0, 1.0, 1), (1.0, 0.5, 1), (1.0, 1.0, 0)):
        with pytest.raises(ValueError):
            TokenBuckets(rate, burst, entries)
