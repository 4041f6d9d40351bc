"""Chain benchmarks: the 16-node simulator, import speed when syncing from a peer, finality delay.

1. Simulator: N full ChainNodes (SQLite stores, producer, votes, sync) for S slots of virtual time
   under MockClock; wall time and CPU time (this process) per run.
2. Sync import: a peer's chain of B blocks with T transfers each is served through the real
   blocks_by_range handler and decoded, verified (all signatures) and imported on a fresh store,
   as `SyncService` does; blocks/s and tx/s, with the share spent verifying signatures.
3. Finality delay: in the simulator run, slots between a checkpoint's slot and the slot at which
   node 0 saw it finalized.

    .venv/bin/python benchmarks/bench_chain.py [--nodes 16] [--slots 1000] [--blocks 200] [--txs 100]
                                               [--repeat 3] [--out docs/benchmarks-chain.md]

Medians over --repeat runs. The machine is shared: CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import publish  # noqa: E402

from p2pnode.chain import consensus  # noqa: E402
from p2pnode.chain.types import Block, Transfer  # noqa: E402
from p2pnode.services.chain.block_tree import BlockTree  # noqa: E402
from p2pnode.services.chain.signature_helper import SignatureHelper, usable_cores  # noqa: E402
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys  # noqa: E402
from p2pnode.testing.sim import Simulation  # noqa: E402
from protocols import codec, sync  # noqa: E402
from protocols.validation import check_block_signatures  # noqa: E402


def bench_simulator(nodes: int, slots: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        sim = Simulation(Path(directory), nodes=nodes, seed=seed)
        first_seen: dict[bytes, int] = {}

        def observe(slot: int) -> None:
            node = sim.nodes[0].node
            cp = None if node is None else node.finalized
            if cp is not None and cp.hash not in first_seen:
                first_seen[cp.hash] = slot

        async def scenario(sim: Simulation) -> dict[str, Any]:
            await sim.run_until_slot(slots, every_slot=observe)
            node = sim.nodes[0].node
            assert node is not None
            heads = {n.chain.head.hash for n in sim.up()}
            delays = []
            for block_hash, seen_slot in first_seen.items():
                header = node.chain.store.header(block_hash)
                if header is not None and header.height > 0:
                    delays.append(seen_slot - header.slot)
            return {
                "head_height": node.head.height,
                "finalized_height": node.finalized.height if node.finalized else 0,
                "agree": len(heads) == 1,
                "delays": delays,
                "messages": sim.net.messages_delivered,
            }

        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = sim.run(scenario)
        result["wall_s"] = time.perf_counter() - wall0
        result["cpu_s"] = time.process_time() - cpu0
        return result


def build_source_chain(directory: Path, blocks: int, txs_per_block: int) -> BlockTree:
    genesis = make_genesis(4, txs_per_block)
    source = open_chain(directory / "source.sqlite", genesis)
    hots = {hot.public_key: hot for _, hot in validator_keys(4)}
    users = user_keys(txs_per_block)
    target = users[0].public_key
    for height in range(1, blocks + 1):
        slot = height
        txs = [signed(user, height - 1, Transfer(to=target, amount=1)) for user in users]
        proposer = consensus.proposer_for_slot(source.head_state(), slot)
        source.import_block(source.build_block(hots[proposer], slot, txs), signatures_checked=True)
    return source


def _helper_cpu_s(helper: SignatureHelper | None) -> float:
    pid = None if helper is None else helper.pid
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def bench_sync_import(source: BlockTree, directory: Path, run: int, blocks: int, txs_per_block: int,
                      helper: SignatureHelper | None = None) -> dict[str, float]:
    """Import as range sync does: each batch is decoded and announced to the chain (`expect_blocks`),
    then every block is imported with all its signatures checked (by the helper process, ahead,
    when there is one)."""
    genesis = make_genesis(4, txs_per_block)
    target = open_chain(directory / f"target-{run}.sqlite", genesis)
    target.signature_helper = helper
    # The serving peer's work (reading and framing ranges) is not part of the importer's speed.
    responses = []
    for start in range(1, blocks + 1, sync.MAX_BLOCKS_PER_REQUEST):
        request = sync.encode_range_request(start, sync.MAX_BLOCKS_PER_REQUEST)
        responses.append(sync.handle_blocks_by_range(request, source.store.canonical_range_bytes))
    verify_s = 0.0
    helper_cpu0 = _helper_cpu_s(helper)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for response in responses:
        batch = [codec.decode(Block, data, max_bytes=sync.MAX_BLOCK_BYTES)
                 for data in sync.decode_range_response(response, sync.MAX_BLOCKS_PER_REQUEST)]
        target.expect_blocks(batch)
        for block in batch:
            if helper is None:
                v0 = time.perf_counter()
                check_block_signatures(block)
                verify_s += time.perf_counter() - v0
                target.import_block(block, signatures_checked=True)
            else:
                target.import_block(block)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    helper_cpu = _helper_cpu_s(helper) - helper_cpu0
    assert target.head.hash == source.head.hash
    target.store.close()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "blocks_per_s": blocks / wall,
        "blocks_per_cpu_s": blocks / cpu,
        "blocks_per_total_cpu_s": blocks / (cpu + helper_cpu),
        "tx_per_s": blocks * txs_per_block / wall,
        "verify_share": verify_s / wall,
        "helper_verdicts": 0 if helper is None else helper.verdicts_used,
    }


def start_helper() -> SignatureHelper:
    """A signature helper process, started and ready (a node starts it once, at its first sync)."""
    helper = SignatureHelper()
    if not helper.wait_until_ready(60):
        raise RuntimeError("the signature helper did not start")
    return helper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--slots", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--helper", choices=("auto", "on", "off"), default="auto",
                        help="check signatures in a helper process (auto: where there is more than one core)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "",
    ]
    if not args.skip_sim:
        sims = [bench_simulator(args.nodes, args.slots, seed) for seed in range(1, args.repeat + 1)]
        for index, r in enumerate(sims, 1):
            print(
                f"sim seed {index}: wall {r['wall_s']:.1f}s cpu {r['cpu_s']:.1f}s head {r['head_height']} "
                f"finalized {r['finalized_height']} agree {r['agree']} messages {r['messages']}"
            )
        delays = [d for r in sims for d in r["delays"]]
        lines += [
            f"## Simulator: {args.nodes} nodes x {args.slots} slots (median of {len(sims)} seeds)",
            "",
            "| wall s | CPU s | head height | finalized height | all heads equal | gossip deliveries |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {statistics.median(r['wall_s'] for r in sims):.1f} | {statistics.median(r['cpu_s'] for r in sims):.1f} "
            f"| {statistics.median(r['head_height'] for r in sims):.0f} "
            f"| {statistics.median(r['finalized_height'] for r in sims):.0f} "
            f"| {all(r['agree'] for r in sims)} | {statistics.median(r['messages'] for r in sims):.0f} |",
            "",
            "## Finality delay (slots from a checkpoint's slot to node 0 seeing it finalized)",
            "",
            f"median {statistics.median(delays):.0f}, min {min(delays)}, max {max(delays)}, "
            f"over {len(delays)} checkpoints",
            "",
        ]
    with tempfile.TemporaryDirectory() as directory:
        b0 = time.perf_counter()
        source = build_source_chain(Path(directory), args.blocks, args.txs)
        print(f"built {args.blocks} blocks x {args.txs} txs in {time.perf_counter() - b0:.1f}s")
        use_helper = args.helper == "on" or (args.helper == "auto" and usable_cores() > 1)
        helper = start_helper() if use_helper else None
        try:
            runs = [bench_sync_import(source, Path(directory), run, args.blocks, args.txs, helper)
                    for run in range(args.repeat)]
        finally:
            if helper is not None:
                helper.close()
        for r in runs:
            print(
                f"sync import: {r['blocks_per_s']:.0f} blocks/s ({r['blocks_per_cpu_s']:.0f}/CPU s of the importer, "
                f"{r['blocks_per_total_cpu_s']:.0f}/CPU s with the helper's), {r['tx_per_s']:.0f} tx/s, "
                f"verify share {r['verify_share']:.0%}, helper verdicts {r['helper_verdicts']}"
            )
        where = "signatures in a helper process" if helper is not None else "signatures checked in-process"
        lines += [
            f"## Sync import: {args.blocks} blocks x {args.txs} transfers, via blocks_by_range, {where} "
            f"(median of {len(runs)}, {usable_cores()} cores)",
            "",
            "| blocks/s (wall) | blocks per CPU s (importer) | blocks per CPU s (importer + helper) | tx/s (wall) "
            "| share verifying signatures in-process |",
            "| --- | --- | --- | --- | --- |",
            f"| {statistics.median(r['blocks_per_s'] for r in runs):.0f} "
            f"| {statistics.median(r['blocks_per_cpu_s'] for r in runs):.0f} "
            f"| {statistics.median(r['blocks_per_total_cpu_s'] for r in runs):.0f} "
            f"| {statistics.median(r['tx_per_s'] for r in runs):.0f} "
            f"| {statistics.median(r['verify_share'] for r in runs):.0%} |",
            "",
        ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
