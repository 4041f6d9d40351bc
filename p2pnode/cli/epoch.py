"""`p2pnode epoch ...`: run the chain's epoch function on a case file (epoch spec §11)."""

from __future__ import annotations

import argparse
from typing import Any

from p2pnode.cli.errors import CliError
from p2pnode.epoch_case import EpochCaseError, load_case, render_document, simulate

_COLUMNS = ("uid", "stake", "permit", "active", "consensus", "incentive", "dividends", "trust", "emission")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epoch = subparsers.add_parser("epoch", help="Yuma Consensus epochs")
    sub = epoch.add_subparsers(dest="epoch_command", metavar="COMMAND")
    sim = sub.add_parser(
        "simulate",
        help="run one epoch on a JSON case and print the result",
        description="Run the chain's epoch function on CASE.json (the epoch-case format) and print "
        "the result. Proportions are u16 (65535 = 1); amounts are rao.",
    )
    sim.add_argument("case", metavar="CASE.json", help="the epoch case file")
    sim.add_argument("--json", action="store_true", help="print the result document as JSON")
    sim.set_defaults(func=cmd_simulate)
    epoch.set_defaults(func=lambda _args: _print_help(epoch))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        inp = load_case(args.case)
    except EpochCaseError as exc:
        raise CliError(f"{args.case}: {exc}", code=2) from None
    result = simulate(inp)
    if args.json:
        print(render_document(result), end="")
    else:
        print(render_table(list(inp.stake), result))
    return 0


def render_table(stake: list[int], result: dict[str, Any]) -> str:
    """A readable table, one row per uid, with totals of the rao columns."""
    rows = [_COLUMNS]
    for uid, s in enumerate(stake):
        rows.append(
            (
                str(uid),
                str(s),
                "yes" if result["validator_permits"][uid] else "-",
                "yes" if result["active"][uid] else "-",
                str(result["consensus"][uid]),
                str(result["incentive"][uid]),
                str(result["dividends"][uid]),
                str(result["validator_trust"][uid]),
                str(result["emission"][uid]),
            )
        )
    rows.append(("total", str(sum(stake)), "", "", "", "", "", "", str(sum(result["emission"]))))
    widths = [max(len(r[k]) for r in rows) for k in range(len(_COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(-1, "  ".join("-" * w for w in widths))
    lines.append("consensus, incentive, dividends, trust: u16 proportions (65535 = 1); stake, emission: rao")
    return "\n".join(lines)
