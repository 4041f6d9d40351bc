"""The one error type of CLI commands."""

from __future__ import annotations


class CliError(Exception):
    """An expected failure of a command: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
