"""Peer scores: graded penalties, decay, bans and the small-network mode, on a hand-driven clock."""

from __future__ import annotations

import pytest

from p2pnode.net.scoring import DEFAULT_PENALTIES, PeerScorer, ScoringConfig

pytestmark = pytest.mark.timeout(10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def scorer(network_size: int = 50, **overrides: object) -> tuple[PeerScorer, FakeClock]:
    clock = FakeClock()
    result = PeerScorer(ScoringConfig(**overrides), clock)  # type: ignore[arg-type]
    result.set_network_size(network_size)
    return result, clock


def test_penalties_are_graded_by_reason() -> None:
    s, _ = scorer()
    s.penalise("invalid", "invalid_message")
    s.penalise("slow", "timeout")
    s.penalise("violator", "protocol_violation")
    assert s.score("invalid") == -DEFAULT_PENALTIES["invalid_message"].amount
    assert s.score("slow") == -DEFAULT_PENALTIES["timeout"].amount
    assert s.score("violator") < s.score("invalid") < s.score("slow") < 0
    assert s.score("stranger") == 0.0


def test_explicit_amount_overrides_the_default_and_unknown_reasons_are_faults() -> None:
    s, _ = scorer()
    s.penalise("p", "bad_block", 42.0)
    assert s.score("p") == -42.0
    assert s.view("p").fault_points == 42.0
    with pytest.raises(ValueError):
        s.penalise("p", "bad_block", -1.0)
    with pytest.raises(ValueError):
        s.penalise("p", "bad_block", float("nan"))


def test_points_halve_every_half_life() -> None:
    s, clock = scorer(half_life_s=100.0)
    s.penalise("p", "bad_response", 40.0)
    clock.advance(100.0)
    assert s.score("p") == pytest.approx(-20.0)
    clock.advance(200.0)
    assert s.score("p") == pytest.approx(-5.0)


def test_ban_at_threshold_then_expiry_then_longer_second_ban() -> None:
    s, clock = scorer(ban_threshold=100.0, ban_duration_s=600.0)
    results = [s.penalise("rogue", "invalid_message") for _ in range(5)]  # 5 x 20 points
    assert results == [False, False, False, False, True]
    assert s.is_banned("rogue")
    assert s.banned_peers() == ["rogue"]
    # While banned, further penalties neither count nor re-ban.
    assert s.penalise("rogue", "invalid_message") is False
    clock.advance(599.0)
    assert s.is_banned("rogue") and s.expire_bans() == []
    clock.advance(2.0)
    assert not s.is_banned("rogue")
    assert s.expire_bans() == ["rogue"]
    # A repeat offender is banned twice as long.
    for _ in range(5):
        s.penalise("rogue", "invalid_message")
    assert s.view("rogue").banned_until == pytest.approx(clock.now + 1200.0)
    assert s.view("rogue").ban_count == 2


def test_ban_duration_is_capped() -> None:
    s, clock = scorer(ban_duration_s=600.0, max_ban_duration_s=1000.0)
    for _ in range(3):
        s.penalise("rogue", "x", 100.0)
        clock.advance(2000.0)
        s.expire_bans()
    s.penalise("rogue", "x", 100.0)
    assert s.view("rogue").banned_until == pytest.approx(clock.now + 1000.0)


def test_small_network_never_bans_a_peer_that_only_times_out() -> None:
    s, clock = scorer(network_size=4)
    assert s.small_network
    for _ in range(1000):
        assert s.penalise("slow-but-honest", "timeout") is False
        clock.advance(0.1)
    assert not s.is_banned("slow-but-honest")
    # Capped at half the ban threshold: still visibly worse than a clean peer.
    assert s.score("slow-but-honest") == pytest.approx(-50.0, abs=1.0)
    # Faults still count on top, so a slow peer that also cheats is banned.
    assert s.penalise("slow-but-honest", "protocol_violation", 60.0) is True


def test_large_network_does_ban_a_peer_that_keeps_timing_out() -> None:
    s, _ = scorer(network_size=100)
    assert not s.small_network
    banned = [s.penalise("slow", "timeout") for _ in range(20)]
    assert banned[-1] is True and s.is_banned("slow")


def test_prune_forgets_clean_peers_but_remembers_recent_bans() -> None:
    s, clock = scorer(half_life_s=10.0, ban_memory_s=1000.0)
    s.penalise("once", "timeout")
    s.penalise("rogue", "x", 100.0)
    clock.advance(700.0)
    s.expire_bans()
    s.prune()
    assert s.tracked_peers() == 1  # "once" decayed away; "rogue" has a recent ban
    clock.advance(400.0)
    s.prune()
    assert s.tracked_peers() == 0


def test_tracked_peers_are_bounded() -> None:
    s, _ = scorer(max_tracked_peers=10)
    s.penalise("worst", "x", 90.0)
    for i in range(50):
        s.penalise(f"peer{i}", "timeout")
    assert s.tracked_peers() <= 10
    assert s.score("worst") == -90.0  # the cleanest peers were evicted, not the worst
