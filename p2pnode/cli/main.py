"""The `p2pnode` command line: the parser of every command group, and the one place errors are printed.

Each command group module exposes ``register(subparsers)``; each registered sub-command sets
``func(args) -> int``. Every expected failure is a ``CliError`` (one line on stderr, non-zero exit);
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from p2pnode.cli import chain, doctor, epoch, explain, gov, keys, market, node, testnet, wallet, watch
from p2pnode.cli.errors import CliError

COMMAND_GROUPS = (keys, epoch, node, testnet, gov, market, chain, explain, doctor, watch, wallet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pnode", description="p2pnode: a peer of the p2pnode network")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"p2pnode: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
