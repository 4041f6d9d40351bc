"""Application-level peer scores: graded penalties, exponential decay, temporary bans.

Pure logic: no I/O, no trio, no libp2p. Time comes from an injected clock (seconds, monotonic) so
the tests drive it by hand. The host (`p2pnode.net.host`) feeds penalties in and acts on bans
(disconnect, blacklist); this module only keeps the books.

Model:

- A peer accumulates *penalty points*; `score(peer)` is their negation (0 is neutral, lower is
  worse), like GossipSub scores.
- Points halve every `half_life_s` (exponential decay), so an honest peer that misbehaved once
  recovers by itself.
- Each reason has a default amount and a kind. *Faults* are proof of misbehaviour (an invalid
  gossip message, a malformed response). *Soft* penalties are what an honest but slow or unlucky
  peer also collects (timeouts, failed dials).
- When points reach `ban_threshold` the peer is banned for `ban_duration_s`, doubled for each
  earlier ban (capped at `max_ban_duration_s`), and its points reset.
- Small-network mode: while the node sees at most `small_network_max_peers` peers, soft points
  are capped below the ban threshold, so a slow but honest peer is never banned for timeouts
  alone: in a network of five, losing one slow peer costs more than tolerating it.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class PenaltyKind(enum.Enum):
    FAULT = "fault"  # proof of misbehaviour: counts fully everywhere
    SOFT = "soft"  # could be bad luck or a slow link: capped in small networks


@dataclass(frozen=True, slots=True)
class Penalty:
    amount: float
    kind: PenaltyKind


# Reasons the network layer uses itself, with their default weight. Applications may pass any
# other reason with an explicit amount; unknown reasons count as faults.
DEFAULT_PENALTIES: Mapping[str, Penalty] = {
    "invalid_message": Penalty(20.0, PenaltyKind.FAULT),  # gossip validator said REJECT
    "oversized_message": Penalty(25.0, PenaltyKind.FAULT),  # gossip payload over the topic limit
    "bad_response": Penalty(10.0, PenaltyKind.FAULT),  # a reply that failed the caller's checks
    "bad_request": Penalty(10.0, PenaltyKind.FAULT),  # oversized or malformed request
    "protocol_violation": Penalty(25.0, PenaltyKind.FAULT),  # broken framing, oversized frame
    "timeout": Penalty(5.0, PenaltyKind.SOFT),  # request not answered in time
    "unreachable": Penalty(2.0, PenaltyKind.SOFT),  # could not open a stream
    "rate_limited": Penalty(1.0, PenaltyKind.SOFT),  # over our inbound concurrency limit
}


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Parameters of the peer score; the defaults are what `docs/networking.md` documents."""

    penalties: Mapping[str, Penalty] = field(default_factory=lambda: dict(DEFAULT_PENALTIES))
    ban_threshold: float = 100.0
    half_life_s: float = 300.0
    ban_duration_s: float = 600.0
    max_ban_duration_s: float = 86_400.0
    # A node that sees this many peers or fewer is in small-network mode.
    small_network_max_peers: int = 16
    # In small-network mode soft points stop at this fraction of the ban threshold.
    small_network_soft_cap: float = 0.5
    # Peers whose points decayed below this (and with no recent ban) are forgotten.
    forget_below: float = 0.5
    # How long a past ban still doubles the next one.
    ban_memory_s: float = 86_400.0
    max_tracked_peers: int = 10_000

    def __post_init__(self) -> None:
        if not self.ban_threshold > 0:
            raise ValueError("ban_threshold must be positive")
        if not self.half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        if not 0 <= self.small_network_soft_cap < 1:
            raise ValueError("small_network_soft_cap must be in [0, 1)")

    def penalty_for(self, reason: str, amount: float | None) -> Penalty:
        default = self.penalties.get(reason, Penalty(0.0, PenaltyKind.FAULT))
        if amount is None:
            return default
        return Penalty(amount, default.kind)


@dataclass(slots=True)
class _PeerRecord:
    fault: float = 0.0
    soft: float = 0.0
    updated_at: float = 0.0
    banned_until: float | None = None
    ban_count: int = 0
    last_ban_at: float | None = None


@dataclass(frozen=True, slots=True)
class PeerScoreView:
    """A read-only snapshot of one peer's standing (for status APIs and tests)."""

    score: float
    fault_points: float
    soft_points: float
    banned_until: float | None
    ban_count: int


class PeerScorer:
    """Keeps every peer's decayed penalty points and bans; see the module docstring."""

    def __init__(self, config: ScoringConfig | None = None, clock: Callable[[], float] | None = None) -> None:
        self.config = config or ScoringConfig()
        self._clock = clock or time.monotonic
        self._peers: dict[str, _PeerRecord] = {}
        self.network_size = 0

    # -- feeding ---------------------------------------------------------------------------

    def set_network_size(self, peer_count: int) -> None:
        """Tell the scorer how many peers the node currently sees (selects small-network mode)."""
        self.network_size = peer_count

    @property
    def small_network(self) -> bool:
        return self.network_size <= self.config.small_network_max_peers

    def penalise(self, peer: str, reason: str, amount: float | None = None) -> bool:
        """Add a penalty; returns True when this penalty started a ban.

        `amount` None uses the reason's default from the config. A peer that is already banned
        gets no further points (the ban already covers it).
        """
        penalty = self.config.penalty_for(reason, amount)
        if not math.isfinite(penalty.amount) or penalty.amount < 0:
            raise ValueError(f"penalty amount must be a finite non-negative number, got {penalty.amount!r}")
        now = self._clock()
        record = self._record(peer, now)
        if record.banned_until is not None and record.banned_until > now:
            return False
        if penalty.kind is PenaltyKind.SOFT:
            record.soft += penalty.amount
        else:
            record.fault += penalty.amount
        if self._points(record) >= self.config.ban_threshold:
            self._ban(record, now)
            return True
        return False

    # -- reading ---------------------------------------------------------------------------

    def score(self, peer: str) -> float:
        """0 for a clean peer, negative for a penalised one; bans happen at -ban_threshold."""
        record = self._peers.get(peer)
        if record is None:
            return 0.0
        self._decay(record, self._clock())
        return -self._points(record)

    def is_banned(self, peer: str) -> bool:
        record = self._peers.get(peer)
        return record is not None and record.banned_until is not None and record.banned_until > self._clock()

    def banned_peers(self) -> list[str]:
        now = self._clock()
        return [p for p, r in self._peers.items() if r.banned_until is not None and r.banned_until > now]

    def view(self, peer: str) -> PeerScoreView:
        record = self._peers.get(peer)
        if record is None:
            return PeerScoreView(0.0, 0.0, 0.0, None, 0)
        now = self._clock()
        self._decay(record, now)
        banned_until = record.banned_until if record.banned_until and record.banned_until > now else None
        return PeerScoreView(-self._points(record), record.fault, record.soft, banned_until, record.ban_count)

    # -- housekeeping ----------------------------------------------------------------------

    def expire_bans(self) -> list[str]:
        """Lift bans whose time is up; returns the peers that may connect again."""
        now = self._clock()
        lifted = []
        for peer, record in self._peers.items():
            if record.banned_until is not None and record.banned_until <= now:
                record.banned_until = None
                record.updated_at = now
                lifted.append(peer)
        return lifted

    def prune(self) -> None:
        """Forget peers with (almost) no points, no ban and no recent ban history."""
        now = self._clock()
        for peer in [p for p, r in self._peers.items() if self._forgettable(r, now)]:
            del self._peers[peer]

    def tracked_peers(self) -> int:
        return len(self._peers)

    # -- internals -------------------------------------------------------------------------

    def _record(self, peer: str, now: float) -> _PeerRecord:
        record = self._peers.get(peer)
        if record is None:
            if len(self._peers) >= self.config.max_tracked_peers:
                self._make_room(now)
            record = _PeerRecord(updated_at=now)
            self._peers[peer] = record
        else:
            self._decay(record, now)
        return record

    def _make_room(self, now: float) -> None:
        # Memory is bounded even under a flood of fresh peer ids: forget the cleanest unbanned one.
        self.prune()
        if len(self._peers) < self.config.max_tracked_peers:
            return
        unbanned = [p for p, r in self._peers.items() if not (r.banned_until and r.banned_until > now)]
        if unbanned:
            for p in unbanned:
                self._decay(self._peers[p], now)
            del self._peers[min(unbanned, key=lambda p: self._points(self._peers[p]))]

    def _decay(self, record: _PeerRecord, now: float) -> None:
        elapsed = now - record.updated_at
        if elapsed > 0:
            factor = 0.5 ** (elapsed / self.config.half_life_s)
            record.fault *= factor
            record.soft *= factor
            record.updated_at = now

    def _points(self, record: _PeerRecord) -> float:
        soft = record.soft
        if self.small_network:
            soft = min(soft, self.config.small_network_soft_cap * self.config.ban_threshold)
        return record.fault + soft

    def _ban(self, record: _PeerRecord, now: float) -> None:
        recent_bans = record.ban_count
        if record.last_ban_at is not None and now - record.last_ban_at > self.config.ban_memory_s:
            recent_bans = 0
        duration = min(self.config.ban_duration_s * 2**recent_bans, self.config.max_ban_duration_s)
        record.banned_until = now + duration
        record.ban_count = recent_bans + 1
        record.last_ban_at = now
        record.fault = 0.0
        record.soft = 0.0

    def _forgettable(self, record: _PeerRecord, now: float) -> bool:
        if record.banned_until is not None:
            return False
        if record.last_ban_at is not None and now - record.last_ban_at <= self.config.ban_memory_s:
            return False
        self._decay(record, now)
        return record.fault + record.soft < self.config.forget_below
