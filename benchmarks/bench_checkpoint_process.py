"""Checkpoint sync between peer processes over libp2p: a fresh `p2pnode join --checkpoint-sync` on a
chain whose genesis funds many accounts, timed from its process start to following the head.

A validator process (1 s slots, 8-slot epochs) runs a genesis with --accounts extra funded accounts
and the state root pinned in the file; once it has finalized a checkpoint above genesis, a fresh
peer starts with --checkpoint-sync. Reported: from the joiner's process start to its head reaching
the validator's head as it was when the joiner started (following), and from its log: its first
line (imports done), the genesis line (pinned root), the join's end, and the join's own time. `--no-pin` leaves the root out, so the joiner hashes the whole genesis.

`--blocks N`: the validator runs on a chain of N blocks made beforehand (`p2pnode.testing.bigchain`,
cached under /tmp, minutes to make once), both processes' clocks put just past its last slot.
Reported besides: the validator's start on that data directory (process start to ready, and to its
first new block), and after following, the joiner's history backfill of the N blocks below its
checkpoint: how long until it reaches block 1, the joiner's and the validator's CPU meanwhile, and
how far the joiner's head fell behind the validator's while it ran, once it had caught up with the
validator's current head (sampled every 0.25 s; that time is reported too), and both
processes' peak resident memory.

    .venv/bin/python benchmarks/bench_checkpoint_process.py [--accounts 100000] [--blocks 100000] [--repeat 1] [--no-pin]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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
from p2pnode.peer import CLOCK_OFFSET_ENV  # noqa: E402
from p2pnode.testing.bigchain import ChainSpec, MadeChain, cached_chain  # noqa: E402
from p2pnode.testing.live_peer import spawn_peer, stop_processes, wait_until  # noqa: E402


def status(api: str) -> dict[str, Any] | None:
    try:
        return get_json(api, "/status", timeout=5.0)  # type: ignore[no-any-return]
    except ApiError:
        return None


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def one_run(accounts: int, pin: bool, tmp: Path, made: MadeChain | None = None) -> dict[str, Any]:
    env = {"P2PNODE_KDF": "fast"}
    out: dict[str, Any] = {}
    if made is None:
        genesis = make_genesis(1, market=False, slot_ms=1000)
        genesis["params"]["epoch_slots"] = 8
        for i in range(1, accounts + 1):
            genesis["balances"][encode_address(i.to_bytes(4, "big") * 8)] = TAO
        if pin:
            genesis["state_root"] = build_genesis_state(genesis_from_json(genesis)[0])[2].state_root.hex()
        (tmp / "genesis.json").write_text(json.dumps(genesis))
    else:
        shutil.copyfile(made.genesis_file, tmp / "genesis.json")
        made.copy_data_dir(tmp / "validator")
        env[CLOCK_OFFSET_ENV] = str(made.clock_offset_ms())
    processes: list[subprocess.Popen[str]] = []
    try:
        validator_started = time.monotonic()
        validator, ready, _ = spawn_peer(tmp, "validator", ["--dev-key", "validator-0-hot", "--validator"], env)
        processes.append(validator)
        wait_until(lambda: ready.exists() or validator.poll() is not None, 300, "the validator to start")
        info = json.loads(ready.read_text())
        api = info["api"]
        bootstrap = f"{info['listen_addrs'][0]}/p2p/{info['peer_id']}"
        if made is not None:
            out["validator_ready_s"] = time.monotonic() - validator_started
            wait_until(lambda: (s := status(api)) and s["head_height"] > made.head_height, 300,
                       "the validator's first block on the made chain", interval=0.1)
            out["validator_first_block_s"] = time.monotonic() - validator_started
        wait_until(lambda: (s := status(api)) and (s["finalized_height"] or 0) >= 8, 300,
                   "the validator to finalize a checkpoint")
        started, wall_started = time.monotonic(), time.time()
        head_then = status(api)["head_height"]  # type: ignore[index]
        joiner, joiner_ready, log = spawn_peer(tmp, "joiner", ["--dev-key", "checkpoint-joiner", "--checkpoint-sync",
                                                               "--bootstrap", bootstrap], env)
        processes.append(joiner)
        wait_until(lambda: joiner_ready.exists() or joiner.poll() is not None, 300, "the joiner to join")
        if not joiner_ready.exists():
            raise SystemExit(f"the joiner stopped: {log.read_text()[-3000:]}")
        joiner_api = json.loads(joiner_ready.read_text())["api"]
        ready_s = time.monotonic() - started
        wait_until(lambda: (s := status(joiner_api)) and s["head_height"] >= head_then, 300,
                   "the joiner to follow the head", interval=0.1)
        following_s = time.monotonic() - started
        following_cpu_s = cpu_s(joiner.pid)  # load-independent: the joiner's own CPU to get there
        joined = re.search(r"joined at checkpoint height (\d+) \((\d+) state items\) in ([\d.]+) s; "
                           r"validator-set walk: (\d+) steps", log.read_text())
        assert joined, log.read_text()[-3000:]
        # Where the time before the join went: the log's first line (imports done) and its genesis line.
        stamps = [(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp(), m[2])
                  for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$", log.read_text(), re.M)]
        first = stamps[0][0] - wall_started
        genesis_done = next((t for t, line in stamps if "genesis state root taken" in line), stamps[0][0]) - wall_started
        joined_at = next(t for t, line in stamps if "joined at checkpoint height" in line) - wall_started
        if made is not None:
            out.update(backfill(api, joiner_api, joiner.pid, validator.pid, log, started))
        return {**out, "following_s": following_s, "following_cpu_s": following_cpu_s, "ready_s": ready_s, "first_log_s": first, "genesis_s": genesis_done,
                "joined_s": joined_at, "join_s": float(joined[3]),
                "checkpoint": int(joined[1]), "items": int(joined[2]), "walk_steps": int(joined[4]),
                "head_then": head_then}
    finally:
        stop_processes(processes)


def backfill(api: str, joiner_api: str, joiner_pid: int, validator_pid: int, log: Path,
             started: float) -> dict[str, Any]:
    """Wait for the joiner's head to reach the validator's current head (within a block: caught
    up; the head of its start, `following`, is behind by then), then for its history backfill to
    reach block 1, sampling how far its head is behind the validator's meanwhile; the backfill's
    time and the two processes' CPU over it."""
    joiner_cpu, validator_cpu, since = cpu_s(joiner_pid), cpu_s(validator_pid), time.monotonic()
    lags: list[int] = []
    caught_up: float | None = None
    deadline = since + 1800
    while caught_up is None or "history backfill complete" not in log.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"the backfill did not finish: {log.read_text()[-3000:]}")
        ours, theirs = status(joiner_api), status(api)
        if ours and theirs:
            lag = theirs["head_height"] - ours["head_height"]
            if caught_up is None and lag <= 1:
                caught_up = time.monotonic()
            elif caught_up is not None:
                lags.append(lag)
        time.sleep(0.25)
    done = time.monotonic()
    complete = re.search(r"history backfill complete: (\d+) blocks", log.read_text())
    assert complete, log.read_text()[-3000:]
    return {"caught_up_s": caught_up - started, "backfill_s": done - started, "backfill_after_following_s": done - since,
            "backfill_blocks": int(complete[1]), "backfill_joiner_cpu_s": cpu_s(joiner_pid) - joiner_cpu,
            "backfill_validator_cpu_s": cpu_s(validator_pid) - validator_cpu,
            "lag_max_blocks": max(lags, default=0), "lag_samples": len(lags),
            "joiner_peak_rss_mb": peak_rss_mb(joiner_pid), "validator_peak_rss_mb": peak_rss_mb(validator_pid),
            "lag_over_1_share": sum(lag > 1 for lag in lags) / max(1, len(lags))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=0, help="run the validator on a made chain of this many blocks")
    parser.add_argument("--remake", action="store_true", help="make the chain of --blocks again (not from the cache)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="leave the state root out of the genesis file")
    args = parser.parse_args()
    made = None
    if args.blocks:
        made = cached_chain(ChainSpec(blocks=args.blocks, accounts=args.accounts), remake=args.remake,
                            progress=lambda slot: print(f"making the chain: {slot} blocks", flush=True))
        print(f"chain of {made.head_height} blocks (finalized {made.finalized_height}) in {made.path}, "
              f"made in {made.seconds:.0f} s", flush=True)
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            runs.append(one_run(args.accounts, not args.no_pin, Path(directory), made))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in runs[-1].items()}, flush=True)
    print(f"accounts {args.accounts} ({'pinned' if not args.no_pin else 'hashed'} genesis): median start -> "
          f"following {statistics.median(r['following_s'] for r in runs):.1f} s, "
          f"{statistics.median(r['following_cpu_s'] for r in runs):.1f} s of the joiner's CPU (join itself "
          f"{statistics.median(r['join_s'] for r in runs):.1f} s, {runs[0]['items']} items, "
          f"walk {runs[0]['walk_steps']} steps)")
    if made is not None:
        def median(key: str) -> float:
            return statistics.median(r[key] for r in runs)

        print(f"chain of {made.head_height} blocks: joiner start -> caught up with the validator's current head "
              f"{median('caught_up_s'):.1f} s; validator start {median('validator_ready_s'):.1f} s to ready, "
              f"{median('validator_first_block_s'):.1f} s to its first block; backfill of "
              f"{runs[0]['backfill_blocks']} blocks done {median('backfill_s'):.1f} s after the joiner's start, "
              f"joiner CPU {median('backfill_joiner_cpu_s'):.1f} s, validator CPU "
              f"{median('backfill_validator_cpu_s'):.1f} s meanwhile; joiner head behind the validator's "
              f"by at most {max(r['lag_max_blocks'] for r in runs)} blocks once caught up, more than 1 in "
              f"{100 * median('lag_over_1_share'):.1f}% of samples; peak memory joiner "
              f"{median('joiner_peak_rss_mb'):.0f} MB, validator {median('validator_peak_rss_mb'):.0f} MB")


if __name__ == "__main__":
    main()
