"""The `p2pnode` command line: the composition root for every command.

Each command group lives in its own module exposing ``register(subparsers)``; each registered
sub-command sets ``func(args) -> int``. Every expected failure is a ``CliError`` (one line on stderr,
non-zero exit); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command-group modules, each with `register(subparsers)`. Missing ones are skipped so that the
# CLI still works while a group is being developed.
COMMAND_MODULES = (
    "p2pnode.cli_keys",
    "p2pnode.cli_epoch",
    "p2pnode.cli_node",
    "p2pnode.cli_testnet",
    "p2pnode.cli_gov",
    "p2pnode.cli_market",
    "p2pnode.cli_chain",
)


class CliError(Exception):
    """An expected failure of a command: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pnode", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
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


if __name__ == "__main__":
    # Run through the importable module so that CliError is the same class the commands raise.
    from p2pnode.cli import main as _main

    sys.exit(_main())
