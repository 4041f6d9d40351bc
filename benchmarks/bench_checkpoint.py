"""Checkpoint sync benchmark: a fresh store joins a chain with many accounts at its finalized checkpoint.

A chain with --accounts funded accounts (genesis balances) and 4 block validators runs until a few
checkpoints are finalized; a fresh store then joins through the real `CheckpointSync` against
`StateChunkServer` over an in-process transport (every message encoded and decoded as on the wire,
no libp2p), and imports the blocks from the checkpoint to the head. Reported: the joiner's start-up
(its genesis: built and hashed in full, as a peer does without a pin, and from the genesis file's
pinned state root, which the join then uses), wall time of the join (status, checkpoint block,
validator-set walk, state chunks, root check, install), of following to the head, the state size,
and the share of the join spent hashing state items into the root (wall time; CPU time of the
process too, steadier on a shared machine). Server and joiner share this one process.

    .venv/bin/python benchmarks/bench_checkpoint.py [--accounts 100000] [--blocks 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2pnode.chain import accumulator  # noqa: E402
from p2pnode.chain.genesis import build_genesis_pinned  # noqa: E402
from p2pnode.chain.params import TAO  # noqa: E402
from p2pnode.services.chain.block_tree import BlockTree  # noqa: E402
from p2pnode.services.chain.checkpoint import CheckpointConfig, CheckpointSync  # noqa: E402
from p2pnode.services.chain.vset_walk import ValidatorSetHistory  # noqa: E402
from p2pnode.store.sqlite_store import Store  # noqa: E402
from p2pnode.testing.checkpoint_net import GENESIS_CHAIN_ID, LoopbackNetwork, run_chain, status_of  # noqa: E402
from p2pnode.testing.factories import make_genesis, open_chain  # noqa: E402


def one_run(accounts: int, blocks: int, directory: Path) -> dict[str, float]:
    extra = tuple((i.to_bytes(4, "big") * 8, TAO) for i in range(1, accounts + 1))
    genesis = make_genesis(4, 4, extra_balances=extra)
    built = time.perf_counter()
    served = open_chain(directory / "served.sqlite", genesis)
    ValidatorSetHistory(served)  # a node's chunk server keeps the walk from the start
    run_chain(served, blocks)
    assert served.finalized is not None
    built = time.perf_counter() - built
    network = LoopbackNetwork()
    network.add("server", served)
    # The joiner's start-up: its genesis in full (for comparison), then from the pinned root.
    start, cpu = time.perf_counter(), time.process_time()
    full = open_chain(directory / "full.sqlite", genesis)
    full_s, full_cpu = time.perf_counter() - start, time.process_time() - cpu
    pinned = dataclasses.replace(genesis, state_root=full.head.state_root)
    full.store.close()
    start, cpu = time.perf_counter(), time.process_time()
    store = Store(directory / "fresh.sqlite")
    reader, header = build_genesis_pinned(pinned)
    store.initialise(header, reader, None)
    fresh = BlockTree(store)
    pinned_s, pinned_cpu = time.perf_counter() - start, time.process_time() - cpu
    join = CheckpointSync(
        store=fresh.store, network=network, clock=network.clock, chain_id=GENESIS_CHAIN_ID,  # type: ignore[arg-type]
        genesis_hash=fresh.store.genesis_hash, local_status=status_of(fresh),
        trusted_stake={v.hotkey: v.stake for v in genesis.validators},
        config=CheckpointConfig(peer_wait_s=1, settle_s=0))
    hashing = [0.0]
    original = accumulator.element_hash

    def timed_hash(key: bytes, value: bytes) -> int:
        t = time.perf_counter()
        try:
            return original(key, value)
        finally:
            hashing[0] += time.perf_counter() - t

    accumulator.element_hash = timed_hash  # type: ignore[assignment]
    try:
        start, cpu = time.perf_counter(), time.process_time()
        report = trio.run(join.join)
        joined, joined_cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        accumulator.element_hash = original  # type: ignore[assignment]
    start = time.perf_counter()
    chain = BlockTree(fresh.store)
    for height in range(report.checkpoint.height + 1, served.head.height + 1):
        block = served.store.canonical_block(height)
        assert block is not None
        chain.import_block(block)
    assert chain.head.hash == served.head.hash
    followed = time.perf_counter() - start
    follow_blocks = served.head.height - report.checkpoint.height
    served.store.close()
    fresh.store.close()
    return {"build_s": built, "startup_full_s": full_s, "startup_full_cpu_s": full_cpu, "startup_s": pinned_s,
            "startup_cpu_s": pinned_cpu, "walk_steps": report.walk_steps, "join_s": joined, "join_cpu_s": joined_cpu, "hash_s": hashing[0], "follow_s": followed,
            "items": report.items, "checkpoint": report.checkpoint.height,
            "follow_blocks": follow_blocks,
            "db_mb": (directory / "fresh.sqlite").stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            runs.append(one_run(args.accounts, args.blocks, Path(directory)))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in runs[-1].items()}, flush=True)
    print(f"accounts {args.accounts}: state items {runs[0]['items']}, checkpoint height {runs[0]['checkpoint']}; "
          f"median join {statistics.median(r['join_s'] for r in runs):.2f} s wall, "
          f"{statistics.median(r['join_cpu_s'] for r in runs):.2f} s CPU "
          f"(hashing items into the root {statistics.median(r['hash_s'] for r in runs):.2f} s), "
          f"follow {runs[0]['follow_blocks']} blocks {statistics.median(r['follow_s'] for r in runs):.2f} s; "
          f"start-up {statistics.median(r['startup_s'] for r in runs):.2f} s wall, "
          f"{statistics.median(r['startup_cpu_s'] for r in runs):.2f} s CPU with the pinned root "
          f"(hashing the genesis: {statistics.median(r['startup_full_s'] for r in runs):.2f} s wall, "
          f"{statistics.median(r['startup_full_cpu_s'] for r in runs):.2f} s CPU); walk {runs[0]['walk_steps']} steps; "
          f"start -> following {statistics.median(r['startup_s'] + r['join_s'] + r['follow_s'] for r in runs):.2f} s")


if __name__ == "__main__":
    main()
