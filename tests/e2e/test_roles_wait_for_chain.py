"""Market roles on a subnet created after genesis (issue 15 item 7), against real peer processes.

A peer started with `--miner ... --netuid N --validate N` before subnet N exists must not crash
(it used to, with `HttpError: netuid N has no task`): it syncs, says in `status` what it waits
for, keeps following the chain, and starts each role once the subnet and its registration exist.
The second test goes on until a miner (a custom model from a file, on a fresh hotkey with no
balance) earns incentive there, weighted by a subnet validator that joined the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_util import api, cli, cli_json, wait_until

from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair

pytestmark = pytest.mark.timeout(900)

OWNER_HOT = dev_keypair("late-subnet-owner-hot")
ROLE_HOT = dev_keypair("miner-0-hot")  # funded at genesis (fees), registered nowhere
# Fresh hotkeys with no balance at all: neuron duties are fee-free, so they serve and set weights.
FRESH_MINER = dev_keypair("late-fresh-miner-hot")
FRESH_VALIDATOR = dev_keypair("late-fresh-validator-hot")
LATE = 1  # the netuid the first subnet created on a genesis without subnets gets

# A model of the operator's own, from a file: repeat the best-fitting season (beats the baseline).
CUSTOM_MODEL = '''
import torch
from models.base import Model, resolve_device


def season(history, horizon):
    def error(p):
        return sum(abs(history[t] - history[t - p]) for t in range(p, len(history))) / (len(history) - p)
    period = min((p for p in (7, 12, 24, 30) if 2 * p <= len(history)), key=error)
    return [history[len(history) - period + (i % period)] for i in range(horizon)]


class Seasonal(Model):
    def encode_batch(self, requests):
        # The arithmetic is in Python; tensors carry the padded forecasts and their lengths.
        forecasts = [season(r["history"], r["horizon"]) for r in requests]
        width = max(len(f) for f in forecasts)
        padded = [f + [0.0] * (width - len(f)) for f in forecasts]
        return {"forecast": torch.tensor(padded, dtype=torch.float64),
                "length": torch.tensor([len(f) for f in forecasts])}

    def forward(self, batch):
        return batch

    def decode_batch(self, outputs):
        return [{"forecast": row[:n].tolist()} for row, n in zip(outputs["forecast"], outputs["length"].tolist())]


def factory(task, device="cpu"):
    return Seasonal("late-seasonal", task, torch.nn.Identity(), resolve_device(device))
'''


class Proc:
    def __init__(self, process: subprocess.Popen[str], api_url: str, addrs: list[str], log: Path) -> None:
        self.process, self.api, self.addrs, self.log = process, api_url, addrs, log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(tmp: Path, genesis: Path, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
    ready, log = tmp / f"{name}-ready.json", tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pnode", "join", "--network", str(genesis), "--data-dir", str(tmp / name),
         "--api-port", "0", "--ready-file", str(ready), "--listen", "/ip4/127.0.0.1/tcp/0",
         "--no-progress", "--log-level", "info", *args],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True,  # noqa: SIM115
        env=dict(os.environ, **(env or {})))
    wait_until(lambda: ready.exists() or process.poll() is not None, 120, f"{name} to start")
    assert process.poll() is None, log.read_text()
    info = json.loads(ready.read_text())
    return Proc(process, info["api"], [f"{a}/p2p/{info['peer_id']}" for a in info["listen_addrs"]], log)


def roles(peer: Proc) -> dict[str, Any]:
    return api(peer.api, "/status")["roles"]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Path, Proc, dict[str, str]]]:
    genesis = make_genesis(1, market=False, slot_ms=500)
    (tmp_path / "genesis.json").write_text(json.dumps(genesis))
    validator = start(tmp_path, tmp_path / "genesis.json", "validator", "--dev-key", "validator-0-hot", "--validator")
    home = tmp_path / "home"
    env = {"P2PNODE_HOME": str(home), "P2PNODE_PASSWORD": "pw", "P2PNODE_KDF": "fast"}
    home.mkdir()
    (home / "seed").write_text(hashlib.sha256(b"p2pnode-dev/validator-0-cold").hexdigest())
    cli("keys", "import", "--seed-file", str(home / "seed"), env=env)
    # The hotkeys this wallet binds: the chain binds a new hotkey only with its own signature, which
    # the CLI makes when the wallet holds the hotkey.
    for name in ("late-subnet-owner-hot", "miner-0-hot", "late-fresh-miner-hot", "late-fresh-validator-hot"):
        (home / name).write_text(hashlib.sha256(b"p2pnode-dev/" + name.encode()).hexdigest())
        cli("keys", "import", "--hotkey", name, "--seed-file", str(home / name), env=env)
    try:
        yield tmp_path, validator, env
    finally:
        validator.stop()


def create_forecast_subnet(validator: Proc, env: dict[str, str]) -> int:
    cli("subnet", "create", "--task", "forecast", "--owner-hotkey", OWNER_HOT.address, "--api", validator.api, env=env)
    found = wait_until(lambda: [s for s in cli_json("subnet", "list", "--api", validator.api) if s["task"] == "forecast"],
                       60, "the forecast subnet")
    return int(found[0]["netuid"])


def register(validator: Proc, env: dict[str, str], netuid: int, hotkey: str) -> None:
    cli("subnet", "register", "--netuid", str(netuid), "--hotkey", hotkey, "--api", validator.api, env=env)


def test_roles_wait_for_a_subnet_created_later_and_then_start(chain: tuple[Path, Proc, dict[str, str]]) -> None:
    tmp, validator, env = chain
    role_peer = start(tmp, tmp / "genesis.json", "roles", "--dev-key", "miner-0-hot", "--bootstrap", validator.addrs[0],
                      "--miner", "forecast-naive", "--netuid", str(LATE), "--validate", str(LATE), "--validator-round", "2")
    try:
        wait_until(lambda: roles(role_peer).get("miner_status") == f"waiting for subnet {LATE} to exist", 120,
                   "the miner to wait for the subnet")
        assert roles(role_peer)["subnet_validator_status"] == f"waiting for subnet {LATE} to exist"
        shown = cli("status", "--api", role_peer.api).stdout
        assert f"waiting for subnet {LATE} to exist" in shown and "miner:" in shown and "validating:" in shown
        height = api(role_peer.api, "/status")["head_height"]
        wait_until(lambda: api(role_peer.api, "/status")["head_height"] > height + 2, 60, "the peer to keep syncing")

        netuid = create_forecast_subnet(validator, env)
        assert netuid == LATE  # the first subnet of a genesis without any
        wait_until(lambda: roles(role_peer).get("miner_status", "").startswith("model ready; waiting for this hotkey's"),
                   120, "the miner to load its model and wait for registration")
        assert roles(role_peer)["subnet_validator_status"] == f"waiting for this hotkey's registration on subnet {LATE}"

        register(validator, env, netuid, ROLE_HOT.address)
        wait_until(lambda: roles(role_peer).get("miner_status", "").startswith("serving forecast-naive as uid"), 120,
                   "the miner to serve")
        wait_until(lambda: roles(role_peer).get("subnet_validator_status") == f"validating subnet {LATE} (forecast, generated challenges)", 60,
                   "the validator loop to start")
        log = role_peer.log.read_text()
        assert "Traceback" not in log and f"miner: waiting for subnet {LATE} to exist" in log
        assert role_peer.process.poll() is None
    finally:
        role_peer.stop()


def test_a_custom_miner_on_a_late_subnet_earns_incentive(chain: tuple[Path, Proc, dict[str, str]]) -> None:
    tmp, validator, env = chain
    (tmp / "models").mkdir()
    (tmp / "models" / "late_forecaster.py").write_text(CUSTOM_MODEL)
    netuid = create_forecast_subnet(validator, env)
    cli("subnet", "set", "--netuid", str(netuid), "tempo", "10", "--api", validator.api, env=env)
    model_env = {"PYTHONPATH": os.pathsep.join([str(tmp / "models"), os.environ.get("PYTHONPATH", "")])}
    for fresh in (FRESH_MINER, FRESH_VALIDATOR):
        assert api(validator.api, f"/accounts/{fresh.address}")["balance"] == 0
    miner = start(tmp, tmp / "genesis.json", "miner", "--dev-key", "late-fresh-miner-hot", "--bootstrap", validator.addrs[0],
                  "--miner", "late_forecaster:factory", "--netuid", str(netuid), env=model_env)
    subnet_validator = start(tmp, tmp / "genesis.json", "subnet-validator", "--dev-key", "late-fresh-validator-hot",
                             "--bootstrap", validator.addrs[0], "--validate", str(netuid), "--validator-round", "2")
    try:
        register(validator, env, netuid, FRESH_MINER.address)
        register(validator, env, netuid, FRESH_VALIDATOR.address)
        # A majority of the subnet's stake (the owner hotkey accrues stake from the owner's cut and
        # sets no weights; consensus needs more than half of the stake behind a miner), but less
        # than the block validator's 1 000: the most-staked hotkeys become the block validators.
        cli("stake", "add", FRESH_VALIDATOR.address, "500", "--api", validator.api, env=env)

        def miner_incentive() -> float | None:
            rows = api(validator.api, f"/metagraph/{netuid}")
            mine = [r for r in rows if r["hotkey"] == FRESH_MINER.address]
            return mine[0]["incentive"] if mine and mine[0]["incentive"] > 0 else None

        wait_until(miner_incentive, 600, "the custom miner to earn incentive on the late subnet", 2)
        # Both fresh hotkeys did their duties (serve, weights) without ever holding a balance.
        assert api(validator.api, f"/accounts/{FRESH_MINER.address}")["balance"] == 0
        for peer in (miner, subnet_validator):
            assert "Traceback" not in peer.log.read_text()
    finally:
        miner.stop()
        subnet_validator.stop()
