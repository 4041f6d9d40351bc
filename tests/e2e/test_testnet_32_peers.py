"""32 peer processes on one machine (issue 14 item 4): `testnet up -n 32` starts them, they connect
and finalize with the default 1 s slots, and no peer bans another for timeouts caused by the
machine's own overload.

Slow (minutes on two cores, and it needs most of the machine): `-m slow`. The short versions in
the default run are the overload tests in `tests/net/test_net_overload.py` and the direct vote
delivery on the simulator (`tests/adversarial/test_vote_delivery.py`), which is what made 1 s slots
fit: votes no longer cost every node a gossip copy each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from p2pnode.testing.live_peer import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PEERS = 32
SLOT_MS = 1000


def _p2pnode(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pnode", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (a local peer's API)
        return json.loads(response.read())


def test_thirty_two_peers_start_connect_and_finalize(tmp_path: Path) -> None:
    run_dir = tmp_path / "net32"
    up = _p2pnode("testnet", "up", "-n", str(PEERS), "--no-market", "--dir", str(run_dir),
                  "--slot-ms", str(SLOT_MS), "--timeout", "600", "--json", timeout=720)
    try:
        assert up.returncode == 0, f"testnet up failed: {up.stderr[-2000:]}"
        rows = json.loads(up.stdout)
        assert len(rows) == PEERS
        assert all(r["running"] and r["peers"] and r["finalized_height"] for r in rows), rows
        # Every peer agrees on what it finalized at its height (no split).
        roots: dict[int, set[str]] = {}
        for r in rows:
            roots.setdefault(r["finalized_height"], set()).add(r["finalized_hash"])
        assert all(len(hashes) == 1 for hashes in roots.values()), roots
        bans = sum(log.read_text(errors="replace").count("banning peer") for log in run_dir.glob("node-*/log.txt"))
        assert bans == 0, f"{bans} bans logged among honest peers"
        # And it keeps finalizing: every peer's finality moves 8 blocks past the best seen at `up`.
        target = max(r["finalized_height"] for r in rows) + 8

        def all_past_target() -> bool:
            status = _p2pnode("testnet", "status", "--dir", str(run_dir), "--json", timeout=120)
            return status.returncode == 0 and all(r["finalized_height"] >= target for r in json.loads(status.stdout))

        wait_until(all_past_target, 180, f"every peer finalized height {target}", interval=5)
        # The votes went to the proposers by request: few needed gossip (a proposer unreachable or
        # refusing, mostly while the 32 processes started).
        statuses = [_get_json(r["api"] + "/status") for r in rows]
        cast = sum(s["votes_cast"] for s in statuses)
        gossiped = sum(s["votes_gossiped"] for s in statuses)
        assert cast >= PEERS and gossiped * 4 <= cast, (gossiped, cast)
    finally:
        _p2pnode("testnet", "down", "--dir", str(run_dir), timeout=120)
