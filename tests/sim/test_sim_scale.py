"""The simulator at scale: link model (latency, bandwidth), gossip mesh, relay followers."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from p2pnode.testing.netmodel import LinkModel, mesh_topology
from p2pnode.testing.simscale import percentile, run_gossip_only, run_scale


def test_link_model_is_deterministic_for_a_seed_and_internet_like() -> None:
    pairs = [(f"node-{i:02d}", f"node-{j:02d}") for i in range(40) for j in range(i + 1, 40)]
    a, b, other = LinkModel(seed=7), LinkModel(seed=7), LinkModel(seed=8)
    rtts = [a.rtt_ms(x, y) for x, y in pairs]
    assert rtts == [b.rtt_ms(x, y) for x, y in pairs]
    assert rtts == [b.rtt_ms(y, x) for x, y in pairs]  # symmetric
    assert rtts != [other.rtt_ms(x, y) for x, y in pairs]
    assert a.latency_s("node-01", "node-02", b"m") == b.latency_s("node-01", "node-02", b"m")
    assert [a.uplink(x) for x, _ in pairs[:50]] == [b.uplink(x) for x, _ in pairs[:50]]
    # Log-normal with median 40 ms RTT and a tail: 780 pairs.
    assert 32 <= percentile(rtts, 0.5) <= 48
    assert 150 <= percentile(rtts, 0.99) <= 600
    assert min(rtts) >= 2 and max(rtts) <= 600
    assert all(1_000_000 <= a.uplink(x) <= 12_500_000 for x, _ in pairs)


def test_uplink_queues_copies_one_after_another() -> None:
    links = LinkModel(seed=1, min_uplink=1_000_000, max_uplink=1_000_000)
    first = links.depart("node-00", 500_000, now=10.0)
    second = links.depart("node-00", 500_000, now=10.0)
    assert first == pytest.approx(10.5)
    assert second == pytest.approx(11.0)  # waited for the first copy to leave
    assert links.depart("node-01", 1_000, now=10.0) == pytest.approx(10.001)  # another node's uplink is free
    assert links.depart("node-00", 1_000, now=20.0) == pytest.approx(20.001)  # idle uplink: no queue


def test_mesh_topology_is_symmetric_connected_and_sparse() -> None:
    peers = [f"node-{i:03d}" for i in range(300)]
    mesh = mesh_topology(peers, 8, seed=3)
    assert mesh == mesh_topology(peers, 8, seed=3)
    assert all(p in mesh[q] for p in peers for q in mesh[p])
    assert all(p not in mesh[p] for p in peers)
    assert 7 <= sum(len(v) for v in mesh.values()) / len(peers) <= 8
    seen, todo = {peers[0]}, deque([peers[0]])
    while todo:
        for q in mesh[todo.popleft()]:
            if q not in seen:
                seen.add(q)
                todo.append(q)
    assert len(seen) == len(peers)


def test_64_nodes_on_the_link_model_finalize(tmp_path: Path) -> None:
    result = run_scale(tmp_path, nodes=64, validators=16, slots=26, seed=5)
    assert result.slots == 26
    assert result.finalized_height >= 8  # the first epoch's checkpoint, at least
    assert result.agree and result.reached_all
    assert result.blocks >= 24  # nearly every slot has its block
    # Propagation over a degree-8 mesh of 40 ms median RTTs: a few hops, well inside a slot.
    assert 10 < result.block_p50_ms < result.block_p95_ms < 500
    assert result.bytes_per_node_per_block > 0


def test_a_scale_run_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    rows = [
        run_scale(tmp_path / str(k), nodes=24, validators=4, full_followers=2, slots=6, seed=9).row()
        for k in range(2)
    ]
    for row in rows:
        row.pop("wall_s")
        row.pop("cpu_s")
    assert repr(rows[0]) == repr(rows[1])  # repr: an unfinalized run's delay is NaN, never equal to itself
    assert rows[0]["blocks"] >= 5


def test_uplinks_limit_how_fast_a_large_block_spreads() -> None:
    small = run_gossip_only(64, 1024, seed=2)
    large = run_gossip_only(64, 1 << 20, seed=2)
    assert small.reached == large.reached == 63
    assert small.p95_ms < 200
    # 1 MiB over 1-12.5 MB/s uplinks, several copies per hop: seconds, not milliseconds.
    assert large.p95_ms > 5 * small.p95_ms and large.p95_ms > 1000
    assert large.bytes_per_node == pytest.approx(small.bytes_per_node * 1024, rel=0.01)
