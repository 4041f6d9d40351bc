"""Checkpoint sync on a chain the network did not live through: a chain of a few hundred blocks is
made in-process (`p2pnode.testing.bigchain`, what the 100,000-block benchmark runs on), a validator
process starts on that data directory and extends it at once, and a fresh peer joins it by
checkpoint sync, follows the head and backfills the whole history below its checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_util import api, try_api, wait_until

from p2pnode.peer import CLOCK_OFFSET_ENV
from p2pnode.store import Store
from p2pnode.testing.bigchain import ChainSpec, make_chain
from p2pnode.testing.live_peer import spawn_peer, stop_processes

pytestmark = pytest.mark.timeout(300)

SPEC = ChainSpec(blocks=320, accounts=1_000, slot_ms=500)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    try:
        yield running
    finally:
        stop_processes(running)


def test_a_peer_joins_a_made_chain_by_checkpoint_and_backfills_it(
        tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    made = make_chain(tmp_path / "made", SPEC)
    assert made.head_height == SPEC.blocks
    # Checkpoints finalized through the whole history (epochs of 8 slots), not just at its end.
    assert made.finalized_height >= SPEC.blocks - 24
    store = Store(made.data_dir / "chain.sqlite")
    made_head = store.head_hash
    store.close()

    run = tmp_path / "run"
    run.mkdir()
    (run / "genesis.json").write_bytes(made.genesis_file.read_bytes())
    made.copy_data_dir(run / "validator")
    env = {CLOCK_OFFSET_ENV: str(made.clock_offset_ms()), "P2PNODE_KDF": "fast"}
    validator, ready, validator_log = spawn_peer(run, "validator", ["--dev-key", "validator-0-hot", "--validator"], env)
    processes.append(validator)
    wait_until(lambda: ready.exists() or validator.poll() is not None, 90, "the validator to start")
    assert validator.poll() is None, validator_log.read_text()[-4000:]
    info = json.loads(ready.read_text())
    validator_api = info["api"]
    # It runs on the made chain as it is (no replay): the made head is its block, and it builds on it.
    assert api(validator_api, f"/blocks/{SPEC.blocks}")["hash"] == made_head.hex()
    wait_until(lambda: api(validator_api, "/status")["head_height"] > SPEC.blocks, 60,
               "the validator to extend the made chain")

    joiner, joiner_ready, log = spawn_peer(
        run, "joiner", ["--dev-key", "checkpoint-joiner", "--checkpoint-sync",
                        "--bootstrap", f"{info['listen_addrs'][0]}/p2p/{info['peer_id']}"], env)
    processes.append(joiner)
    wait_until(lambda: joiner_ready.exists() or joiner.poll() is not None, 120, "the joiner to join")
    assert joiner.poll() is None, log.read_text()[-4000:]
    joined = re.search(r"joined at checkpoint height (\d+) .* validator-set walk: (\d+) steps", log.read_text())
    assert joined, log.read_text()[-4000:]
    assert int(joined[1]) >= made.finalized_height and int(joined[2]) >= 1
    joiner_api = json.loads(joiner_ready.read_text())["api"]

    target = api(validator_api, "/status")["head_height"] + 2
    wait_until(lambda: (s := try_api(joiner_api, "/status")) and s["head_height"] >= target, 60,
               "the joiner to follow the head")
    assert api(joiner_api, f"/blocks/{target}")["state_root"] == api(validator_api, f"/blocks/{target}")["state_root"]

    # The history below the checkpoint (every made block under it) arrives in the background.
    wait_until(lambda: "history backfill complete" in log.read_text(), 120, "the joiner to backfill its history")
    backfilled = re.search(r"history backfill complete: (\d+) blocks", log.read_text())
    assert backfilled and int(backfilled[1]) == int(joined[1]) - 1
    for height in (1, SPEC.blocks // 2, int(joined[1]) - 1):
        assert api(joiner_api, f"/blocks/{height}")["hash"] == api(validator_api, f"/blocks/{height}")["hash"]
