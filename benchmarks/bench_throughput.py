"""A node's CPU per transaction on the way to a block, in one process: what caps tx/s, without the network.

1. Submission over HTTP: the same transfers sent to a node's API one POST /tx at a time and in
   POST /txs batches (`client.post_txs`); the process's CPU (server and client together) and wall.
2. Admission: `ChainService.submit_txs` of a block's worth of transfers (signature checks included).
3. Block building by the proposer from its pool, and import of that block by a second node: with
   the transactions already in its pool (their signatures are not checked again) and without.

From these, one core's capacity: a non-proposing node admits each transaction from gossip and then
imports it in a block; a proposer admits, builds and imports its own block.

    .venv/bin/python benchmarks/bench_throughput.py [--txs 1000] [--repeat 5] [--out docs/benchmarks-throughput.md]

Medians over --repeat runs of CPU time (`time.process_time`, this process). The machine is shared;
its load average is reported with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import publish  # noqa: E402

from p2pnode.chain import consensus  # noqa: E402
from p2pnode.chain.params import GLOBAL_PARAMS  # noqa: E402
from p2pnode.chain.types import Transfer  # noqa: E402
from p2pnode.cli.client import post_bytes, post_txs  # noqa: E402
from p2pnode.services.api.routes import MAX_BATCH_TXS  # noqa: E402
from p2pnode.services.chain.chain_service import ChainService, NodeConfig  # noqa: E402
from p2pnode.services.chain.mempool import MempoolConfig  # noqa: E402
from p2pnode.services.clock import TrioClock  # noqa: E402
from p2pnode.testing.chain_api import serve_chain_api  # noqa: E402
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys  # noqa: E402
from p2pnode.testing.memnet import MemoryHub  # noqa: E402
from protocols import codec  # noqa: E402

SENDERS = 100
POOL = MempoolConfig(max_txs=16_384)


def transfers(count: int, first_nonce: int = 0) -> list[bytes]:
    """`count` encoded transfers from SENDERS accounts, nonces consecutive per sender."""
    keys = user_keys(SENDERS)
    return [codec.encode(signed(keys[k % SENDERS], first_nonce + k // SENDERS, Transfer(to=keys[0].public_key, amount=1)))
            for k in range(count)]


def new_node(directory: Path, name: str, block_txs: int = 0) -> ChainService:
    # A block of more transfers than the default cap needs a genesis that allows it.
    genesis = make_genesis(4, SENDERS, params={"max_block_txs": max(block_txs, GLOBAL_PARAMS["max_block_txs"].default)})
    return ChainService(open_chain(directory / f"{name}.sqlite", genesis), MemoryHub().add_peer(name), TrioClock(),
                        config=NodeConfig(mempool=POOL))


def cpu_of(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - c0, time.perf_counter() - w0, result


async def http_run(directory: Path, datas: list[bytes]) -> dict[str, float]:
    node = new_node(directory, "http")
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        url = await serve_chain_api(nursery, node)
        half = len(datas) // 2
        single, batched = datas[:half], datas[half:]

        def one_by_one() -> None:
            for data in single:
                post_bytes(url, "/tx", data)

        def in_batches() -> None:
            for start in range(0, len(batched), MAX_BATCH_TXS):
                answer = post_txs(url, batched[start:start + MAX_BATCH_TXS])
                assert answer["added"] == len(batched[start:start + MAX_BATCH_TXS]), answer["results"][:3]

        for name, fn, count in (("single", one_by_one, len(single)), ("batch", in_batches, len(batched))):
            c0, w0 = time.process_time(), time.perf_counter()
            await trio.to_thread.run_sync(fn)
            out[f"{name}_cpu_per_tx"] = (time.process_time() - c0) / count
            out[f"{name}_wall_per_tx"] = (time.perf_counter() - w0) / count
        nursery.cancel_scope.cancel()
    assert len(node.mempool) == len(datas)
    return out


async def chain_run(directory: Path, datas: list[bytes]) -> dict[str, float]:
    proposer_node, follower, cold = (new_node(directory, name, len(datas)) for name in ("proposer", "follower", "cold"))
    admit_cpu, _, admissions = cpu_of(lambda: proposer_node.mempool.add_batch(
        datas, proposer_node.chain.head_state(), proposer_node._next_context(), 0))
    assert all(a.added for a in admissions)
    follower.mempool.add_batch(datas, follower.chain.head_state(), follower._next_context(), 0)
    chain = proposer_node.chain
    slot = chain.head.slot + 1
    hots = {hot.public_key: hot for _, hot in validator_keys(4)}
    key = hots[consensus.proposer_for_slot(chain.head_state(), slot)]
    build_cpu, _, block = cpu_of(lambda: chain.build_block(key, slot, proposer_node.mempool.candidates(
        chain.head_state(), chain.head_state().param("max_block_txs"))))
    assert len(block.txs) == len(datas)
    print(f"block of {len(datas)} transfers: {len(codec.encode(block))} bytes encoded", flush=True)
    own_cpu, _, _ = cpu_of(lambda: chain.import_block(block, signatures_checked=True))
    pooled_cpu, _, _ = cpu_of(lambda: follower.chain.import_block(block))
    cold_cpu, _, _ = cpu_of(lambda: cold.chain.import_block(block))
    assert follower.chain.head.hash == cold.chain.head.hash == block.hash
    n = len(datas)
    return {"admit_per_tx": admit_cpu / n, "build_per_tx": build_cpu / n, "own_import_per_tx": own_cpu / n,
            "pooled_import_per_tx": pooled_cpu / n, "cold_import_per_tx": cold_cpu / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=1000, help="transfers per block (at most max_block_txs)")
    parser.add_argument("--http-txs", type=int, default=1000, help="transfers sent over HTTP (half each way)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    chain_runs, http_runs = [], []
    datas = transfers(args.txs)
    http_datas = transfers(args.http_txs)
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            chain_runs.append(trio.run(chain_run, Path(directory), datas))
            http_runs.append(trio.run(http_run, Path(directory), http_datas))
        print(f"run {run}: " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in (chain_runs[-1] | http_runs[-1]).items()),
              flush=True)
    med = {k: statistics.median(r[k] for r in chain_runs) for k in chain_runs[0]}
    med |= {k: statistics.median(r[k] for r in http_runs) for k in http_runs[0]}
    follower_per_tx = med["admit_per_tx"] + med["pooled_import_per_tx"]
    proposer_per_tx = med["admit_per_tx"] + med["build_per_tx"] + med["own_import_per_tx"]
    us = {k: f"{v * 1e6:.0f}" for k, v in med.items()}
    lines = [
        "# Throughput benchmark (one node's CPU per transaction)", "",
        f"Produced by `benchmarks/bench_throughput.py --txs {args.txs} --repeat {args.repeat}`; medians of CPU time "
        f"(this process) per transfer, in microseconds. Load average {load_before:.1f} when it started (2 shared "
        "cores), so wall times are inflated; CPU times are the steadier figure.", "",
        "| step | CPU per tx (µs) |", "| --- | --- |",
        f"| admission of a {args.txs}-transfer batch (`Mempool.add_batch`: checks, signature, trial apply) | {us['admit_per_tx']} |",
        f"| block building from the pool | {us['build_per_tx']} |",
        f"| import of the proposer's own block | {us['own_import_per_tx']} |",
        f"| import by a node that pooled the transactions (signatures not checked again) | {us['pooled_import_per_tx']} |",
        f"| import by a node that did not (every signature checked) | {us['cold_import_per_tx']} |",
        "",
        f"One core's capacity from these: a follower (admit + import) {1 / follower_per_tx:.0f} tx/s, a proposer "
        f"(admit + build + import) {1 / proposer_per_tx:.0f} tx/s.", "",
        f"Submission over HTTP, {args.http_txs // 2} transfers each way, process CPU (server and client) and wall per "
        "transfer:", "",
        "| submission | CPU per tx (µs) | wall per tx (µs) |", "| --- | --- | --- |",
        f"| POST /tx, one at a time | {us['single_cpu_per_tx']} | {us['single_wall_per_tx']} |",
        f"| POST /txs, batches of up to {MAX_BATCH_TXS} | {us['batch_cpu_per_tx']} | {us['batch_wall_per_tx']} |",
        "",
        "Not counted here: gossip. A network-wide gossip message costs each peer milliseconds of CPU "
        "(benchmarks-net.md), far more than the chain's own work per transaction above, so transactions "
        "admitted together now travel together (`txbatch` messages of up to 64); not measured in this round. "
        "`benchmarks/bench_network.py` measures submission to finality across 4 peer processes, now with "
        "POST /txs batches from 32 funded accounts.",
        "",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
