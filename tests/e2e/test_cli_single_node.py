"""The CLI against one real peer: join, status, balance, transfer, stake, subnets, clean shutdown."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_util import api, cli, cli_json, wait_until

from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair

pytestmark = pytest.mark.timeout(600)

COLD = dev_keypair("validator-0-cold")
HOT = dev_keypair("validator-0-hot")
OWNER_HOT = dev_keypair("cli-owner-hot")
MINER_HOT = dev_keypair("cli-miner-hot")
USER = dev_keypair("user-3")


class Peer:
    def __init__(self, process: subprocess.Popen[str], api_url: str, log: Path) -> None:
        self.process, self.api, self.log = process, api_url, log


def start_peer(tmp: Path, genesis: Path, data: Path, name: str = "peer") -> Peer:
    ready = tmp / f"{name}-ready.json"
    log = tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pnode", "join", "--network", str(genesis), "--data-dir", str(data),
         "--dev-key", "validator-0-hot", "--validator", "--api-port", "0", "--ready-file", str(ready),
         "--listen", "/ip4/127.0.0.1/tcp/0",
         "--no-progress", "--log-level", "warning"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)  # noqa: SIM115
    wait_until(lambda: ready.exists() or process.poll() is not None, 60, "the peer to start")
    assert process.poll() is None, log.read_text()
    return Peer(process, json.loads(ready.read_text())["api"], log)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    tmp = tmp_path_factory.mktemp("single")
    genesis = make_genesis(1, market=False, slot_ms=500)
    genesis["params"]["epoch_slots"] = 4
    (tmp / "genesis.json").write_text(json.dumps(genesis))
    running = start_peer(tmp, tmp / "genesis.json", tmp / "data")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    variables = {"P2PNODE_HOME": str(home), "P2PNODE_PASSWORD": "pw", "P2PNODE_KDF": "fast"}
    seed = home / "seed"
    seed.write_text(hashlib.sha256(b"p2pnode-dev/validator-0-cold").hexdigest())
    cli("keys", "import", "--seed-file", str(seed), env=variables)
    # The hotkeys this wallet binds (subnet owner, miner): the chain binds a new hotkey only with its
    # own signature, which the CLI makes when the wallet holds the hotkey.
    for name in ("cli-owner-hot", "cli-miner-hot"):
        hot_seed = home / name
        hot_seed.write_text(hashlib.sha256(b"p2pnode-dev/" + name.encode()).hexdigest())
        cli("keys", "import", "--hotkey", name, "--seed-file", str(hot_seed), env=variables)
    return variables


def account(peer: Peer, address: str) -> dict[str, Any]:
    return api(peer.api, f"/accounts/{address}")


def test_status_reports_the_peer(peer: Peer) -> None:
    status = cli_json("status", "--api", peer.api)
    assert status["chain_id"] == "p2pnode-local" and status["api"] == peer.api
    wait_until(lambda: api(peer.api, "/status")["finalized_height"], 60, "a lone validator to finalize")
    text = cli("status", "--api", peer.api).stdout
    assert "finalized:" in text and "peer id:" in text


def test_transfer_and_stake(peer: Peer, env: dict[str, str]) -> None:
    before = account(peer, USER.address)["balance"]
    cli("transfer", USER.address, "1.5", "--api", peer.api, env=env)
    wait_until(lambda: account(peer, USER.address)["balance"] == before + 1_500_000_000, 60, "the transfer")
    cli("stake", "add", HOT.address, "2", "--api", peer.api, env=env)
    wait_until(lambda: any(s["amount"] == 1_002 * 10**9 for s in account(peer, COLD.address)["stake"]), 60, "the stake")
    shown = cli_json("balance", COLD.address, "--api", peer.api)
    assert shown["total_stake"] == 1_002 * 10**9


def test_transactions_wait_for_their_block_by_default(peer: Peer, env: dict[str, str]) -> None:
    before = account(peer, USER.address)["balance"]
    shown = cli_json("transfer", USER.address, "0.25", "--api", peer.api, env=env)
    included = shown["included"]
    assert included["status"] == "included" and included["height"] > 0
    # Back from the command means in a block: no polling needed to see the new balance.
    assert account(peer, USER.address)["balance"] == before + 250_000_000
    assert any(t["id"] == shown["tx"] for t in api(peer.api, f"/blocks/{included['height']}")["txs"])
    text = cli("transfer", USER.address, "1rao", "--wait", "finalized", "--api", peer.api, env=env).stdout
    assert " finalized in block " in text
    shown = cli_json("transfer", USER.address, "1rao", "--no-wait", "--api", peer.api, env=env)
    assert "included" not in shown
    assert api(peer.api, "/tx/" + "00" * 32)["status"] == "unknown"


def test_faucet_funds_a_new_wallet_and_the_overview_shows_it(peer: Peer, tmp_path: Path) -> None:
    home = {"P2PNODE_HOME": str(tmp_path), "P2PNODE_PASSWORD": "pw", "P2PNODE_KDF": "fast"}
    cold = cli_json("keys", "new", "--wallet", "newcomer", env=home)["address"]
    hot = cli_json("keys", "new", "--wallet", "newcomer", "--hotkey", "miner", env=home)["address"]
    text = cli("testnet", "faucet", cold, "12.5", "--api", peer.api).stdout
    assert text.startswith(f"faucet: 12.5 TAO to {cold}: transaction ") and " in block " in text
    assert account(peer, cold)["balance"] == 12_500_000_000
    result = cli("testnet", "faucet", cold, "20000", "--api", peer.api, check=False)
    assert result.returncode == 1 and "at most 10000 TAO" in result.stderr
    overview = cli_json("wallet", "overview", "--wallet", "newcomer", "--api", peer.api, env=home)
    assert overview["coldkey"]["address"] == cold and overview["coldkey"]["balance"] == 12_500_000_000
    assert [h["address"] for h in overview["hotkeys"]] == [hot] and overview["hotkeys"][0]["registrations"] == []
    assert overview["totals"]["balance"] == 12_500_000_000
    text = cli("wallet", "overview", "--wallet", "newcomer", "--api", peer.api, env=home).stdout
    assert "balance 12.5000 TAO" in text and "no hotkey is registered" in text


def test_testnet_up_ends_with_the_dashboard_and_next_commands() -> None:
    from p2pnode.cli.testnet import next_steps

    text = next_steps("http://127.0.0.1:9000", Path("run"), market=True)
    assert "dashboard: http://127.0.0.1:9000/" in text
    for command in ("testnet faucet", "wallet overview", "explain --netuid 1", "doctor", "testnet down --dir run"):
        assert f"p2pnode {command}" in text


def test_subnet_create_register_and_set(peer: Peer, env: dict[str, str]) -> None:
    cli("subnet", "create", "--task", "forecast", "--owner-hotkey", OWNER_HOT.address, "--api", peer.api, env=env)
    subnets = wait_until(lambda: [s for s in cli_json("subnet", "list", "--api", peer.api) if s["task"] == "forecast"],
                         60, "the subnet")
    netuid = subnets[0]["netuid"]
    price = next(s for s in cli_json("subnet", "list", "--api", peer.api) if s["netuid"] == netuid)["registration_burn"]
    refused = cli("subnet", "register", "--netuid", str(netuid), "--hotkey", MINER_HOT.address, "--max-burn",
                  f"{price - 1}rao", "--api", peer.api, env=env, check=False)
    assert refused.returncode == 1 and "above --max-burn" in refused.stderr
    done = cli("subnet", "register", "--netuid", str(netuid), "--hotkey", MINER_HOT.address, "--api", peer.api, env=env)
    assert f"burns {price / 10**9:,.9f} TAO" in done.stdout
    cli("subnet", "set", "--netuid", str(netuid), "tempo", "50", "--api", peer.api, env=env)

    def updated() -> bool:
        sn = next(s for s in cli_json("subnet", "list", "--api", peer.api) if s["netuid"] == netuid)
        return sn["n"] == 2 and sn["hyperparameters"]["tempo"] == 50

    wait_until(updated, 60, "the registration and the hyperparameter")


def test_bad_input_gives_one_line_errors(peer: Peer, env: dict[str, str]) -> None:
    result = cli("transfer", "p2p1notanaddress", "1", "--api", peer.api, env=env, check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = cli("transfer", USER.address, "lots", "--api", peer.api, env=env, check=False)
    assert result.returncode == 2 and "not an amount" in result.stderr
    result = cli("transfer", USER.address, "10000000", "--api", peer.api, env=env, check=False)
    assert result.returncode == 1 and "insufficient_balance" in result.stderr
    result = cli("status", "--api", "http://127.0.0.1:9", env=env, check=False)
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr
    result = cli("subnet", "set", "--netuid", "1", "tempo", "1", "--api", peer.api, env=env, check=False)
    assert result.returncode == 1  # not the owner of subnet 1? there is none: unknown_subnet or not owner
    assert "Traceback" not in result.stderr


def test_store_of_another_network_is_refused(peer: Peer, tmp_path: Path) -> None:
    other = make_genesis(1, market=False, slot_ms=500)
    other["chain_id"] = "another-chain"
    (tmp_path / "other.json").write_text(json.dumps(other))
    data_dir = Path(peer.log).parent / "data"
    result = cli("join", "--network", str(tmp_path / "other.json"), "--data-dir", str(data_dir), "--dev-key", "x",
                 "--api-port", "0", check=False, timeout=60)
    assert result.returncode == 1 and "another network" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_shuts_down_cleanly_and_restart_continues(peer: Peer, tmp_path: Path) -> None:
    height = api(peer.api, "/status")["head_height"]
    peer.process.send_signal(signal.SIGTERM)
    assert peer.process.wait(timeout=30) == 0
    assert "stopped cleanly" in peer.log.read_text()
    data_dir = peer.log.parent / "data"
    again = start_peer(tmp_path, peer.log.parent / "genesis.json", data_dir, name="again")
    try:
        assert api(again.api, "/status")["head_height"] >= height
        wait_until(lambda: api(again.api, "/status")["head_height"] > height + 2, 60, "blocks after the restart")
    finally:
        again.process.send_signal(signal.SIGTERM)
        again.process.wait(timeout=30)
