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
    python benchmarks/bench_gossip.py --nodes 8 --without-cpu-fixes   # the same, minus py-libp2p problem 11 fixes
    python benchmarks/bench_gossip.py --nodes 8 --stock               # py-libp2p as shipped
    python benchmarks/bench_gossip.py --nodes 4 --profile-dir /tmp/prof  # cProfile per node
    python benchmarks/bench_gossip.py --nodes 8 --count-frames        # + yamux frames and RPCs sent per message

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
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

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


class BenchNode(Protocol):
    """What the command loop needs from a node under test."""

    peer_id: str
    addrs: list[str]

    async def publish(self, data: bytes) -> None: ...

    def connected(self) -> int: ...

    def mesh(self) -> int: ...

    def heartbeat_s(self) -> float: ...


@asynccontextmanager
async def p2pnode_node(
    seed: bytes, bootstrap: list[str], on_message: Callable[[bytes], None], without_cpu_fixes: bool,
    degree: tuple[int, int, int] | None = None,
) -> AsyncIterator[BenchNode]:
    """A `LibP2PNetwork`; `without_cpu_fixes` undoes the CPU-only workarounds (the robustness
    settings stay: Noise only, adaptive gossip and spam protection off, guards)."""
    from libp2p.pubsub.mcache import MessageCache

    from p2pnode.net import libp2p_workarounds as workarounds
    from p2pnode.net.gossip import GossipConfig
    from p2pnode.net.host import LibP2PNetwork, NetConfig
    from protocols.network import Verdict

    config = None
    if degree is not None:
        d, d_low, d_high = degree
        config = NetConfig(gossip=GossipConfig(degree=d, degree_low=d_low, degree_high=d_high))
    network = LibP2PNetwork(seed, bootstrap=bootstrap, config=config)
    if without_cpu_fixes:
        workarounds.restore_cpu_fixes()
        del network.pubsub._is_subscribed_to_msg  # `drop_seen_copies_early` off: a task per copy
        network.gossipsub.idontwant_min_bytes = 0
        network.gossipsub.mcache = MessageCache(3, 5)

    async def handler(peer: str, data: bytes) -> None:
        on_message(data)

    network.subscribe(TOPIC, lambda peer, data: Verdict.ACCEPT, handler)
    async with network:
        yield SimpleNamespace(  # type: ignore[misc]
            peer_id=network.peer_id,
            addrs=network.listen_addrs(),
            publish=lambda data: network.publish(TOPIC, data),
            connected=lambda: len(network.connected_peers()),
            mesh=lambda: len(network.mesh_peers(TOPIC)),
            heartbeat_s=lambda: network.gossipsub.heartbeat_interval,
        )


@asynccontextmanager
async def stock_node(seed: bytes, bootstrap: list[str], on_message: Callable[[bytes], None]) -> AsyncIterator[BenchNode]:
    """py-libp2p 0.8.1 as shipped, set up like the notes' measurements: default host and Pubsub,
    GossipSub D=6/4/12 with a 1 s heartbeat and every other default, KadDHT server refreshed
    10 and 20 s after start. No p2pnode code."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service
    from multiaddr import Multiaddr

    host = new_host(key_pair=create_new_key_pair(seed))
    router = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4, degree_high=12,
        heartbeat_interval=1,
    )
    pubsub = Pubsub(host, router)
    dht = KadDHT(host, DHTMode.SERVER)

    async def refresh_later() -> None:
        for delay in (10, 10):
            await trio.sleep(delay)
            await dht.refresh_routing_table()

    async def consume(subscription: Any) -> None:
        async for msg in subscription:
            if msg.from_id != host.get_id().to_bytes():
                on_message(msg.data)

    async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            for addr in bootstrap:
                info = info_from_p2p_addr(Multiaddr(addr))
                await host.connect(info)
                await dht.add_peer(info.peer_id, skip_server_mode_check=True)
            async with background_trio_service(dht), trio.open_nursery() as nursery:
                nursery.start_soon(consume, await pubsub.subscribe(TOPIC))
                nursery.start_soon(refresh_later)
                yield SimpleNamespace(  # type: ignore[misc]
                    peer_id=host.get_id().to_base58(),
                    addrs=[str(a) for a in host.get_addrs()],
                    publish=lambda data: pubsub.publish(TOPIC, data),
                    connected=lambda: len(host.get_connected_peers()),
                    mesh=lambda: len(router.mesh.get(TOPIC, ())),
                    heartbeat_s=lambda: router.heartbeat_interval,
                )
                nursery.cancel_scope.cancel()


def count_frames() -> Counter[str]:
    """Count this process's outgoing yamux frames by type and pubsub RPCs by content, from now on
    (`--count-frames`: how many frames a message costs a node)."""
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.stream_muxer.yamux.yamux import Yamux

    counts: Counter[str] = Counter()
    frame_types = {0: "yamux_data", 1: "yamux_window_update", 2: "yamux_ping", 3: "yamux_go_away"}
    write_frame = Yamux._write_frame
    write_msg = Pubsub.write_msg

    async def counting_write_frame(self: Any, data: bytes) -> None:
        counts[frame_types.get(data[1], "yamux_other")] += 1
        await write_frame(self, data)

    async def counting_write_msg(self: Any, stream: Any, rpc: Any) -> bool:
        counts["rpc"] += 1
        counts["rpc_publish_messages"] += len(rpc.publish)
        if rpc.HasField("control"):
            counts["rpc_with_control"] += 1
        return await write_msg(self, stream, rpc)

    Yamux._write_frame = counting_write_frame  # type: ignore[method-assign, assignment]
    Pubsub.write_msg = counting_write_msg  # type: ignore[method-assign, assignment]
    return counts


async def worker(index: int, bootstrap: list[str], args: argparse.Namespace) -> None:
    started = time.time()
    receipts: list[tuple[int, float]] = []
    marks: dict[str, tuple[float, float]] = {}
    rng = random.Random(index)
    frame_counts: Counter[str] = Counter()
    frames_sent: dict[str, int] = {}
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be busy
    seed = (b"bench-node-%d" % index).ljust(32, b"\0")

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)

    def on_message(data: bytes) -> None:
        idx, sent = struct.unpack_from(">Qd", data)
        receipts.append((idx, (time.time() - sent) * 1000.0))

    if args.stock:
        node_cm = stock_node(seed, bootstrap, on_message)
    else:
        node_cm = p2pnode_node(seed, bootstrap, on_message, args.without_cpu_fixes, parse_degree(args.degree))
    async with node_cm as node:
        emit({"event": "ready", "peer_id": node.peer_id, "addrs": node.addrs, "ready_s": time.time() - started})

        async def report_status() -> None:
            # Only until measuring starts: the reports themselves cost CPU.
            while not marks:
                emit({"event": "status", "connected": node.connected(), "mesh": node.mesh()})
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
                        if args.count_frames and command["label"] == "pub0":
                            frame_counts = count_frames()
                        if args.count_frames and command["label"] == "pub1":
                            frames_sent = dict(frame_counts)
                            frame_counts = Counter()  # stop counting (the wrappers stay: cheap)
                        if args.profile_dir and command["label"] == "pub0":
                            profiler.enable()
                        if args.profile_dir and command["label"] == "pub1":
                            profiler.disable()
                            profiler.dump_stats(os.path.join(args.profile_dir, f"node-{index}.prof"))
                        emit({"event": "marked", "label": command["label"]})
                    elif command["cmd"] == "publish":
                        header = struct.pack(">Qd", command["idx"], time.time())
                        await node.publish(header + rng.randbytes(args.payload - len(header)))
                    elif command["cmd"] == "report":
                        emit({"event": "report", "receipts": receipts, "marks": marks, "rss_kib": rss_kib(),
                              "frames_sent": frames_sent,
                              "heartbeat_s": node.heartbeat_s()})
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


def parse_degree(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    d, d_low, d_high = (int(part) for part in text.split(","))
    return d, d_low, d_high


async def spawn(index: int, bootstrap: list[str], args: argparse.Namespace) -> Peer:
    command = [sys.executable, str(HERE), "--worker", str(index), "--payload", str(args.payload)]
    if args.without_cpu_fixes:
        command.append("--without-cpu-fixes")
    if args.stock:
        command.append("--stock")
    if args.degree:
        command += ["--degree", args.degree]
    if args.profile_dir:
        command += ["--profile-dir", args.profile_dir]
    if args.count_frames:
        command.append("--count-frames")
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
            want_mesh = min(nodes - 1, 4 if not args.degree else parse_degree(args.degree)[1])  # type: ignore[index]
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
    frames_per_msg: dict[str, list[float]] = {}
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
        for kind, count in report["frames_sent"].items():
            frames_per_msg.setdefault(kind, []).append(count / args.messages)
    time_to_all = [max(v) for v in arrival.values() if len(v) == nodes - 1]
    return {
        "nodes": nodes,
        "messages": args.messages,
        "rate_per_s": args.rate,
        "payload_bytes": args.payload,
        "variant": "stock py-libp2p" if args.stock else "p2pnode" + (" without CPU fixes" if args.without_cpu_fixes else "")
        + (f" D={args.degree}" if args.degree else ""),
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
        "heartbeat_s": sorted({p.report["heartbeat_s"] for p in peers if p.report}),
        # Per node per network-wide message, median over nodes (`--count-frames`).
        "frames_sent_per_node_per_msg": {kind: round(statistics.median(v), 2) for kind, v in sorted(frames_per_msg.items())},
    }


async def coordinator(args: argparse.Namespace) -> None:
    results = []
    for nodes in args.nodes:
        result = await run_once(nodes, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    print()
    print(
        "| nodes | variant | delivered | latency p50 / p95 ms | time-to-all p50 / p95 ms "
        "| CPU ms/node/msg net (raw), median | idle CPU % | RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['nodes']} | {r['variant']} | {r['delivered']}/{r['expected']} "
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
    parser.add_argument("--without-cpu-fixes", action="store_true", help="p2pnode minus the CPU-only workarounds")
    parser.add_argument("--stock", action="store_true", help="py-libp2p 0.8.1 as shipped, no p2pnode code")
    parser.add_argument("--profile-dir", help="write a cProfile of each node's publish phase here")
    parser.add_argument("--count-frames", action="store_true", help="count each node's yamux frames and RPCs sent")
    parser.add_argument("--degree", help="GossipSub mesh degree D,D_low,D_high (default: GossipConfig's)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        sys.path.insert(0, str(HERE.parent.parent))
        trio.run(worker, args.worker, args.bootstrap, args)
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        trio.run(coordinator, args)


if __name__ == "__main__":
    main()
