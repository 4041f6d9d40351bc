"""Checkpoint sync between peer processes over libp2p: a fresh `p2pnode join --checkpoint-sync` on a
chain whose genesis funds many accounts, timed from its process start to following the head.

A validator process (1 s slots, 8-slot epochs) runs a genesis with --accounts extra funded accounts
and the state root pinned in the file; once it has finalized a checkpoint above genesis, a fresh
peer starts with --checkpoint-sync. Reported: from the joiner's process start to its head reaching
the validator's head as it was when the joiner started (following), and from its log: its first
line (imports done), the genesis line (pinned root), the join's end, and the join's own time. `--no-pin` leaves the root out, so the joiner hashes the whole genesis.

    .venv/bin/python benchmarks/bench_checkpoint_process.py [--accounts 100000] [--repeat 1] [--no-pin]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2pnode.chain.address import encode_address  # noqa: E402
from p2pnode.chain.genesis import build_genesis_state  # noqa: E402
from p2pnode.chain.params import TAO  # noqa: E402
from p2pnode.cli.client import ApiError, get_json  # noqa: E402
from p2pnode.cli.testnet import make_genesis  # noqa: E402
from p2pnode.genesis_file import genesis_from_json  # noqa: E402
from p2pnode.testing.live_peer import spawn_peer, stop_processes, wait_until  # noqa: E402


def status(api: str) -> dict[str, Any] | None:
    try:
        return get_json(api, "/status", timeout=5.0)  # type: ignore[no-any-return]
    except ApiError:
        return None


def start(tmp: Path, name: str, args: list[str]) -> tuple[subprocess.Popen[str], Path, Path]:
    return spawn_peer(tmp, name, args, {"P2PNODE_KDF": "fast"})


def one_run(accounts: int, pin: bool, tmp: Path) -> dict[str, Any]:
    genesis = make_genesis(1, market=False, slot_ms=1000)
    genesis["params"]["epoch_slots"] = 8
    for i in range(1, accounts + 1):
        genesis["balances"][encode_address(i.to_bytes(4, "big") * 8)] = TAO
    if pin:
        genesis["state_root"] = build_genesis_state(genesis_from_json(genesis)[0])[2].state_root.hex()
    (tmp / "genesis.json").write_text(json.dumps(genesis))
    processes: list[subprocess.Popen[str]] = []
    try:
        validator, ready, _ = start(tmp, "validator", ["--dev-key", "validator-0-hot", "--validator"])
        processes.append(validator)
        wait_until(lambda: ready.exists() or validator.poll() is not None, 300, "the validator to start")
        info = json.loads(ready.read_text())
        api = info["api"]
        bootstrap = f"{info['listen_addrs'][0]}/p2p/{info['peer_id']}"
        wait_until(lambda: (s := status(api)) and (s["finalized_height"] or 0) >= 8, 300,
                   "the validator to finalize a checkpoint")
        started, wall_started = time.monotonic(), time.time()
        head_then = status(api)["head_height"]  # type: ignore[index]
        joiner, joiner_ready, log = start(tmp, "joiner", ["--dev-key", "checkpoint-joiner", "--checkpoint-sync",
                                                          "--bootstrap", bootstrap])
        processes.append(joiner)
        wait_until(lambda: joiner_ready.exists() or joiner.poll() is not None, 300, "the joiner to join")
        if not joiner_ready.exists():
            raise SystemExit(f"the joiner stopped: {log.read_text()[-3000:]}")
        joiner_api = json.loads(joiner_ready.read_text())["api"]
        ready_s = time.monotonic() - started
        wait_until(lambda: (s := status(joiner_api)) and s["head_height"] >= head_then, 300,
                   "the joiner to follow the head", interval=0.1)
        following_s = time.monotonic() - started
        joined = re.search(r"joined at checkpoint height (\d+) \((\d+) state items\) in ([\d.]+) s; "
                           r"validator-set walk: (\d+) steps", log.read_text())
        assert joined, log.read_text()[-3000:]
        # Where the time before the join went: the log's first line (imports done) and its genesis line.
        stamps = [(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp(), m[2])
                  for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$", log.read_text(), re.M)]
        first = stamps[0][0] - wall_started
        genesis_done = next((t for t, line in stamps if "genesis state root taken" in line), stamps[0][0]) - wall_started
        joined_at = next(t for t, line in stamps if "joined at checkpoint height" in line) - wall_started
        return {"following_s": following_s, "ready_s": ready_s, "first_log_s": first, "genesis_s": genesis_done,
                "joined_s": joined_at, "join_s": float(joined[3]),
                "checkpoint": int(joined[1]), "items": int(joined[2]), "walk_steps": int(joined[4]),
                "head_then": head_then}
    finally:
        stop_processes(processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="leave the state root out of the genesis file")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            runs.append(one_run(args.accounts, not args.no_pin, Path(directory)))
        print(runs[-1], flush=True)
    print(f"accounts {args.accounts} ({'pinned' if not args.no_pin else 'hashed'} genesis): median start -> "
          f"following {statistics.median(r['following_s'] for r in runs):.1f} s (join itself "
          f"{statistics.median(r['join_s'] for r in runs):.1f} s, {runs[0]['items']} items, "
          f"walk {runs[0]['walk_steps']} steps)")


if __name__ == "__main__":
    main()
