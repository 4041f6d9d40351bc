"""Foundation benchmarks: transaction admission, block import, and state-root cost vs state size.

Run: .venv/bin/python benchmarks/bench_foundation.py [--quick]   (writes docs/benchmarks-foundation.md)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import publish

from p2pnode.chain import accumulator, consensus
from p2pnode.chain.encoding import encode
from p2pnode.chain.state import State
from p2pnode.chain.transition import context_for, validate_tx
from p2pnode.chain.types import Block, SignedTx, Transfer
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys
from protocols import codec
from protocols.validation import check_tx_signatures

ROOT = Path(__file__).resolve().parent.parent
USERS = user_keys(4)
HOTS = {hot.public_key: hot for _, hot in validator_keys(4)}


def transfers(db: BlockTree, count: int) -> list[SignedTx]:
    state = db.head_state()
    out = []
    per_sender = count // len(USERS) + 1
    for s_index, sender in enumerate(USERS):
        nonce = state.nonce(sender.public_key)
        for i in range(per_sender):
            if len(out) == count:
                break
            out.append(signed(sender, nonce + i, Transfer(to=USERS[(s_index + 1) % 4].public_key, amount=1 + i)))
    return out


def bench_admission(db: BlockTree, rounds: int) -> float:
    """Transactions per second for decode + verify signature + validate against the head state."""
    txs = [codec.encode(t) for t in transfers(db, 2000)]
    state = db.head_state()
    slot = db.head.slot + 1
    block = db.build_block(HOTS[consensus.proposer_for_slot(state, slot)], slot, [])
    ctx = context_for(block)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for raw in txs[:1000]:
            stx = codec.decode(SignedTx, raw)
            check_tx_signatures(stx)
            try:
                validate_tx(state, stx.tx, ctx)
            except Exception:
                pass  # later nonces of one sender are "future" against the head: still fully checked
        rates.append(1000 / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_import(rounds: int) -> float:
    """Seconds to import (decode, verify, apply, commit) one block of 1,000 transfers."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        db = open_chain(Path(tmp) / "bench.sqlite", make_genesis(4, 4))
        for _ in range(rounds):
            state = db.head_state()
            slot = db.head.slot + 1
            block = db.build_block(HOTS[consensus.proposer_for_slot(state, slot)], slot, transfers(db, 1000))
            raw = codec.encode(block)
            start = time.perf_counter()
            db.import_block(codec.decode(Block, raw, max_bytes=1 << 24))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_root(n_accounts: int, rounds: int) -> float:
    """Seconds to update the state root after a block of 1,000 transfers, over n accounts of state."""
    with tempfile.TemporaryDirectory() as tmp:
        db = open_chain(Path(tmp) / "root.sqlite", make_genesis(4, 4))
        rows = [(i.to_bytes(32, "big"), encode([1_000 + i, 0])) for i in range(n_accounts)]
        acc = db.store.head_accumulator()
        for pub, value in rows:
            acc = accumulator.add(acc, accumulator.element_hash(b"A" + pub, value))
        with db.store.transaction():
            db.store._db.executemany("INSERT INTO state(key, value) VALUES (?, ?)", ((b"A" + p, v) for p, v in rows))
            db.store.set_meta("acc", accumulator.to_bytes(acc))
        times = []
        for r in range(rounds):
            state = db.head_state()
            slot = db.head.slot + 1
            # 1,000 transfers to 1,000 distinct existing accounts: about 1,000 changed keys per block.
            nonces = {u.public_key: state.nonce(u.public_key) for u in USERS}
            txs = []
            for i in range(1000):
                sender = USERS[i % 4]
                txs.append(signed(sender, nonces[sender.public_key] + i // 4,
                                  Transfer(to=rows[(r * 1000 + i) % n_accounts][0], amount=1)))
            block = db.build_block(HOTS[consensus.proposer_for_slot(state, slot)], slot, txs)
            state = State(db.store, db.store.head_accumulator())
            from p2pnode.chain.transition import apply_block_body

            apply_block_body(state, block)
            start = time.perf_counter()
            acc = state.accumulator()
            accumulator.digest(acc)
            times.append(time.perf_counter() - start)
            db.store.commit_block(block, state.changes(), acc)
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds and 100k instead of 1M accounts")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    big = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        db = open_chain(Path(tmp) / "adm.sqlite", make_genesis(4, 4))
        admission = bench_admission(db, rounds)
    imp = bench_import(rounds)
    root_small = bench_root(10_000, rounds)
    root_big = bench_root(big, rounds)
    lines = [
        "# Foundation benchmarks",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {rounds} rounds;"
        " shared, noisy machine.",
        "",
        "| measure | result | target |",
        "| --- | --- | --- |",
        f"| tx admission (decode + ed25519 verify + validate), one core | {admission:,.0f} tx/s | >= 5,000 tx/s |",
        f"| import of a block of 1,000 transfers incl. SQLite commit | {imp * 1000:.0f} ms | <= 300 ms |",
        f"| state-root update after a block changing ~1,000 accounts, 10,000 accounts in state | {root_small * 1000:.1f} ms | same as below |",
        f"| state-root update after a block changing ~1,000 accounts, {big:,} accounts in state | {root_big * 1000:.1f} ms | ratio {root_big / root_small:.2f} |",
        "",
    ]
    publish(lines, ROOT / "docs" / "benchmarks-foundation.md")


if __name__ == "__main__":
    main()
