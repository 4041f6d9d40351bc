"""Internet scale by simulation: 16 → 1,000 nodes on the link model (`p2pnode.testing.netmodel`).

Each size runs in one trio run on virtual time (`p2pnode.testing.simscale.run_scale`): `validators`
full validating `ChainService` nodes (all nodes when the size is smaller) plus relay followers, on
a gossip mesh of degree `--degree`, with log-normal per-pair latency (RTT median 40 ms) and per-node
uplinks of 1–12.5 MB/s. Per size: finality delay (slots from a block to the slot it was first seen
finalized at node 0), block propagation p50 / p95 / max over every (block, receiving node) in
virtual ms, gossip bytes sent per node per block, and the wall time. Each size is time-boxed
(`--budget-s`): a size that runs out of time reports the slots it reached.

    python benchmarks/bench_sim_scale.py --sizes 16,64,256,1000 [--slots 40] [--validators 64]
        [--budget-s 300] [--out docs/benchmarks-sim.md] [--images docs/images]

Writes the JSON rows to stdout, and with --out a markdown table plus SVG plots (hand-written
polylines) under --images.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("P2PNODE_KDF", "fast")

from p2pnode.testing.simscale import GossipOnlyResult, ScaleResult, run_gossip_only, run_scale  # noqa: E402

PLOT_W, PLOT_H, MARGIN = 520, 300, 60


def svg_plot(title: str, y_label: str, sizes: list[int], series: dict[str, list[float]]) -> str:
    """A line plot against network size (log scale), one polyline per series."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    finite = [v for values in series.values() for v in values if not math.isnan(v)]
    y_max = max(finite, default=1.0) * 1.15 or 1.0
    x_lo, x_hi = math.log(min(sizes)), math.log(max(sizes))
    span = (x_hi - x_lo) or 1.0

    def x(size: int) -> float:
        return MARGIN + (math.log(size) - x_lo) / span * (PLOT_W - 2 * MARGIN)

    def y(value: float) -> float:
        return PLOT_H - MARGIN + -value / y_max * (PLOT_H - 2 * MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_W}" height="{PLOT_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{PLOT_W}" height="{PLOT_H}" fill="white"/>',
        f'<text x="{PLOT_W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{MARGIN}" y1="{PLOT_H - MARGIN}" x2="{PLOT_W - MARGIN}" y2="{PLOT_H - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{PLOT_H - MARGIN}" stroke="black"/>',
        f'<text x="{PLOT_W / 2}" y="{PLOT_H - 15}" text-anchor="middle">nodes (log scale)</text>',
        f'<text x="15" y="{PLOT_H / 2}" text-anchor="middle" transform="rotate(-90 15 {PLOT_H / 2})">{y_label}</text>',
    ]
    for size in sizes:
        parts.append(f'<text x="{x(size):.1f}" y="{PLOT_H - MARGIN + 16}" text-anchor="middle">{size}</text>')
    for k in range(5):
        value = y_max * k / 4
        parts.append(f'<text x="{MARGIN - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
        parts.append(
            f'<line x1="{MARGIN}" y1="{y(value):.1f}" x2="{PLOT_W - MARGIN}" y2="{y(value):.1f}" stroke="#ddd"/>'
        )
    for index, (name, values) in enumerate(series.items()):
        colour = colours[index % len(colours)]
        points = [(x(s), y(v)) for s, v in zip(sizes, values, strict=True) if not math.isnan(v)]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
            + " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            + '"/>'
        )
        parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points)
        parts.append(
            f'<text x="{PLOT_W - MARGIN + 4}" y="{MARGIN + 16 * index}" fill="{colour}">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def markdown_table(results: list[ScaleResult]) -> str:
    lines = [
        "| nodes | validators (active) | slots run | wall s (CPU s) | canonical blocks | finalized height | finality delay (slots) "
        "| block propagation p50 / p95 / max (ms) | reached every node | gossip bytes per node per block (blocks only) | mean degree |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.nodes} | {r.validators} ({r.active_validators}) | {r.slots} | {r.wall_s:.1f} ({r.cpu_s:.1f}) | {r.blocks} | {r.finalized_height} "
            f"| {r.finality_delay_slots:g} | {r.block_p50_ms:.1f} / {r.block_p95_ms:.1f} / {r.block_max_ms:.1f} "
            f"| {'yes' if r.reached_all else 'no'} | {r.bytes_per_node_per_block:,.0f} ({r.block_bytes_per_node_per_block:,.0f}) "
            f"| {r.mean_degree:.2f} |"
        )
    return "\n".join(lines) + "\n"


# The plots of a scale run: (file, title, unit, {series label: ScaleResult field}).
SCALE_PLOTS = [
    ("sim-scale-propagation.svg", "Block propagation (virtual ms)", "ms",
     {"p50": "block_p50_ms", "p95": "block_p95_ms", "max": "block_max_ms"}),
    ("sim-scale-finality.svg", "Finality delay (slots, median)", "slots", {"delay": "finality_delay_slots"}),
    ("sim-scale-bytes.svg", "Gossip bytes sent per node per block", "bytes",
     {"all gossip": "bytes_per_node_per_block", "blocks only": "block_bytes_per_node_per_block"}),
    ("sim-scale-wall.svg", "Wall and CPU time of the run (s)", "s", {"wall": "wall_s", "CPU": "cpu_s"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="16,64,256,1000")
    parser.add_argument("--slots", type=int, default=40, help="slots per size (epochs are 8 slots)")
    parser.add_argument(
        "--validators", type=int, default=64, help="validating full nodes (capped at the size)"
    )
    parser.add_argument(
        "--max-block-validators", type=int, default=16, help="active set: validators that propose and vote"
    )
    parser.add_argument("--degree", type=int, default=8, help="gossip mesh degree")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall-clock time box per size")
    parser.add_argument(
        "--payloads", default="1024,65536,262144,1048576", help="block sizes for the gossip-only runs (bytes)"
    )
    parser.add_argument("--out", type=Path, help="write the markdown table here (and plots to --images)")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"simscale-{size}-") as directory:
            result = run_scale(
                Path(directory),
                nodes=size,
                validators=min(size, args.validators),
                slots=args.slots,
                seed=args.seed,
                degree=args.degree,
                wall_budget_s=args.budget_s,
                genesis_params={"max_block_validators": args.max_block_validators},
            )
        results.append(result)
        print(json.dumps(result.row()), flush=True)

    payloads = [int(p) for p in args.payloads.split(",")] if args.payloads else []
    gossip: list[GossipOnlyResult] = []
    for size in sizes:
        for payload in payloads:
            g = run_gossip_only(size, payload, seed=args.seed, degree=args.degree)
            gossip.append(g)
            print(
                json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in g.__dict__.items()})
            )

    if args.out is None:
        return
    args.images.mkdir(parents=True, exist_ok=True)
    plots = {
        name: svg_plot(title, unit, sizes, {label: [getattr(r, field) for r in results] for label, field in series.items()})
        for name, title, unit, series in SCALE_PLOTS
    }
    if payloads:
        plots["sim-scale-payload.svg"] = svg_plot(
            "Gossip-only: p95 to every node by block size (ms)",
            "ms",
            sizes,
            {
                f"{payload // 1024} KiB": [
                    next(g.p95_ms for g in gossip if g.nodes == s and g.payload_bytes == payload)
                    for s in sizes
                ]
                for payload in payloads
            },
        )
    for name, svg in plots.items():
        (args.images / name).write_text(svg)
    header = (
        f"Run: `python benchmarks/bench_sim_scale.py --sizes {args.sizes} --slots {args.slots} "
        f"--validators {args.validators} --max-block-validators {args.max_block_validators} --degree {args.degree} --seed {args.seed} --budget-s {args.budget_s:g}` "
        f"(Python {platform.python_version()}).\n\n"
    )
    gossip_table = [
        "",
        "| nodes | block bytes | p50 / p95 / max to every node (ms) | reached | bytes sent per node |",
        "| --- | --- | --- | --- | --- |",
    ]
    gossip_table += [
        f"| {g.nodes} | {g.payload_bytes:,} | {g.p50_ms:.0f} / {g.p95_ms:.0f} / {g.max_ms:.0f} | {g.reached} "
        f"| {g.bytes_per_node:,.0f} |"
        for g in gossip
    ]
    args.out.write_text(header + markdown_table(results) + "\n".join(gossip_table) + "\n")


if __name__ == "__main__":
    main()
