"""Gossip benchmark: N peer processes on loopback, each a real `LibP2PNetwork`.

Measures, per run:
- propagation latency (receive wall time - publish wall time, publisher's own copy excluded),
  p50/p95/max over all deliveries, and "time to all" per message;
- CPU time per node per network-wide message: each node's CPU during the publish phase, minus its
  idle rate, divided by the number of messages published by the whole network;
- idle CPU (% of one core) and RSS per peer after the mesh has formed.

Node 0 is the bootstrap peer; every other node is given only node 0 and finds the rest through
the DHT. Publishers are chosen at random, on a fixed schedule.

    python benchmarks/bench_gossip.py --nodes 4 8 --messages 150 --rate 5
    python benchmarks/bench_gossip.py --nodes 8 --without-cpu-fixes   # the same, minus §4.11 fixes
    python benchmarks/bench_gossip.py --nodes 4 --profile-dir /tmp/prof  # cProfile per node

Prints one JSON line per run and a summary table. Loopback only (127.0.0.1).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

TOPIC = "/p2pnode/bench/gossip/1"
HERE = Path(__file__).resolve()


# -- worker (one per process) ------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def disable_cpu_fixes(network: Any) -> None:
    """Undo the CPU-only workarounds (for the comparison run); the robustness ones stay."""
    from libp2p.pubsub.mcache import MessageCache

    from p2pnode.net import libp2p_workarounds as workarounds

    workarounds.restore_cpu_fixes()
    network.gossipsub.idontwant_min_bytes = 0
    network.gossipsub.mcache = MessageCache(3, 5)


async def worker(
    index: int, bootstrap: list[str], payload_bytes: int, without_cpu_fixes: bool, profile_dir: str | None
) -> None:
    started = time.time()
    from p2pnode.net.host import LibP2PNetwork
    from protocols.network import Verdict

    imported = time.time()
    seed = (b"bench-node-%d" % index).ljust(32, b"\0")
    network = LibP2PNetwork(seed, bootstrap=bootstrap)
    if without_cpu_fixes:
        disable_cpu_fixes(network)
    receipts: list[tuple[int, float]] = []
    marks: dict[str, tuple[float, float]] = {}
    rng = random.Random(index)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be busy

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)

    async def on_message(peer: str, data: bytes) -> None:
        idx, sent = struct.unpack_from(">Qd", data)
        receipts.append((idx, (time.time() - sent) * 1000.0))

    network.subscribe(TOPIC, lambda peer, data: Verdict.ACCEPT, on_message)
    async with network:
        emit({"event": "ready", "peer_id": network.peer_id, "addrs": network.listen_addrs(),
              "import_s": imported - started, "ready_s": time.time() - started})

        async def report_status() -> None:
            # Only until measuring starts: the reports themselves cost CPU.
            while not marks:
                emit({"event": "status", "connected": len(network.connected_peers()),
                      "mesh": len(network.mesh_peers(TOPIC))})
                await trio.sleep(1.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_status)
            stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
            buffer = b""
            while chunk := await stdin.receive_some():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    command = json.loads(line)
                    if command["cmd"] == "mark":
                        marks[command["label"]] = (time.process_time(), time.time())
                        if profile_dir and command["label"] == "pub0":
                            profiler.enable()
                        if profile_dir and command["label"] == "pub1":
                            profiler.disable()
                            profiler.dump_stats(os.path.join(profile_dir, f"node-{index}.prof"))
                        emit({"event": "marked", "label": command["label"]})
                    elif command["cmd"] == "publish":
                        header = struct.pack(">Qd", command["idx"], time.time())
                        await network.publish(TOPIC, header + rng.randbytes(payload_bytes - len(header)))
                    elif command["cmd"] == "report":
                        emit({"event": "report", "receipts": receipts, "marks": marks, "rss_kib": rss_kib(),
                              "stats": network.statistics()})
            nursery.cancel_scope.cancel()


# -- coordinator -------------------------------------------------------------------------------


class Peer:
    def __init__(self, index: int, process: trio.Process) -> None:
        self.index = index
        self.process = process
        self.ready: dict[str, Any] | None = None
        self.status: dict[str, Any] = {"connected": 0, "mesh": 0}
        self.marked: set[str] = set()
        self.report: dict[str, Any] | None = None

    async def read_events(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(b"{"):
                    continue
                event = json.loads(line)
                kind = event.pop("event")
                if kind == "ready":
                    self.ready = event
                elif kind == "status":
                    self.status = event
                elif kind == "marked":
                    self.marked.add(event["label"])
                elif kind == "report":
                    self.report = event

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")


async def wait_until(condition: Any, timeout: float, what: str) -> float:  # noqa: ASYNC109
    started = time.monotonic()
    with trio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 (the workers report by polling output)
            await trio.sleep(0.05)
    return time.monotonic() - started


async def spawn(index: int, bootstrap: list[str], args: argparse.Namespace) -> Peer:
    command = [sys.executable, str(HERE), "--worker", str(index), "--payload", str(args.payload)]
    if args.without_cpu_fixes:
        command.append("--without-cpu-fixes")
    if args.profile_dir:
        command += ["--profile-dir", args.profile_dir]
    command += ["--bootstrap", *bootstrap] if bootstrap else []
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    return Peer(index, process)


async def mark_all(peers: list[Peer], label: str) -> None:
    for peer in peers:
        await peer.send({"cmd": "mark", "label": label})
    await wait_until(lambda: all(label in p.marked for p in peers), 30, f"mark {label}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_once(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    peers: list[Peer] = []
    async with trio.open_nursery() as nursery:
        try:
            first = await spawn(0, [], args)
            peers.append(first)
            nursery.start_soon(first.read_events)
            await wait_until(lambda: first.ready is not None, 120, "bootstrap node")
            assert first.ready is not None
            for index in range(1, nodes):
                peer = await spawn(index, first.ready["addrs"][:1], args)
                peers.append(peer)
                nursery.start_soon(peer.read_events)
            startup_s = await wait_until(lambda: all(p.ready for p in peers), 180, "all nodes ready")
            want_mesh = min(nodes - 1, 4)
            mesh_s = await wait_until(
                lambda: all(p.status["connected"] >= nodes - 1 and p.status["mesh"] >= want_mesh for p in peers),
                120,
                "full connectivity and meshes",
            )
            await trio.sleep(args.settle)  # let start-up work (imports, first refreshes) finish
            await mark_all(peers, "idle0")
            await trio.sleep(args.idle)
            await mark_all(peers, "idle1")

            schedule = random.Random(nodes)
            publishers = [schedule.randrange(nodes) for _ in range(args.messages)]  # by message index
            await mark_all(peers, "pub0")
            started = trio.current_time()
            for idx, publisher in enumerate(publishers):
                await trio.sleep_until(started + idx / args.rate)
                await peers[publisher].send({"cmd": "publish", "idx": idx})
            expected = args.messages * (nodes - 1)
            await trio.sleep(args.drain)
            await mark_all(peers, "pub1")
            for peer in peers:
                await peer.send({"cmd": "report"})
            await wait_until(lambda: all(p.report for p in peers), 60, "reports")
        finally:
            for peer in peers:
                if peer.process.stdin is not None:
                    await peer.process.stdin.aclose()
            with trio.move_on_after(20):
                for peer in peers:
                    await peer.process.wait()
            for peer in peers:
                if peer.process.returncode is None:
                    peer.process.kill()
            nursery.cancel_scope.cancel()

    latencies: list[float] = []
    arrival: dict[int, list[float]] = {}
    cpu_ms_per_msg: list[float] = []
    raw_cpu_ms_per_msg: list[float] = []
    idle_pct: list[float] = []
    rss_mib: list[float] = []
    for peer in peers:
        report = peer.report
        assert report is not None
        for idx, latency in report["receipts"]:
            if publishers[idx] != peer.index:
                latencies.append(latency)
                arrival.setdefault(idx, []).append(latency)
        marks = report["marks"]
        idle_cpu = marks["idle1"][0] - marks["idle0"][0]
        idle_wall = marks["idle1"][1] - marks["idle0"][1]
        idle_rate = idle_cpu / idle_wall
        pub_cpu = marks["pub1"][0] - marks["pub0"][0]
        pub_wall = marks["pub1"][1] - marks["pub0"][1]
        cpu_ms_per_msg.append((pub_cpu - idle_rate * pub_wall) / args.messages * 1000.0)
        raw_cpu_ms_per_msg.append(pub_cpu / args.messages * 1000.0)
        idle_pct.append(idle_rate * 100.0)
        rss_mib.append(report["rss_kib"] / 1024.0)
    time_to_all = [max(v) for v in arrival.values() if len(v) == nodes - 1]
    return {
        "nodes": nodes,
        "messages": args.messages,
        "rate_per_s": args.rate,
        "payload_bytes": args.payload,
        "cpu_fixes": not args.without_cpu_fixes,
        "startup_s": round(startup_s, 2),
        "mesh_formed_s": round(mesh_s, 2),
        "delivered": len(latencies),
        "expected": expected,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95), "max": max(latencies, default=float("nan"))},
        "time_to_all_ms": {"p50": percentile(time_to_all, 0.5), "p95": percentile(time_to_all, 0.95), "reached_all": len(time_to_all)},
        # Net of the node's idle rate, and raw (everything the node did while messages flowed).
        "cpu_ms_per_node_per_msg": {"median": statistics.median(cpu_ms_per_msg), "min": min(cpu_ms_per_msg), "max": max(cpu_ms_per_msg)},
        "raw_cpu_ms_per_node_per_msg": {"median": statistics.median(raw_cpu_ms_per_msg), "max": max(raw_cpu_ms_per_msg)},
        "idle_cpu_pct_per_node": {"median": statistics.median(idle_pct), "max": max(idle_pct)},
        "rss_mib_per_node": {"median": statistics.median(rss_mib), "max": max(rss_mib)},
        "heartbeat_s": sorted({p.report["stats"]["heartbeat_interval_s"] for p in peers if p.report}),
    }


async def coordinator(args: argparse.Namespace) -> None:
    results = []
    for nodes in args.nodes:
        result = await run_once(nodes, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    print()
    print(
        "| nodes | CPU fixes | delivered | latency p50 / p95 ms | time-to-all p50 / p95 ms "
        "| CPU ms/node/msg net (raw), median | idle CPU % | RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['nodes']} | {'on' if r['cpu_fixes'] else 'off'} | {r['delivered']}/{r['expected']} "
            f"| {r['latency_ms']['p50']:.1f} / {r['latency_ms']['p95']:.1f} "
            f"| {r['time_to_all_ms']['p50']:.1f} / {r['time_to_all_ms']['p95']:.1f} "
            f"| {r['cpu_ms_per_node_per_msg']['median']:.2f} ({r['raw_cpu_ms_per_node_per_msg']['median']:.2f}) "
            f"| {r['idle_cpu_pct_per_node']['median']:.2f} | {r['rss_mib_per_node']['median']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--rate", type=float, default=5.0, help="network-wide messages per second")
    parser.add_argument("--payload", type=int, default=1024, help="bytes per message")
    # Past the start-up DHT refreshes (2, 6, 15 s after start) before measuring.
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=15.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--without-cpu-fixes", action="store_true")
    parser.add_argument("--profile-dir", help="write a cProfile of each node's publish phase here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        sys.path.insert(0, str(HERE.parent.parent))
        trio.run(worker, args.worker, args.bootstrap, args.payload, args.without_cpu_fixes, args.profile_dir)
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        trio.run(coordinator, args)


if __name__ == "__main__":
    main()
