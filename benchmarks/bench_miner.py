"""Miner benchmark: throughput with and without batching, and the cost of the network path.

1. Throughput: a real `MinerServer` serving a `text` transformer (the `FULL_CONFIG` shape of
   text-transformer, untrained: weights do not change the cost) on the in-memory network. C callers
   (C = 1, 8, 32) each send their share of N pre-signed requests one after another; requests/s is
   N / wall time. "batched" lets the server batch (max 64, 2 ms window); "one at a time" sets
   max_batch_size=1. Median of R repeats.
2. Latency at concurrency 1, median of K requests: the model's own forward pass
   (`answer_batch([request])`), the full protocol in process (sign, verify, JSON, queue, forward,
   sign, verify), and the same over two libp2p hosts on 127.0.0.1 (Noise + Yamux).

    python benchmarks/bench_miner.py                  # defaults: N=256, R=3, K=200
    python benchmarks/bench_miner.py --requests 512 --repeats 5

Prints a JSON line per measurement and a summary table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time

import torch
import trio

from models.gpt import CharGPT, GPTConfig
from models.tasks import TextTask
from models.tasks.corpus import VOCAB
from models.text_models import GPTNextChar, TextModel
from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.identity import peer_id_from_pubkey
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.miner import MinerConfig, MinerServer
from p2pnode.testing.memnet import MemoryHub
from protocols.codec import decode, encode
from protocols.crypto import Keypair, keypair_from_seed
from protocols.inference import (
    MAX_RESPONSE_BYTES,
    Code,
    SignedInferenceResponse,
    build_request,
    decode_response,
    encode_json_payload,
    inference_protocol_id,
    request_id_of,
    verify_response,
)
from protocols.network import NetworkAPI

CHAIN = "bench"
NETUID = 1
PROTOCOL = inference_protocol_id(CHAIN)
NOW = 1_800_000_000.0


def bench_clock() -> TrioClock:
    """The node's clock, reading NOW (the signed requests' timestamp) when the benchmark starts."""
    return TrioClock(origin_ms=int(NOW * 1000) - round(trio.current_time() * 1000))
MODEL_CONFIG = GPTConfig(vocab_size=len(VOCAB), block_size=64, n_layer=3, n_head=4, n_embd=64)


def key(name: str) -> Keypair:
    return keypair_from_seed(hashlib.sha256(b"bench:" + name.encode()).digest())


def make_model(task: TextTask) -> TextModel:
    torch.manual_seed(0)
    gpt = CharGPT(MODEL_CONFIG)
    return TextModel("bench-transformer", task, GPTNextChar(gpt), torch.device("cpu"), context_window=64)


class Requests:
    """Pre-signed requests from a caller to the miner (fresh nonce each)."""

    def __init__(self, task: TextTask, miner_peer: str) -> None:
        self.task = task
        self.miner_peer = miner_peer
        self.count = 0

    def make(self, caller: Keypair, seed: int) -> bytes:
        self.count += 1
        request, _ = self.task.make_challenge(seed)
        signed = build_request(
            caller,
            chain_id=CHAIN,
            miner=self.miner_peer,
            netuid=NETUID,
            payload=encode_json_payload(request),
            nonce=self.count.to_bytes(16, "big"),
            timestamp_ms=int(NOW * 1000),
        )
        return encode(signed)


async def throughput(task: TextTask, model: TextModel, concurrency: int, n: int, batched: bool) -> float:
    miner = key("miner")
    hub = MemoryHub()
    config = MinerConfig(
        max_batch_size=64 if batched else 1, batch_window_s=0.002 if batched else 0.0, max_queue=1024
    )
    server = MinerServer(miner, CHAIN, NETUID, model, task, lambda _: 1, bench_clock(), config)
    callers = [key(f"caller-{i}") for i in range(concurrency)]
    nets = [hub.add_peer(peer_id_from_pubkey(c.public_key)) for c in callers]
    maker = Requests(task, peer_id_from_pubkey(miner.public_key))
    per_caller = n // concurrency
    work = [[maker.make(c, i * 100_000 + j) for j in range(per_caller)] for i, c in enumerate(callers)]
    codes: list[int] = []

    async def caller(index: int) -> None:
        for data in work[index]:
            reply = await nets[index].request(
                peer_id_from_pubkey(miner.public_key),
                PROTOCOL,
                data,
                timeout=60,
                max_response_bytes=MAX_RESPONSE_BYTES,
            )
            codes.append(decode(SignedInferenceResponse, reply, MAX_RESPONSE_BYTES).response.code)

    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, hub.add_peer(peer_id_from_pubkey(miner.public_key)))
        started = time.perf_counter()
        async with trio.open_nursery() as callers_nursery:
            for index in range(concurrency):
                callers_nursery.start_soon(caller, index)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    if codes != [Code.OK] * (per_caller * concurrency):
        raise RuntimeError(f"not every request succeeded: {sorted(set(codes))}")
    return per_caller * concurrency / elapsed


async def latency_over(
    network: NetworkAPI, miner: Keypair, miner_peer: str, task: TextTask, k: int
) -> list[float]:
    """Full protocol round trips at concurrency 1 (signing and verifying included), in ms."""
    caller = key("latency-caller")
    samples = []
    for i in range(k):
        request, _ = task.make_challenge(900_000 + i)
        started = time.perf_counter()
        signed = build_request(
            caller,
            chain_id=CHAIN,
            miner=miner_peer,
            netuid=NETUID,
            payload=encode_json_payload(request),
            nonce=os.urandom(16),
            timestamp_ms=int(NOW * 1000),
        )
        data = encode(signed)
        reply = await network.request(
            miner_peer, PROTOCOL, data, timeout=30, max_response_bytes=MAX_RESPONSE_BYTES
        )
        response = verify_response(
            decode_response(reply), chain_id=CHAIN, request_id=request_id_of(data), miner=miner.public_key
        )
        samples.append((time.perf_counter() - started) * 1000)
        if response.code != Code.OK:
            raise RuntimeError(f"request failed: {Code(response.code).name} {response.message}")
    return samples


async def latencies(task: TextTask, model: TextModel, k: int, window_s: float) -> dict[str, float]:
    requests = [task.make_challenge(800_000 + i)[0] for i in range(k)]
    direct = []
    for request in requests:
        started = time.perf_counter()
        model.answer_batch([request])
        direct.append((time.perf_counter() - started) * 1000)

    miner = key("latency-miner")
    config = MinerConfig(batch_window_s=window_s)
    results = {"direct_forward_ms": statistics.median(direct)}

    # In process: the protocol without a transport.
    hub = MemoryHub()
    caller_net = hub.add_peer(peer_id_from_pubkey(key("latency-caller").public_key))
    server = MinerServer(miner, CHAIN, NETUID, model, task, lambda _: 1, bench_clock(), config)
    async with trio.open_nursery() as nursery:
        miner_net = hub.add_peer(peer_id_from_pubkey(miner.public_key))
        await nursery.start(server.run, miner_net)
        results["memnet_ms"] = statistics.median(
            await latency_over(caller_net, miner, miner_net.peer_id, task, k)
        )
        nursery.cancel_scope.cancel()

    # Two libp2p hosts on loopback.
    quiet = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)
    miner_seed = hashlib.sha256(b"bench:latency-miner").digest()
    miner_net2 = LibP2PNetwork(miner_seed, config=quiet)
    server = MinerServer(miner, CHAIN, NETUID, model, task, lambda _: 1, bench_clock(), config)
    async with miner_net2, trio.open_nursery() as nursery:
        await nursery.start(server.run, miner_net2)
        caller_seed = hashlib.sha256(b"bench:latency-caller").digest()
        async with LibP2PNetwork(
            caller_seed, bootstrap=miner_net2.listen_addrs(), config=quiet
        ) as caller_net2:
            await latency_over(caller_net2, miner, miner_net2.peer_id, task, 10)  # warm-up
            results["libp2p_ms"] = statistics.median(
                await latency_over(caller_net2, miner, miner_net2.peer_id, task, k)
            )
        nursery.cancel_scope.cancel()
    return results


async def main_async(args: argparse.Namespace) -> None:
    task = TextTask()
    model = make_model(task)
    task.make_challenge(0)  # load the corpus before timing anything
    print(json.dumps({"torch_threads": torch.get_num_threads(), "model": MODEL_CONFIG.to_dict()}))
    table: dict[tuple[str, int], float] = {}
    for batched in (True, False):
        mode = "batched" if batched else "one at a time"
        for concurrency in args.concurrency:
            runs = [
                await throughput(task, model, concurrency, args.requests, batched)
                for _ in range(args.repeats)
            ]
            table[(mode, concurrency)] = statistics.median(runs)
            print(
                json.dumps(
                    {"mode": mode, "concurrency": concurrency, "requests_per_s": [round(r, 1) for r in runs]}
                )
            )
    lat0 = await latencies(task, model, args.latency_samples, window_s=0.0)
    lat5 = await latencies(task, model, args.latency_samples, window_s=0.005)
    print(json.dumps({"latency_window_0ms": lat0, "latency_window_5ms": lat5}))

    print(f"\nthroughput (requests/s, median of {args.repeats} runs of {args.requests} requests)")
    print("| mode | " + " | ".join(f"c={c}" for c in args.concurrency) + " |")
    for mode in ("batched", "one at a time"):
        print(f"| {mode} | " + " | ".join(f"{table[(mode, c)]:.0f}" for c in args.concurrency) + " |")
    print(f"\nlatency at concurrency 1 (median of {args.latency_samples}, ms)")
    for name, lat in (("window 0 ms", lat0), ("window 5 ms", lat5)):
        print(f"| {name} | " + " | ".join(f"{k} {v:.2f}" for k, v in lat.items()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--latency-samples", type=int, default=200)
    # One intra-op thread: on a small shared machine, torch's thread pool spinning against the
    # trio thread and other processes costs more than it gains for a model this small.
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
