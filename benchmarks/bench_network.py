"""Whole-peer network benchmarks on loopback: block propagation, join time, memory, CPU, tx throughput.

Runs real `p2pnode testnet` networks (no market) of 4, 8 and 16 peer processes.
Run: .venv/bin/python benchmarks/bench_network.py [--sizes 4,8,16] [--window 30]
Writes docs/benchmarks-network.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from report import publish

from p2pnode.chain.types import Transfer
from p2pnode.cli.client import ApiError, get_json, post_txs
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import signed
from protocols import codec

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


# Extra environment for the peers (`--profile-dir` sets P2PNODE_PROFILE).
PEER_ENV: dict[str, str] = {"P2PNODE_RECORD_ARRIVALS": "1"}


def cli(*args: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "p2pnode", *args], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **PEER_ENV))
    return json.loads(out.stdout) if "--json" in args else out.stdout


def ban_count(run_dir: Path) -> int:
    """Bans the peers logged (each `banning peer` warning), summed over every peer's log."""
    return sum(log.read_text(errors="replace").count("banning peer") for log in run_dir.glob("node-*/log.txt"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_network(n: int, window: float, with_tx: bool = True, with_join: bool = True,
                    tx_load: tuple[int, int] = (32, 240), profile: bool = False, slot_ms: int = 1000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        start = time.monotonic()
        load_before = os.getloadavg()[0]
        try:
            rows = cli("testnet", "up", "-n", str(n), "--no-market", "--dir", str(run_dir), "--timeout", "400",
                       "--slot-ms", str(slot_ms), "--json")
        except subprocess.CalledProcessError as exc:  # `up` stopped its peers; say why it failed
            return {"n": n, "slot_ms": slot_ms, "up_failed": exc.stderr.strip()[-400:], "up_s": time.monotonic() - start,
                    "bans": ban_count(run_dir), "load": load_before}
        up_s = time.monotonic() - start
        try:
            pids = [r["pid"] for r in rows]
            apis = [r["api"] for r in rows]
            bans_at_up = ban_count(run_dir)
            finalized0 = get_json(apis[0], "/status")["finalized_height"]
            profiled = pids[n // 2] if profile else None
            if profiled:
                os.kill(profiled, signal.SIGUSR1)  # starts its profile (P2PNODE_PROFILE)
            cpu0 = [cpu_seconds(p) for p in pids]
            t0 = time.monotonic()
            time.sleep(window)  # the measurement window itself
            elapsed = time.monotonic() - t0
            load = os.getloadavg()[0]
            if profiled:
                os.kill(profiled, signal.SIGUSR1)  # stops it and writes the .prof file
            cpu = [(cpu_seconds(p) - c) / elapsed * 100 for p, c in zip(pids, cpu0, strict=True)]
            rss = [rss_mb(p) for p in pids]
            arrivals: dict[str, list[int]] = {}
            for url in apis:
                for _height, block_hash, ms in get_json(url, "/arrivals"):
                    arrivals.setdefault(block_hash, []).append(ms)
            delays = []
            for times in arrivals.values():
                if len(times) == n:
                    first = min(times)
                    delays += [t - first for t in times if t != first]
            result = {
                "n": n, "slot_ms": slot_ms, "up_s": up_s, "blocks": sum(1 for t in arrivals.values() if len(t) == n),
                "prop_p50": percentile(delays, 0.5) if delays else None,
                "prop_p95": percentile(delays, 0.95) if delays else None,
                "cpu_median": statistics.median(cpu), "rss_median": statistics.median(rss), "rss_max": max(rss),
                "load": load, "bans_at_up": bans_at_up, "bans": ban_count(run_dir) - bans_at_up,
                "finalized_in_window": get_json(apis[0], "/status")["finalized_height"] - finalized0,
                "window_s": elapsed,
            }
            if n == 4 and with_tx:
                result["join_s"] = join_times(run_dir, apis[0]) if with_join else []
                busy0, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
                result.update(tx_throughput(apis, *tx_load))
                result["tx_cpu"] = [(cpu_seconds(p) - c) / (time.monotonic() - t0) * 100
                                    for p, c in zip(pids, busy0, strict=True)]
                result["heights"] = block_sizes(apis[0])
            return result
        finally:
            cli("testnet", "down", "--dir", str(run_dir))


def block_sizes(api: str, last: int = 60) -> list[int]:
    """Transactions per block over the last `last` blocks, oldest first."""
    head = get_json(api, "/status")["head_height"]
    return [len(get_json(api, f"/blocks/{h}").get("txs", [])) for h in range(max(1, head - last + 1), head + 1)]


def join_times(run_dir: Path, first_api: str, repeats: int = 3) -> list[float]:
    bootstrap = [a for a in get_json(first_api, "/status")["listen_addrs"] if "/tcp/" in a][0]
    times = []
    for i in range(repeats):
        ready = run_dir / f"join-{i}.json"
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "p2pnode", "join", "--network", str(run_dir / "genesis.json"), "--data-dir",
             str(run_dir / f"join-{i}"), "--dev-key", f"joiner-{i}", "--bootstrap", bootstrap, "--api-port", "0",
             "--listen", "/ip4/127.0.0.1/tcp/0",
             "--ready-file", str(ready), "--no-progress", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ready.exists():
                time.sleep(0.01)
            api = json.loads(ready.read_text())["api"]
            while get_json(api, "/status")["peers"] < 1:
                time.sleep(0.01)
            times.append(time.monotonic() - start)
        finally:
            process.terminate()
            process.wait()
    return times


def fund_senders(api: str, chain_id: str, count: int, amount: int) -> list[Any]:
    """`count` fresh accounts funded by user-0 in one POST /txs batch; returns once all are funded."""
    funder = dev_keypair("user-0")
    keys = [dev_keypair(f"bench-sender-{i}") for i in range(count)]
    first = get_json(api, f"/accounts/{funder.address}")["nonce"]
    for start in range(0, count, 48):  # within the funder's pending-transaction quota
        batch = [codec.encode(signed(funder, first + start + k, Transfer(to=key.public_key, amount=amount),
                                     chain_id=chain_id)) for k, key in enumerate(keys[start:start + 48])]
        answer = post_txs(api, batch)
        if answer["added"] != len(batch):
            raise RuntimeError(f"funding refused: {answer['results']}")
        while get_json(api, f"/accounts/{funder.address}")["nonce"] < first + start + len(batch):
            time.sleep(0.1)
    return keys


def tx_throughput(apis: list[str], senders_count: int = 32, per_sender: int = 240, window: int = 48) -> dict[str, Any]:
    """Transfers from `senders_count` funded accounts, each keeping at most `window` in flight (the
    mempool admits 64 per sender), submitted in POST /txs batches so that the submitter is not the
    bottleneck; time from the first submission until all are included and finalized."""
    chain_id = get_json(apis[0], "/status")["chain_id"]
    senders = fund_senders(apis[0], chain_id, senders_count, 10 * per_sender * 10_000)
    sink = dev_keypair("sink")
    refused = [0]
    requests = [0]

    def run_sender(index: int, key: Any) -> None:
        url = apis[index % len(apis)]
        first = get_json(url, f"/accounts/{key.address}")["nonce"]
        txs = [codec.encode(signed(key, first + k, Transfer(to=sink.public_key, amount=1), chain_id=chain_id))
               for k in range(per_sender)]
        sent = attempts = 0
        while sent < per_sender:
            done = get_json(url, f"/accounts/{key.address}")["nonce"] - first
            batch = txs[sent:min(per_sender, done + window)]
            if batch:
                try:
                    results = post_txs(url, batch)["results"]
                except ApiError:
                    results = []
                requests[0] += 1
                # Accepted up to the first refusal: a refused tx would leave a nonce gap, so resend from it.
                accepted = next((i for i, r in enumerate(results) if not r["added"] and r["reason"] != "duplicate"),
                                len(results))
                sent += accepted
                attempts = 0 if accepted else attempts + 1
                if attempts >= 5:
                    refused[0] += 1
                    sent, attempts = sent + 1, 0
            time.sleep(0.5)  # polling for inclusion (blocks come once a second): each poll costs the peer CPU

    start = time.monotonic()
    threads = [threading.Thread(target=run_sender, args=(i, key)) for i, key in enumerate(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitted_s = time.monotonic() - start
    total = len(senders) * per_sender
    deadline = start + 600
    included_s = finalized_s = None
    included_height = 0
    while time.monotonic() < deadline:
        status = get_json(apis[1], "/status")
        received = get_json(apis[1], f"/accounts/{sink.address}")["balance"]
        if included_s is None and received >= total - refused[0]:
            included_s, included_height = time.monotonic() - start, status["head_height"]
        if included_s is not None and (status["finalized_height"] or 0) >= included_height:
            finalized_s = time.monotonic() - start
            break
        time.sleep(0.05)
    return {"txs": total, "senders": len(senders), "requests": requests[0], "refused": refused[0], "submit_s": submitted_s, "included_s": included_s,
            "finalized_s": finalized_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4,8,16")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--no-tx", action="store_true", help="skip the join-time and transaction measurements")
    parser.add_argument("--no-join", action="store_true", help="skip the join-time measurement")
    parser.add_argument("--tx-senders", type=int, default=32, help="funded accounts sending transfers")
    parser.add_argument("--tx-per-sender", type=int, default=240)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-network.md")
    parser.add_argument("--slot-ms", type=int, default=1000, help="slot length of the networks (testnet up --slot-ms)")
    parser.add_argument("--results", type=Path, help="also append each size's figures to this JSON-lines file")
    parser.add_argument("--profile-dir", type=Path,
                        help="cProfile the middle peer over the window into this directory (P2PNODE_PROFILE)")
    args = parser.parse_args()
    tx_load = (args.tx_senders, args.tx_per_sender)
    if args.profile_dir:
        PEER_ENV["P2PNODE_PROFILE"] = str(args.profile_dir.resolve())
    results = []
    for n in args.sizes.split(","):
        result = measure_network(int(n), args.window, not args.no_tx, not args.no_join, tx_load,
                                 profile=args.profile_dir is not None, slot_ms=args.slot_ms)
        print(json.dumps(result), flush=True)
        if args.results:
            with args.results.open("a") as out:
                out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}) + "\n")
        results.append(result)
    failed = [r for r in results if "up_failed" in r]
    results = [r for r in results if "up_failed" not in r]
    lines = ["# Network benchmarks (whole peers on loopback)", "",
             f"Real `p2pnode join` processes started by `p2pnode testnet up --no-market`, 1 s slots, on this "
             f"shared 2-core machine ({os.cpu_count()} cores); propagation is the delay from the first peer that "
             "had a block as its head to each other peer (milliseconds); CPU and RSS are per peer over a "
             f"{args.window:.0f} s window of a running network (one block per second).", "",
             "| peers | blocks seen by all | propagation p50 | p95 | CPU per peer (median % of a core) | RSS median / max (MB) | up + finalizing (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['n']} | {r['blocks']} | {r['prop_p50']} ms | {r['prop_p95']} ms | {r['cpu_median']:.1f} % | "
                     f"{r['rss_median']:.0f} / {r['rss_max']:.0f} | {r['up_s']:.0f} |")
    for r in failed:
        lines += ["", f"{r['n']} peers: `testnet up` failed after {r['up_s']:.0f} s ({r['bans']} bans logged): "
                      f"{r['up_failed']}"]
    four = next((r for r in results if r["n"] == 4 and "join_s" in r), None)
    if four and four["join_s"]:
        lines += ["", f"Join to first connected peer (4-peer network, {len(four['join_s'])} runs): median "
                      f"{statistics.median(four['join_s']):.2f} s (includes Python and py-libp2p start-up)."]
    if four:
        lines += ["", f"Transactions: {four['txs']} transfers from {four['senders']} accounts submitted to the 4 peers in "
                  f"{four['requests']} POST /txs batches in {four['submit_s']:.1f} s "
                  f"({four['refused']} refused); all included after {four['included_s']} s and finalized after "
                  f"{four['finalized_s']} s: sustained "
                  + (f"{four['txs'] / four['finalized_s']:.0f} tx/s from submission to finality." if four["finalized_s"] else "n/a."),
                  "", f"Peers' CPU during the transaction phase (% of a core): "
                      f"{', '.join(f'{c:.0f}' for c in four['tx_cpu'])}; transactions per block, last blocks: "
                      f"{four['heights']}."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
