"""Sustained transfers submitted -> included -> finalized on a local 4-peer network: the chain's
capacity, not the submitter's.

1. `p2pnode testnet up -n 4 --no-market` (1 s slots, 4-slot epochs; `--param NAME=VALUE` passes
   genesis parameters through, e.g. `--param max_block_txs=2000`).
2. `--senders` fresh accounts are funded from the four development users, then every transfer
   (`--per-sender` each, to one sink account) is signed in worker processes *before the clock
   starts*.
3. One submitter process per peer sends its share of the senders' transfers with `POST /txs`
   (at most 1,024 per request), keeping what the network has pending below `--pool-cap` (read from
   its peer's `/status`), so transfers are not refused for want of room and the submitter never
   waits on signing. A refused transfer is sent again (the same bytes) with its sender's later ones.
4. The benchmark polls one peer for the sink's balance (= transfers included) and the finalized
   height, then reads every block's transfer count: submitted -> included and submitted -> finalized
   rates over the whole run, and the steady-state included rate per block and per slot over the
   middle 80 % of the slots that carried transfers.

    .venv/bin/python benchmarks/bench_tx_finality.py [--senders 512] [--per-sender 64]
        [--param max_block_txs=2000] [--profile-dir DIR] [--json-out FILE]

`--profile-dir` profiles every peer from the first submission until the last transfer is
included (cProfile of process CPU time, `P2PNODE_PROFILE` toggled by SIGUSR1), which slows them
down: profile in a separate run from the one whose rates are reported.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2pnode.chain.address import encode_address  # noqa: E402
from p2pnode.chain.types import SignedTx, Transfer  # noqa: E402
from p2pnode.cli.client import ApiError, get_json, post_txs  # noqa: E402
from p2pnode.cli.profiling import PROFILE_ENV  # noqa: E402
from p2pnode.genesis_file import dev_keypair  # noqa: E402
from p2pnode.services.api.routes import MAX_BATCH_TXS  # noqa: E402
from p2pnode.testing.factories import signed  # noqa: E402
from protocols import codec  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
FEE = 1_000
FUNDING_BATCH = 64  # the mempool's per-sender quota: one funder's transfers pending at once
POLL_S = 0.05  # submitters' pause when the network's pools are at the cap
# Refusals that mean the transfer is in the pool or in a block already.
ALREADY_THERE = frozenset({"duplicate", "stale_nonce"})
# Refusals that mean the pool lacks one of the sender's earlier transfers.
GAP_REFUSALS = frozenset({"future_pool_full", "too_many_future", "nonce_too_far"})


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    out = subprocess.run([sys.executable, "-m", "p2pnode", *args], capture_output=True, text=True, check=True,
                         env=env or os.environ.copy())
    return json.loads(out.stdout) if "--json" in args else out.stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sender_key(index: int) -> Any:
    return dev_keypair(f"bench-finality-sender-{index}")


SINK = dev_keypair("bench-finality-sink")


# ---------------------------------------------------------------- setup


def fund_senders(api: str, chain_id: str, count: int, amount: int) -> None:
    """Fund senders 0..count-1 from user-0..3 (each funder keeps at most its quota pending); returns
    once every funding transfer is included."""
    funders = [dev_keypair(f"user-{i}") for i in range(4)]
    shares = [list(range(i, count, len(funders))) for i in range(len(funders))]
    done = [0] * len(funders)
    first = [get_json(api, f"/accounts/{f.address}")["nonce"] for f in funders]
    while any(done[i] < len(shares[i]) for i in range(len(funders))):
        for i, funder in enumerate(funders):
            chunk = shares[i][done[i]:done[i] + FUNDING_BATCH]
            if not chunk:
                continue
            batch = [codec.encode(signed(funder, first[i] + done[i] + k, Transfer(to=sender_key(s).public_key, amount=amount),
                                         chain_id=chain_id)) for k, s in enumerate(chunk)]
            answer = post_txs(api, batch)
            if answer["added"] != len(batch):
                raise RuntimeError(f"funding refused: {[r['reason'] for r in answer['results'] if not r['added']][:5]}")
            done[i] += len(chunk)
        deadline = time.monotonic() + 60
        while any(get_json(api, f"/accounts/{f.address}")["nonce"] < first[i] + done[i] for i, f in enumerate(funders)):
            if time.monotonic() > deadline:
                raise RuntimeError("funding transfers not included within 60 s")
            time.sleep(0.2)


def sign_senders(job: tuple[str, list[int], int]) -> list[list[bytes]]:
    """Every transfer of the given senders, encoded and signed (runs in a worker process)."""
    chain_id, senders, per_sender = job
    out = []
    for s in senders:
        key = sender_key(s)
        out.append([codec.encode(signed(key, n, Transfer(to=SINK.public_key, amount=1), fee=FEE, chain_id=chain_id))
                    for n in range(per_sender)])
    return out


# ---------------------------------------------------------------- submission


def submitter(api: str, txs: list[list[bytes]], pool_cap: int, share_of_cap: int, start: Any, results: Any,
              give_up_s: float, max_batch: int) -> None:
    """Send `txs` (per sender, in nonce order) to `api` in POST /txs batches, keeping the peer's pool
    below `pool_cap` (this submitter taking at most 1/`share_of_cap` of the room)."""
    sent = [0] * len(txs)
    refusals: Counter[str] = Counter()
    timeline: list[tuple[float, int]] = []
    posts = polls = resyncs = resends = 0
    accepted_total = 0
    decoded = [codec.decode(SignedTx, own[0]).tx for own in txs]
    addresses = [encode_address(tx.sender) for tx in decoded]
    first_nonce = [tx.nonce for tx in decoded]
    start.wait()
    deadline = time.monotonic() + give_up_s
    cpu0 = time.process_time()
    first_post = None
    cursor = 0
    confirmed = [False] * len(txs)
    while time.monotonic() < deadline:
        active = [s for s in range(len(txs)) if sent[s] < len(txs[s])]
        if not active:
            # All accepted once. A sender whose transfers left every pool (refused when a
            # reorganisation returned them to a full pool, say) waits forever: like a wallet, look
            # for senders with nothing pending here and not all included, and send from their nonce.
            for s in range(len(txs)):
                if confirmed[s]:
                    continue
                try:
                    account = get_json(api, f"/accounts/{addresses[s]}")
                except ApiError:
                    continue
                done = account["nonce"] - first_nonce[s]
                if done >= len(txs[s]):
                    confirmed[s] = True
                elif account["pending_txs"] == 0:
                    sent[s] = done
                    resends += 1
            if all(confirmed):
                break
            time.sleep(1.0)
            continue
        polls += 1
        try:
            pending = get_json(api, "/status")["mempool"]
        except ApiError:
            continue
        room = min(max_batch, (pool_cap - pending) // share_of_cap)
        if room < min(64, sum(len(txs[s]) - sent[s] for s in active)):
            time.sleep(POLL_S)
            continue
        depth = max(1, math.ceil(room / len(active)))
        batch: list[bytes] = []
        owners: list[tuple[int, int]] = []  # (sender, items in the batch)
        cursor %= len(active)
        for s in active[cursor:] + active[:cursor]:
            take = txs[s][sent[s]:sent[s] + min(depth, room - len(batch))]
            if not take:
                break
            batch += take
            owners.append((s, len(take)))
        cursor += len(owners)
        if first_post is None:
            first_post = time.monotonic()
        try:
            answer = post_txs(api, batch)["results"]
        except ApiError as exc:
            refusals[f"http_{exc}"[:40]] += len(batch)
            time.sleep(POLL_S)
            continue
        posts += 1
        at = 0
        gaps = []
        accepted_now = 0
        for s, n in owners:
            ok = 0
            for r in answer[at:at + n]:
                if not (r["added"] or r["reason"] in ALREADY_THERE):
                    refusals[r["reason"]] += 1
                    if r["reason"] in GAP_REFUSALS:
                        gaps.append(s)
                    break
                ok += 1
            sent[s] += ok
            accepted_now += ok
            at += n
        for s in gaps[:64]:
            # An earlier transfer of this sender left the pool (evicted, expired, or in a block a
            # reorganisation dropped): send again from the first nonce the peer's pool lacks.
            try:
                account = get_json(api, f"/accounts/{addresses[s]}")
            except ApiError:
                continue
            sent[s] = max(0, min(sent[s], account["nonce"] + account["pending_txs"] - first_nonce[s]))
            resyncs += 1
        accepted_total += accepted_now
        if not accepted_now:
            time.sleep(POLL_S)
        timeline.append((time.monotonic(), accepted_total))
    results.put({"first_post": first_post, "timeline": timeline, "posts": posts, "polls": polls,
                 "refusals": dict(refusals), "resyncs": resyncs, "resends": resends, "unsent": sum(len(t) - n for t, n in zip(txs, sent, strict=True)), "cpu_s": time.process_time() - cpu0})


# ---------------------------------------------------------------- the run


def block_rows(api: str, first: int, last: int) -> list[tuple[int, int, int]]:
    """(height, slot, transfers to the sink) per canonical block."""
    rows = []
    sink = SINK.address
    for h in range(first, last + 1):
        block = get_json(api, f"/blocks/{h}")
        senders_txs = sum(1 for t in block["txs"] if t["kind"] == "transfer" and t["sender"] != sink)
        rows.append((h, block["slot"], senders_txs))
    return rows


def peer_counters(api: str) -> dict[str, Any]:
    """What each peer did: blocks proposed, reorganisations, imports by outcome, gossiped
    transactions its pool refused (by reason)."""
    status = get_json(api, "/status")
    out: dict[str, Any] = {"proposed": status["blocks_proposed"], "forks": status["forks"], "orphans": status["orphans"]}
    for line in get_json_text(api, "/metrics").splitlines():
        if line.startswith("p2pnode_reorgs_total"):
            out["reorgs"] = float(line.split()[-1])
        elif line.startswith("p2pnode_block_imports_total"):
            out["import_" + line.split('outcome="')[1].split('"')[0]] = float(line.split()[-1])
        elif line.startswith("p2pnode_mempool_admissions_total") and 'source="gossip"' in line:
            reason = line.split('reason="')[1].split('"')[0]
            if reason not in ("added", "duplicate"):
                out["gossip_" + reason] = float(line.split()[-1])
        elif line.startswith("p2pnode_mempool_admissions_total") and 'source="parked"' in line:
            out["parked_" + line.split('reason="')[1].split('"')[0]] = float(line.split()[-1])
    return out


def scrape_import_seconds(api: str) -> tuple[float, float]:
    """(sum, count) of the peer's block-import histogram."""
    text = get_json_text(api, "/metrics")
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("p2pnode_block_import_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("p2pnode_block_import_seconds_count"):
            count = float(line.split()[-1])
    return total, count


def block_arrival_ms(apis: list[str]) -> list[int | None]:
    """Per peer, the median delay from a slot's start to the gossip arrival of its block (before
    its import) over the peer's last 32 blocks from other proposers: building plus propagation."""
    out: list[int | None] = []
    for api in apis:
        try:
            out.append(get_json(api, "/status")["block_delay_ms"])
        except ApiError:
            out.append(None)
    return out


def get_json_text(api: str, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(api.rstrip("/") + path, timeout=10) as response:
        return response.read().decode()


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = os.environ.copy()
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
        env[PROFILE_ENV] = str(Path(args.profile_dir).resolve())
    params = [a for p in args.param for a in ("--param", p)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = cli("testnet", "up", "-n", "4", "--no-market", "--dir", tmp, "--timeout", "400", "--json", *params, env=env)
        try:
            return measure([r["api"] for r in rows], [r["pid"] for r in rows], args)
        finally:
            cli("testnet", "down", "--dir", tmp)


def measure(apis: list[str], pids: list[int], args: argparse.Namespace) -> dict[str, Any]:
    status = get_json(apis[0], "/status")
    chain_id = status["chain_id"]
    total = args.senders * args.per_sender
    t_setup = time.monotonic()
    fund_senders(apis[0], chain_id, args.senders, args.per_sender * (FEE + 1) * 2)
    funded_s = time.monotonic() - t_setup
    t_sign = time.monotonic()
    workers = max(1, os.cpu_count() or 1)
    ranges = [list(range(w, args.senders, workers)) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        signed_parts = pool.map(sign_senders, [(chain_id, r, args.per_sender) for r in ranges])
    by_sender: dict[int, list[bytes]] = {}
    for r, part in zip(ranges, signed_parts, strict=True):
        by_sender.update(zip(r, part, strict=True))
    sign_s = time.monotonic() - t_sign

    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    share = len(apis)
    procs = []
    for i, api in enumerate(apis):
        own = [by_sender[s] for s in range(i, args.senders, len(apis))]
        procs.append(ctx.Process(target=submitter, args=(api, own, args.pool_cap, share, start, results, args.timeout, args.batch),
                                 daemon=True))
    for p in procs:
        p.start()
    del by_sender, signed_parts

    watch_api = apis[1]
    samples: list[tuple[float, int, int, int]] = []  # (t, included, head height, finalized height)
    stop = threading.Event()
    sink_path = f"/accounts/{SINK.address}"
    base_balance = get_json(watch_api, sink_path)["balance"]

    def watch() -> None:
        while not stop.is_set():
            try:
                s = get_json(watch_api, "/status")
                included = get_json(watch_api, sink_path)["balance"] - base_balance
            except ApiError:
                # A peer too busy to answer within the client's timeout (or gone): ask again later.
                stop.wait(args.poll_s)
                continue
            samples.append((time.monotonic(), included, s["head_height"], s["finalized_height"] or 0))
            stop.wait(args.poll_s)

    start_height = get_json(watch_api, "/status")["head_height"]
    cpu0 = [cpu_seconds(p) for p in pids]
    import0 = [scrape_import_seconds(a) for a in apis]
    load0 = os.getloadavg()
    # A daemon: an interrupted run (its testnet stopped) must not wait on it at exit.
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    if args.profile_dir:
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)  # starts its profile
    t0 = time.monotonic()
    start.set()
    reports = [results.get(timeout=args.timeout + 60) for _ in procs]
    for p in procs:
        p.join()
    submitted_at = time.monotonic()
    deadline = t0 + args.timeout
    included_at = finalized_at = None
    included_height = None
    while time.monotonic() < deadline:
        if samples and samples[-1][1] >= total:
            if included_at is None:
                included_at, included_height = next((t, h) for t, inc, h, _ in samples if inc >= total)
                cpu_end = time.monotonic()
                cpu = [(cpu_seconds(p) - c) / (cpu_end - t0) * 100 for p, c in zip(pids, cpu0, strict=True)]
                arrival_ms = block_arrival_ms(apis)
                if args.profile_dir:
                    for pid in pids:
                        os.kill(pid, signal.SIGUSR1)  # stops and writes its profile
            finalized = next((t for t, _, _, f in samples if f >= included_height), None)
            if finalized is not None:
                finalized_at = finalized
                break
        time.sleep(args.poll_s)
    stop.set()
    watcher.join()
    if included_at is None:
        arrival_ms = block_arrival_ms(apis)
        cpu_end = time.monotonic()
        cpu = [(cpu_seconds(p) - c) / (cpu_end - t0) * 100 for p, c in zip(pids, cpu0, strict=True)]
    import1 = [scrape_import_seconds(a) for a in apis]
    load1 = os.getloadavg()
    first_post = min(r["first_post"] for r in reports if r["first_post"] is not None)
    last_accept = max(r["timeline"][-1][0] for r in reports if r["timeline"])
    head = get_json(watch_api, "/status")["head_height"]
    counters = [peer_counters(a) for a in apis]
    blocks = block_rows(watch_api, start_height + 1, head)
    carrying = [b for b in blocks if b[2]]
    result: dict[str, Any] = {
        "senders": args.senders, "per_sender": args.per_sender, "txs": total, "params": args.param,
        "pool_cap": args.pool_cap, "funded_s": funded_s, "sign_s": sign_s,
        "submitted_s": last_accept - first_post, "included_s": None if included_at is None else included_at - first_post,
        "finalized_s": None if finalized_at is None else finalized_at - first_post,
        "posts": sum(r["posts"] for r in reports), "polls": sum(r["polls"] for r in reports),
        "resyncs": sum(r["resyncs"] for r in reports), "resends": sum(r["resends"] for r in reports), "unsent": sum(r["unsent"] for r in reports),
        "refusals": dict(sum((Counter(r["refusals"]) for r in reports), Counter())),
        "submitter_cpu_s": [round(r["cpu_s"], 2) for r in reports], "peer_cpu_pct": [round(c, 1) for c in cpu],
        "window_s": cpu_end - t0, "load": [round(load0[0], 1), round(load1[0], 1)], "submit_wall_s": submitted_at - t0,
        "blocks": blocks, "peers": counters,
        "block_arrival_ms": arrival_ms,
        "import_ms_mean": [round((s1 - s0) / (n1 - n0) * 1000, 1) if n1 > n0 else None
                           for (s0, n0), (s1, n1) in zip(import0, import1, strict=True)],
    }
    if carrying:
        first_slot, last_slot = carrying[0][1], carrying[-1][1]
        span = last_slot - first_slot + 1
        lo, hi = first_slot + span // 10, last_slot - span // 10
        middle = [b for b in blocks if lo <= b[1] <= hi]
        slots = hi - lo + 1
        result["steady"] = {
            "slots": slots, "blocks": len(middle), "txs": sum(b[2] for b in middle),
            "per_slot": sum(b[2] for b in middle) / slots if slots > 0 else None,
            "median_per_block": statistics.median(b[2] for b in middle) if middle else None,
            "max_per_block": max((b[2] for b in middle), default=0),
        }
    return result


def report(r: dict[str, Any]) -> str:
    def rate(seconds: float | None) -> str:
        return "n/a" if not seconds else f"{r['txs'] / seconds:.0f} tx/s"

    lines = [
        f"{r['txs']} transfers from {r['senders']} senders ({r['per_sender']} each), genesis params "
        f"{r['params'] or 'default'}, pool cap {r['pool_cap']}; load average {r['load'][0]} -> {r['load'][1]}",
        f"funding {r['funded_s']:.1f} s, signing {r['sign_s']:.1f} s (before the clock)",
        f"submitted in {r['submitted_s']:.1f} s ({rate(r['submitted_s'])}); {r['posts']} POST /txs, {r['polls']} status polls, {r['resyncs']} sender resyncs, {r['resends']} senders sent again after a loss, {r['unsent']} never accepted; "
        f"refusals {r['refusals']}",
        f"all included after {r['included_s'] and round(r['included_s'], 1)} s ({rate(r['included_s'])}); "
        f"finalized after {r['finalized_s'] and round(r['finalized_s'], 1)} s ({rate(r['finalized_s'])})",
        f"peers' CPU until all were included (% of a core): {r['peer_cpu_pct']}; submitters' CPU s: {r['submitter_cpu_s']}; "
        f"mean block import ms per peer: {r['import_ms_mean']}; median block arrival after its slot's start, ms per peer: "
        f"{r['block_arrival_ms']}",
    ]
    steady = r.get("steady")
    if steady:
        lines.append(f"steady state (middle 80 % of {steady['slots']} slots): {steady['blocks']} blocks, "
                     f"{steady['per_slot']:.0f} transfers per slot, median {steady['median_per_block']} per block, "
                     f"max {steady['max_per_block']}")
    lines.append(f"per peer: {r['peers']}")
    lines.append("transfers per block: " + ", ".join(str(b[2]) for b in r["blocks"] if b[2]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=512)
    parser.add_argument("--per-sender", type=int, default=64)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a genesis parameter for the testnet (repeatable)")
    parser.add_argument("--pool-cap", type=int, default=2048,
                        help="pending transactions the submitters keep the network below (the pool holds 8,192)")
    parser.add_argument("--batch", type=int, default=512, help=f"most transfers per POST /txs (at most {MAX_BATCH_TXS})")
    parser.add_argument("--poll-s", type=float, default=0.25, help="interval of the included/finalized poll")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile-dir", help="run the peers under cProfile, one file per peer here")
    parser.add_argument("--json-out", type=Path, help="write the raw result here")
    args = parser.parse_args()
    if any(not re.fullmatch(r"[a-z_]+=\d+", p) for p in args.param):
        parser.error("--param takes NAME=VALUE")
    result = run(args)
    print(report(result), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
