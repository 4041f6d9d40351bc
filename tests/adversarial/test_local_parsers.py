"""Issue 13 item 14, local parsers: epoch-case files, genesis files and key files give a named
error for anything they hold, and the CLI prints it on one line.

At c068d92 these escaped as UnicodeDecodeError, ValueError (5,000-digit numbers, 2^64 balances)
and RecursionError; a genesis whose chain id or time could not be signed was accepted; and a FIFO
in place of a key or genesis file hung the reader until something wrote to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from p2pnode.chain.genesis import GenesisError, build_genesis_state
from p2pnode.cli.testnet import make_genesis
from p2pnode.epoch_case import EpochCaseError, load_case, loads_case
from p2pnode.genesis_file import load_genesis
from p2pnode.keys import KeyStore, KeyStoreError

CASE = Path(__file__).resolve().parents[2] / "testnet" / "epoch-cases" / "ten-uids-self-weights-fallback.json"


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def case_with(key: str, raw_value: str) -> bytes:
    doc = json.loads(CASE.read_text())
    doc[key] = "@@"
    return json.dumps(doc).replace('"@@"', raw_value).encode()


@pytest.mark.parametrize("data", [
    b'{"n": "\xff\xfe"}',                                   # not UTF-8
    case_with("current_block", "9" * 5000),                 # beyond Python's int-from-text limit
    case_with("current_block", "-" + "9" * 5000),
    case_with("stake", nested(900)),                        # deep enough to exhaust the stack later
    case_with("weights", nested(100_000)),
    case_with("kappa", "NaN"),
    b"[" * 1_000_000,
])
def test_epoch_cases_raise_only_epoch_case_error(data: bytes) -> None:
    with pytest.raises(EpochCaseError):
        loads_case(data)


def genesis_doc() -> dict[str, Any]:
    return make_genesis(1, market=False, slot_ms=500)


def write_genesis(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "genesis.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def first_balance(doc: dict[str, Any], raw: str) -> str:
    address = next(iter(doc["balances"]))
    doc["balances"][address] = "@@"
    return json.dumps(doc).replace('"@@"', raw)


@pytest.mark.parametrize("make", [
    lambda d: b"\xff" + json.dumps(d).encode(),
    lambda d: first_balance(d, "9" * 5000),
    lambda d: first_balance(d, str(2**64)),
    lambda d: first_balance(d, nested(900)),
    lambda d: json.dumps({**d, "comment": json.loads(nested(500))}).replace("1", nested(400), 1),
    lambda d: json.dumps({**d, "chain_id": "\U0001f600" * 64}),
    lambda d: json.dumps({**d, "chain_id": "dev\nnet"}),
    lambda d: json.dumps({**d, "genesis_time_ms": 2**64}),
    lambda d: json.dumps({**d, "params": {"slot_ms": 10**30}}),
])
def test_genesis_files_raise_only_genesis_error(tmp_path: Path, make: Callable[[dict[str, Any]], str | bytes]) -> None:
    path = write_genesis(tmp_path, make(genesis_doc()))
    with pytest.raises(GenesisError):
        genesis, _ = load_genesis(path)
        build_genesis_state(genesis)  # what `join` does next: a genesis that loads must also build


def finishes(call: Callable[[], Any], fifo: Path, timeout: float = 20.0) -> BaseException | None:
    """Run `call` in a thread; if it is still blocked after `timeout`, unblock it by opening the
    FIFO for writing and fail."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked open return
        thread.join(5)
        pytest.fail(f"reading {fifo.name} blocked for {timeout:.0f} s")
    return outcome[0]


def test_a_fifo_in_place_of_a_key_file_is_refused_at_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    store.create_hotkey("w", "h")
    path = store.hotkey_path("w", "h")
    path.unlink()
    os.mkfifo(path, 0o600)
    error = finishes(lambda: store.load_hotkey("w", "h"), path)
    assert isinstance(error, KeyStoreError) and "not a regular file" in str(error), error


def test_fifos_in_place_of_case_and_genesis_files_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "case.json"
    os.mkfifo(fifo)
    assert isinstance(finishes(lambda: load_case(fifo), fifo), EpochCaseError)
    assert isinstance(finishes(lambda: load_genesis(fifo), fifo), GenesisError)


def test_the_cli_prints_one_line_for_each(tmp_path: Path) -> None:
    bad_case = tmp_path / "deep.json"
    bad_case.write_bytes(case_with("current_block", "9" * 5000))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    bad_genesis = write_genesis(tmp_path, first_balance(genesis_doc(), str(2**64)))
    commands = [
        ["epoch", "simulate", str(bad_case)],
        ["epoch", "simulate", str(fifo)],
        ["join", "--network", str(bad_genesis), "--data-dir", str(tmp_path / "d1"), "--dev-key", "validator-0-hot"],
        ["join", "--network", str(fifo), "--data-dir", str(tmp_path / "d2"), "--dev-key", "validator-0-hot"],
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for args in commands:
        try:
            result = subprocess.run([sys.executable, "-m", "p2pnode", *args], capture_output=True, text=True,
                                    timeout=120, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"p2pnode {' '.join(args)} did not finish")
        assert result.returncode != 0, (args, result.stdout)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
