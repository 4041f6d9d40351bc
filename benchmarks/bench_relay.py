"""Relay cost on loopback: CPU the relay process spends per relayed MB, and request latency direct
vs. through the relay; with `--netns`, the home-NAT figures as well.

The relay runs in its own process (so its CPU time is its own); a miner and a querier run in this
one. The querier sends echo requests of `--size` bytes to the miner, first over a relayed
connection, then over a direct one. Short (well under a minute).

`--netns N` (root) also runs `tests/netns/test_home_nat.py` N times (two validators on a public
segment, a miner and a querying peer each behind its own masquerading router; 2-5 minutes a run)
and reports, per run and as medians: join to reachable through a relay (reservations held and
circuit addresses announced), the first answered query from home B to the home-A miner, how
long the hole punch took after it, and query latency (p50 of 5) direct (v1 -> miner over a
connection the miner opened), relayed (v1 -> miner while only the relay connects them) and after
hole punching (home B -> miner).
Run: .venv/bin/python benchmarks/bench_relay.py [--size 262144] [--requests 40] [--netns 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import multiaddr
import psutil
import trio

from p2pnode.net.host import LibP2PNetwork, NetConfig

ECHO = "/p2pnode/bench/echo/1"
RELAY_SCRIPT = """
import sys, trio, hashlib
from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.relay_reservation_spoofing import RelayServiceLimits
async def main():
    limits = RelayServiceLimits(max_circuit_bytes=1 << 40, max_circuit_bytes_per_s=1 << 40)
    net = LibP2PNetwork(hashlib.sha256(b"bench-relay").digest(),
                        config=NetConfig(relay_service=True, autonat=False, relay_limits=limits))
    async with net:
        print(net.listen_addrs()[0], flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def seed(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


async def echo(peer: str, request: bytes) -> bytes:
    return request


async def timed_requests(querier: LibP2PNetwork, miner: LibP2PNetwork, payload: bytes, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = trio.current_time()
        reply = await querier.request(miner.peer_id, ECHO, payload, timeout=60, max_response_bytes=len(payload) + 1)
        assert reply == payload
        times.append(trio.current_time() - start)
    return times


async def run(size: int, count: int) -> dict[str, object]:
    # Popen returns at once; the one blocking read (its address) runs in a thread.
    relay_process = subprocess.Popen([sys.executable, "-c", RELAY_SCRIPT], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert relay_process.stdout is not None
        relay_addr = await trio.to_thread.run_sync(relay_process.stdout.readline)
        relay_addr = relay_addr.strip()
        relay_cpu = psutil.Process(relay_process.pid)
        # No AutoNAT (and so no direct-dial upgrader) and no hole punching: on loopback either
        # would make the relayed connection a direct one halfway through the measurement.
        config = NetConfig(autonat=False, hole_punching=False)
        miner = LibP2PNetwork(seed("bench-miner"), config=config)
        querier = LibP2PNetwork(seed("bench-querier"), config=config)
        miner.set_request_handler(ECHO, echo, size + 1)
        payload = b"r" * size
        async with miner, querier:
            await miner.connect(relay_addr)
            await querier.connect(relay_addr)
            from libp2p.peer.id import ID

            relay_id = ID.from_base58(relay_addr.rsplit("/p2p/", 1)[1])
            assert await miner.relay_reservations.reserve(relay_id) is not None
            circuit = multiaddr.Multiaddr(f"{relay_addr}/p2p-circuit/p2p/{miner.peer_id}")
            assert await querier.relay_dialer.dial(miner.host.get_id(), [circuit])
            await timed_requests(querier, miner, payload, 2)  # warm up
            before = relay_cpu.cpu_times()
            relayed = await timed_requests(querier, miner, payload, count)
            after = relay_cpu.cpu_times()
            cpu_s = (after.user + after.system) - (before.user + before.system)
            relayed_mb = 2 * size * count / 1e6  # request and response both cross the relay
            for conn in list(querier.host.get_network().connections.get(miner.host.get_id(), [])):
                await conn.close()
            await querier.connect(miner.listen_addrs()[0])
            direct = await timed_requests(querier, miner, payload, count)
    finally:
        relay_process.terminate()
        relay_process.wait(timeout=20)
    return {
        "payload_bytes": size, "requests": count,
        "relay_cpu_ms_per_mb": round(1000 * cpu_s / relayed_mb, 1),
        "relayed_latency_ms_p50": round(1000 * statistics.median(relayed), 1),
        "relayed_latency_ms_max": round(1000 * max(relayed), 1),
        "direct_latency_ms_p50": round(1000 * statistics.median(direct), 1),
        "direct_latency_ms_max": round(1000 * max(direct), 1),
    }


NETNS_TEST = Path(__file__).resolve().parent.parent / "tests" / "netns" / "test_home_nat.py"


def run_netns(runs: int) -> dict[str, object]:
    """The home-NAT test `runs` times; its figures per run and their medians."""
    per_run: list[dict[str, object]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "figures.json"
            env = {**os.environ, "P2PNODE_NETNS_REPORT": str(report)}
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", str(NETNS_TEST)], env=env,
                                    capture_output=True, text=True)
            figures = json.loads(report.read_text()) if report.exists() else {}
            figures["passed"] = result.returncode == 0
            if result.returncode != 0:
                figures["failure"] = [line for line in result.stdout.splitlines() if line.startswith("E ")][-3:]
            per_run.append(figures)

    def p50(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    def each(key: str) -> list[float]:
        return [float(f[key]) for f in per_run if key in f]  # type: ignore[arg-type]

    def medians_of(key: str) -> list[float]:
        return [p50(f[key]) for f in per_run if f.get(key)]  # type: ignore[arg-type]

    summary: dict[str, object] = {"runs": runs, "passed": sum(1 for f in per_run if f["passed"])}
    for key in ("join_to_reachable_through_relay_s", "first_relayed_query_s", "hole_punched_after_first_answer_s"):
        summary[key] = each(key)
    for key in ("direct_query_s", "relayed_query_s", "hole_punched_query_s"):
        summary[key + "_p50_per_run"] = medians_of(key)
        values = [v for f in per_run for v in f.get(key, [])]  # type: ignore[attr-defined]
        summary[key + "_p50_all"] = p50(values) if values else None
    summary["per_run"] = per_run
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--netns", type=int, default=0, metavar="RUNS",
                        help="also run the home-NAT netns test this many times (root)")
    args = parser.parse_args()
    result: dict[str, object] = {"loopback": trio.run(run, args.size, args.requests)}
    if args.netns:
        result["home_nat"] = run_netns(args.netns)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
