"""Relay cost on loopback: CPU the relay process spends per relayed MB, and request latency direct
vs. through the relay.

The relay runs in its own process (so its CPU time is its own); a miner and a querier run in this
one. The querier sends echo requests of `--size` bytes to the miner, first over a relayed
connection, then over a direct one. Short (well under a minute).
Run: .venv/bin/python benchmarks/bench_relay.py [--size 262144] [--requests 40]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys

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
        config = NetConfig(autonat=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(trio.run(run, args.size, args.requests), indent=2))


if __name__ == "__main__":
    main()
