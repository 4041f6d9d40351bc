"""Checkpoint sync between real peer processes: a validator finalizes, a follower serves corrupt state
chunks, and a fresh peer joins with `--checkpoint-sync`: it penalises the corrupt server, installs
the checkpoint's state without replaying history, follows the head, and backfills the blocks below
the checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_util import api, try_api, wait_until

from p2pnode.chain.genesis import build_genesis_state
from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import genesis_from_json
from p2pnode.testing.live_peer import spawn_peer

pytestmark = pytest.mark.timeout(300)


class Proc:
    def __init__(self, process: subprocess.Popen[str], ready: dict[str, object], log: Path) -> None:
        self.process, self.ready, self.log = process, ready, log

    @property
    def api(self) -> str:
        return str(self.ready["api"])

    def bootstrap(self) -> str:
        return [a for a in self.ready["listen_addrs"] if "/tcp/" in a][0]  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(tmp: Path, name: str, args: list[str], env: dict[str, str] | None = None, wait_s: float = 90) -> Proc:
    process, ready, log = spawn_peer(tmp, name, args, env)
    wait_until(lambda: ready.exists() or process.poll() is not None, wait_s, f"{name} to start")
    assert process.poll() is None, log.read_text()[-4000:]
    return Proc(process, json.loads(ready.read_text()), log)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, list[Proc]]]:
    genesis = make_genesis(1, market=False, slot_ms=500)
    genesis["params"]["epoch_slots"] = 8
    # The root pinned: the validators check it, the joiner takes it instead of hashing the genesis.
    genesis["state_root"] = build_genesis_state(genesis_from_json(genesis)[0])[2].state_root.hex()
    (tmp_path / "genesis.json").write_text(json.dumps(genesis))
    procs: list[Proc] = []
    try:
        yield tmp_path, procs
    finally:
        for proc in procs:
            proc.stop()


def finalized(proc: Proc) -> int:
    status = try_api(proc.api, "/status")
    return 0 if status is None else status["finalized_height"] or 0


def test_a_fresh_peer_joins_from_a_checkpoint_past_a_corrupt_server(network: tuple[Path, list[Proc]]) -> None:
    tmp, procs = network
    validator = start(tmp, "validator", ["--dev-key", "validator-0-hot", "--validator"])
    procs.append(validator)
    corrupt = start(tmp, "corrupt", ["--dev-key", "corrupt-follower", "--bootstrap", validator.bootstrap()],
                    env={"P2PNODE_TEST_CORRUPT_STATE_CHUNKS": "1"})
    procs.append(corrupt)
    wait_until(lambda: finalized(corrupt) >= 16 and finalized(corrupt) == finalized(validator), 120,
               "the network to finalize height 16 on both peers")

    joiner = start(tmp, "joiner", ["--dev-key", "checkpoint-joiner", "--checkpoint-sync",
                                   "--bootstrap", validator.bootstrap(), "--bootstrap", corrupt.bootstrap()],
                   env={"P2PNODE_TEST_STATE_CHUNK_ITEMS": "4"})
    procs.append(joiner)
    log = joiner.log.read_text()
    assert "joined at checkpoint height" in log, log[-4000:]
    assert "taken from the genesis file's pin" in log, log[-4000:]
    # The checkpoint was checked by the validator-set walk the peers keep (not the fallback).
    assert re.search(r"validator-set walk: [1-9]\d* steps", log), log[-4000:]
    assert f"penalised {corrupt.ready['peer_id']}" in log, log[-4000:]

    # Following the head by range sync and gossip from the checkpoint on.
    target = api(validator.api, "/status")["head_height"] + 4
    wait_until(lambda: (s := try_api(joiner.api, "/status")) and s["head_height"] >= target, 60,
               "the joiner to follow the head")
    assert api(joiner.api, f"/blocks/{target}")["hash"] == api(validator.api, f"/blocks/{target}")["hash"]
    assert api(joiner.api, f"/blocks/{target}")["state_root"] == api(validator.api, f"/blocks/{target}")["state_root"]
    # History below the checkpoint arrives in the background, hash-linked to the checkpoint.
    wait_until(lambda: try_api(joiner.api, "/blocks/1"), 60, "the joiner to backfill block 1")
    assert api(joiner.api, "/blocks/1")["hash"] == api(validator.api, "/blocks/1")["hash"]
    assert "history backfill complete" in joiner.log.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoint-sync", "--checkpoint", "zz"], "--checkpoint must be a block hash: 64 hex digits"),
    (["--checkpoint", "ab" * 32], "--checkpoint needs --checkpoint-sync"),
])
def test_checkpoint_flags_are_checked_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p2pnode", "join", "--data-dir", str(tmp_path / "data"), "--dev-key", "flag-check",
         *args], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()
