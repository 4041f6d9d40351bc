"""Internet-like links for the simulator: per-pair latency, per-node uplink bandwidth, a sparse mesh.

- Latency: every pair of nodes gets a round-trip time drawn from a log-normal distribution (by
  default median 40 ms, sigma 0.87, so about 1 pair in 100 is slower than 300 ms; clamped to
  [2, 600] ms), the one-way delay being half of it, plus a per-message jitter of up to 5 %. The
  draw is a hash of the seed and the pair, so it is the same in both directions and in every run.
- Bandwidth: every node's uplink has a rate drawn log-uniformly between `min_uplink` and
  `max_uplink` bytes/s; copies of messages leave one after another, so a node that sends a block
  to eight neighbours delivers the last copy eight serialisation times after the first.
- Topology: `mesh_topology` connects each node to about `degree` others (a ring, so the graph is
  connected, plus random chords), as a gossip mesh would, instead of all-to-all.

Everything here is testing code: floats and seeded randomness are fine (consensus code never sees them).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

_UNIT = 2**64


def _uniform(seed: int, *parts: str | bytes) -> float:
    """A number in (0, 1) from the seed and `parts` (the same inputs give the same number)."""
    h = hashlib.sha256(seed.to_bytes(8, "big", signed=True))
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return (int.from_bytes(h.digest()[:8], "big") + 0.5) / _UNIT


@dataclass
class LinkModel:
    """Per-pair latency and per-node uplink queues (see the module docstring)."""

    seed: int
    median_rtt_ms: float = 40.0
    rtt_sigma: float = 0.87
    min_rtt_ms: float = 2.0
    max_rtt_ms: float = 600.0
    jitter: float = 0.05
    min_uplink: int = 1_000_000  # bytes/s (8 Mbit/s)
    max_uplink: int = 12_500_000  # bytes/s (100 Mbit/s)
    _one_way: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    _uplink: dict[str, int] = field(default_factory=dict, repr=False)
    _uplink_free_at: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.min_rtt_ms <= self.median_rtt_ms <= self.max_rtt_ms):
            raise ValueError("need 0 < min_rtt_ms <= median_rtt_ms <= max_rtt_ms")
        if not (0 < self.min_uplink <= self.max_uplink) or self.rtt_sigma < 0 or not (0 <= self.jitter < 1):
            raise ValueError("need 0 < min_uplink <= max_uplink, rtt_sigma >= 0 and 0 <= jitter < 1")

    def rtt_ms(self, a: str, b: str) -> float:
        """The pair's round-trip time (symmetric)."""
        return 2 * self.one_way_s(a, b) * 1000

    def one_way_s(self, a: str, b: str) -> float:
        pair = (a, b) if a <= b else (b, a)
        cached = self._one_way.get(pair)
        if cached is None:
            z = NormalDist().inv_cdf(_uniform(self.seed, "rtt", *pair))
            rtt = min(
                self.max_rtt_ms, max(self.min_rtt_ms, self.median_rtt_ms * math.exp(self.rtt_sigma * z))
            )
            cached = self._one_way[pair] = rtt / 2000
        return cached

    def latency_s(self, src: str, dst: str, key: bytes) -> float:
        """One message's one-way delay: the pair's delay plus its own jitter."""
        base = self.one_way_s(src, dst)
        return base * (1 + self.jitter * _uniform(self.seed, "jitter", src, dst, key))

    def uplink(self, node: str) -> int:
        """The node's uplink rate in bytes/s."""
        rate = self._uplink.get(node)
        if rate is None:
            span = math.log(self.max_uplink / self.min_uplink)
            rate = self._uplink[node] = round(
                self.min_uplink * math.exp(span * _uniform(self.seed, "uplink", node))
            )
        return rate

    def depart(self, node: str, nbytes: int, now: float) -> float:
        """Queue `nbytes` on the node's uplink at `now`; the time its last byte has left."""
        start = max(now, self._uplink_free_at.get(node, 0.0))
        done = start + nbytes / self.uplink(node)
        self._uplink_free_at[node] = done
        return done


def mesh_topology(peer_ids: list[str], degree: int, seed: int) -> dict[str, frozenset[str]]:
    """Each node linked to its two ring neighbours plus random others, about `degree` links each
    on average (all-to-all when there are no more than `degree` + 1 nodes)."""
    if degree < 2:
        raise ValueError("degree must be at least 2")
    n = len(peer_ids)
    links: dict[str, set[str]] = {p: set() for p in peer_ids}
    if n <= degree + 1:
        return {p: frozenset(q for q in peer_ids if q != p) for p in peer_ids}
    for i, p in enumerate(peer_ids):
        q = peer_ids[(i + 1) % n]
        links[p].add(q)
        links[q].add(p)
    rng = random.Random(seed)
    chords_per_node = (degree - 2) // 2
    for p in peer_ids:
        for _ in range(chords_per_node):
            q = peer_ids[rng.randrange(n)]
            if q != p:
                links[p].add(q)
                links[q].add(p)
    return {p: frozenset(qs) for p, qs in links.items()}


class NetObserver(Protocol):
    def published(self, src: str, topic: str, msg_id: bytes, at: float, nbytes: int) -> None: ...
    def sent(self, src: str, topic: str, nbytes: int) -> None: ...
    def delivered(self, dst: str, topic: str, msg_id: bytes, at: float) -> None: ...


@dataclass
class GossipRecorder:
    """A `NetObserver` that keeps what the scale measurements need."""

    published_at: dict[bytes, float] = field(default_factory=dict)
    published_topic: dict[bytes, str] = field(default_factory=dict)
    first_delivery: dict[bytes, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    bytes_by_topic: Counter[str] = field(default_factory=Counter)
    messages_by_topic: Counter[str] = field(default_factory=Counter)

    def published(self, src: str, topic: str, msg_id: bytes, at: float, nbytes: int) -> None:
        if msg_id not in self.published_at:
            self.published_at[msg_id] = at
            self.published_topic[msg_id] = topic
            self.messages_by_topic[topic] += 1

    def sent(self, src: str, topic: str, nbytes: int) -> None:
        self.bytes_by_topic[topic] += nbytes

    def delivered(self, dst: str, topic: str, msg_id: bytes, at: float) -> None:
        self.first_delivery[msg_id].setdefault(dst, at)

    def delays_s(self, topic_suffix: str) -> list[float]:
        """Publication → first delivery, for every (message, receiving node) on matching topics."""
        out: list[float] = []
        for msg_id, topic in self.published_topic.items():
            if topic.endswith(topic_suffix):
                start = self.published_at[msg_id]
                out.extend(at - start for at in self.first_delivery.get(msg_id, {}).values())
        return out
