"""The `p2pnode` command line: `main` parses and runs a command; one module per command group."""

from p2pnode.cli.errors import CliError
from p2pnode.cli.main import main

__all__ = ["CliError", "main"]
