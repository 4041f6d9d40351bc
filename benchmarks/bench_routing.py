"""Query routing benchmark: latency of routed queries with healthy, dead and hung miners.

Four real `MinerServer`s on the in-memory network (no transport cost), each serving a forecast
"model" that sleeps a fixed time per forward pass (10, 20, 40 and 80 ms), with incentives that
favour the slowest (so routing must trade quality rank against measured latency). One peer's
`Router` asks Q questions one after another through `handle_query`; we report the wall time of
each query (p50, p95, max) and which uids answered, in three scenarios:

- healthy: all four answer;
- dead: the top-ranked miner (by incentive) was killed before the run: every ask to it fails at
  once and the router fails over;
- hung: the top-ranked miner accepts requests and never answers: the router hedges.

    python benchmarks/bench_routing.py              # Q = 100
    python benchmarks/bench_routing.py --queries 300
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections import Counter
from typing import Any

import trio

from models.tasks import ForecastTask
from p2pnode.net.identity import peer_id_from_pubkey
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import InferenceClient
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.query import handle_query
from p2pnode.services.market.routing import Router
from p2pnode.testing.memnet import MemoryHub
from protocols.crypto import Keypair, keypair_from_seed
from protocols.inference import inference_protocol_id

CHAIN = "bench-routing"
NETUID = 1
NOW_MS = 1_800_000_000_000
MINERS = ((1, 10, 20_000), (2, 20, 25_000), (3, 40, 30_000), (4, 80, 40_000))  # uid, forward ms, incentive


def key(name: str) -> Keypair:
    return keypair_from_seed(hashlib.sha256(b"bench-routing:" + name.encode()).digest())


class SleepingForecaster:
    max_batch_size = 64

    def __init__(self, forward_ms: int) -> None:
        self.forward_s = forward_ms / 1000

    def answer_batch(self, requests: list[Any]) -> list[dict[str, Any]]:
        time.sleep(self.forward_s)
        return [{"forecast": [r["history"][-1]] * r["horizon"]} for r in requests]


async def scenario(name: str, queries: int) -> dict[str, Any]:
    hub = MemoryHub()
    clock = TrioClock(origin_ms=NOW_MS - round(trio.current_time() * 1000))
    client_key = key("client")
    router = Router(InferenceClient(hub.add_peer(peer_id_from_pubkey(client_key.public_key)), client_key, CHAIN, clock),
                    clock)
    rows: list[NeuronInfo] = []
    latencies: list[float] = []
    answered: Counter[int] = Counter()
    async with trio.open_nursery() as nursery:
        for uid, forward_ms, incentive in MINERS:
            miner_key = key(f"miner-{uid}")
            net = hub.add_peer(peer_id_from_pubkey(miner_key.public_key))
            rows.append(NeuronInfo(uid, miner_key.public_key, net.peer_id, incentive=incentive))
            top = uid == MINERS[-1][0]
            if top and name == "hung":

                async def never(peer: str, data: bytes) -> bytes:
                    await trio.sleep_forever()
                    raise AssertionError

                net.set_request_handler(inference_protocol_id(CHAIN), never, max_request_bytes=1 << 20)
                continue
            server = MinerServer(miner_key, CHAIN, NETUID, SleepingForecaster(forward_ms), ForecastTask(),
                                 lambda _: 1, clock)
            await nursery.start(server.run, net)
            if top and name == "dead":
                hub.kill(net.peer_id)
        for i in range(queries):
            started = time.perf_counter()
            result = await handle_query(router, rows, NETUID, ForecastTask(), ", ".join(str(i + k) for k in range(8)))
            latencies.append((time.perf_counter() - started) * 1000)
            answered[result["uid"]] += 1
        nursery.cancel_scope.cancel()
    ordered = sorted(latencies)
    return {
        "scenario": name,
        "queries": queries,
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
        "first_ms": round(latencies[0], 1),
        "answered_by": dict(sorted(answered.items())),
    }


async def main(queries: int) -> None:
    results = [await scenario(name, queries) for name in ("healthy", "dead", "hung")]
    for result in results:
        print(json.dumps(result))
    print()
    print("| scenario | p50 ms | p95 ms | max ms | first query ms | answered by uid |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['scenario']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['first_ms']} | {r['answered_by']} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    trio.run(main, parser.parse_args().queries)
