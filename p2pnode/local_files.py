"""Reading the local files an operator names (genesis files, epoch cases): bounded, regular files
only, and JSON parsed so that every failure is one named error.

A path may name anything: a FIFO (opening it for reading would wait for a writer forever), a
device, a directory, a multi-gigabyte log. `read_regular_file` opens without blocking, checks the
open descriptor is a regular file and reads at most `max_bytes + 1` bytes. `parse_json` decodes
UTF-8 strictly and refuses what Python's json module would otherwise raise assorted errors for:
numbers of more than `MAX_NUMBER_DIGITS` digits, NaN and Infinity, duplicate keys and nesting
deeper than `MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

# u64 needs 20 digits; anything much longer is not a number any of our files holds.
MAX_NUMBER_DIGITS = 40
MAX_JSON_DEPTH = 64


class LocalFileError(ValueError):
    """A local file cannot be read or is not the JSON it should be; the message says why in one line."""


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes`; raises LocalFileError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise LocalFileError(f"{path} is not a regular file")
        if status.st_size > max_bytes:
            raise LocalFileError(f"{path} is larger than {max_bytes} bytes")
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # the file grew while it was read
        raise LocalFileError(f"{path} is larger than {max_bytes} bytes")
    return data


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS + 1:  # + 1 for a sign
        raise LocalFileError(f"a number of {len(text)} characters; at most {MAX_NUMBER_DIGITS} digits are allowed")
    return int(text)


def _no_constant(name: str) -> Any:
    raise LocalFileError(f"{name} is not a number here")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise LocalFileError(f"duplicate key {duplicate!r}")
    return doc


def _check_depth(doc: Any) -> None:
    # Iterative, so a deep document cannot exhaust the stack here either.
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if type(value) is dict:
            children: Any = value.values()
        elif type(value) is list:
            children = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise LocalFileError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def parse_json(
    data: bytes | str,
    *,
    parse_float: Callable[[str], Any] | None = None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Parse a JSON document strictly; raises LocalFileError (or what the hooks raise)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LocalFileError(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    try:
        doc = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=parse_float,
            parse_constant=_no_constant,
            object_pairs_hook=object_pairs_hook or _no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise LocalFileError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise LocalFileError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    _check_depth(doc)
    return doc
