"""`p2pnode doctor` against real peers: no peers, a miner not registered, a miner without balance serving,
a subnet validator without weights, a clock 10 s ahead, and loose key file modes."""

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
from e2e_util import api, cli, try_api, wait_until

from p2pnode.chain.types import Serve, SignedTx, make_tx
from p2pnode.cli.client import post_bytes
from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair
from p2pnode.net.identity import peer_id_from_seed
from p2pnode.peer import CLOCK_OFFSET_ENV
from protocols import codec

pytestmark = pytest.mark.timeout(300)

MINER_HOT = dev_keypair("validator-0-hot")  # the block validator also runs a miner
VALIDATOR_HOT = dev_keypair("validator-1-hot")
SECOND_MINER_HOT = dev_keypair("miner-0-hot")


class Peer:
    def __init__(self, process: subprocess.Popen[str], ready: dict[str, Any], log: Path) -> None:
        self.process, self.api, self.log = process, ready["api"], log
        self.address = f"{ready['listen_addrs'][0]}/p2p/{ready['peer_id']}"


def start(tmp: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> Peer:
    ready, log = tmp / f"{name}-ready.json", tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pnode", "join", "--network", str(tmp / "genesis.json"), "--data-dir", str(tmp / name),
         "--api-port", "0", "--listen", "/ip4/127.0.0.1/tcp/0", "--ready-file", str(ready), "--no-progress",
         "--log-level", "warning", *args],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True, env=dict(os.environ, **(env or {})))  # noqa: SIM115
    wait_until(lambda: ready.exists() or process.poll() is not None, 90, f"{name} to start")
    assert process.poll() is None, log.read_text()
    return Peer(process, json.loads(ready.read_text()), log)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Peer]]:
    """One block validator whose hotkey holds no balance (it will also run a miner), and a text subnet
    on which validator-1's hotkey is registered."""
    tmp = tmp_path_factory.mktemp("doctor")
    genesis = make_genesis(1, market=False, slot_ms=500)
    del genesis["balances"][MINER_HOT.address]  # the miner's hotkey has no balance: it serves fee-free
    genesis["params"]["protocol_version"] = 2  # fees are burned: the proposer (the miner) earns none
    genesis["params"]["free_duty_interval"] = 100_000  # one fee-free duty per hotkey in this test
    del genesis["balances"][SECOND_MINER_HOT.address]  # a second miner that cannot pay fees either
    owner_cold, owner_hot = dev_keypair("subnet-owner-cold"), dev_keypair("subnet-owner-hot")
    genesis["subnets"].append({
        "owner_coldkey": owner_cold.address, "owner_hotkey": owner_hot.address, "task": "text",
        "hyperparameters": {"tempo": 20, "commit_reveal_enabled": 0},
        "neurons": [{"hotkey": VALIDATOR_HOT.address, "coldkey": dev_keypair("validator-1-cold").address},
                    {"hotkey": SECOND_MINER_HOT.address, "coldkey": dev_keypair("miner-0-cold").address}],
    })
    (tmp / "genesis.json").write_text(json.dumps(genesis))
    peer = start(tmp, "miner", ["--dev-key", "validator-0-hot", "--validator", "--miner", "text-uniform", "--netuid", "1"])
    yield tmp, peer
    if peer.process.poll() is None:
        peer.process.kill()
        peer.process.wait()


def doctor(peer: Peer, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = cli("doctor", "--api", peer.api, "--json", *extra, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    return result.returncode, {f["check"]: f for f in report["findings"]}


def test_lone_miner_has_no_peers_and_is_not_registered(network: tuple[Path, Peer], tmp_path: Path) -> None:
    _, peer = network
    code, found = doctor(peer, "--keys-dir", str(tmp_path))
    assert code == 1
    assert found["node"]["status"] == "ok"
    assert found["peers"]["status"] == "fail" and "--bootstrap" in found["peers"]["remedy"]
    assert found["registration"]["status"] == "fail" and "not registered on netuid 1" in found["registration"]["message"]
    assert "p2pnode subnet register --netuid 1" in found["registration"]["remedy"]
    assert found["data directory"]["status"] == "ok" and found["ports"]["status"] in ("ok", "warn")
    text = cli("doctor", "--api", peer.api, "--keys-dir", str(tmp_path), check=False).stdout
    assert "[fail] peers: no connected peers" in text and "->" in text


def test_key_files_others_may_read_are_found(network: tuple[Path, Peer], tmp_path: Path) -> None:
    _, peer = network
    wallet = tmp_path / "wallets" / "default"
    wallet.mkdir(parents=True, mode=0o700)
    (tmp_path / "wallets").chmod(0o700)
    key_file = wallet / "coldkey"
    key_file.write_text("{}")
    key_file.chmod(0o644)
    _, found = doctor(peer, "--keys-dir", str(tmp_path))
    assert found["keys"]["status"] == "fail" and f"chmod 600 {key_file}" == found["keys"]["remedy"].split(" (")[0]
    key_file.chmod(0o600)
    _, found = doctor(peer, "--keys-dir", str(tmp_path))
    assert found["keys"]["status"] == "ok"


def test_a_hotkey_without_balance_serves_fee_free(network: tuple[Path, Peer], tmp_path: Path) -> None:
    # Serving is a neuron's duty: it needs no fee, so the miner's hotkey (no balance) serves.
    _, peer = network
    env = {"P2PNODE_HOME": str(tmp_path / "home"), "P2PNODE_PASSWORD": "pw", "P2PNODE_KDF": "fast"}
    seed = tmp_path / "seed"
    seed.write_text(hashlib.sha256(b"p2pnode-dev/validator-0-cold").hexdigest())
    cli("keys", "import", "--seed-file", str(seed), env=env)
    cli("subnet", "register", "--netuid", "1", "--hotkey", MINER_HOT.address, "--api", peer.api, env=env)

    def serving() -> dict[str, dict[str, str]] | None:
        _, found = doctor(peer)
        return found if found.get("serving", {}).get("status") == "ok" else None

    found = wait_until(serving, 90, "the doctor to report the miner serving", 2)
    assert found["registration"]["status"] == "ok"
    assert api(peer.api, f"/accounts/{MINER_HOT.address}")["balance"] == 0


def test_refused_serve_transaction_is_reported(network: tuple[Path, Peer]) -> None:
    """A miner whose hotkey cannot pay fees and has used its fee-free duty: its serve is refused."""
    tmp, first = network
    chain_id = api(first.api, "/status")["chain_id"]
    # The hotkey spends its one fee-free duty on a serve of another model before its miner starts.
    own_peer_id = peer_id_from_seed(SECOND_MINER_HOT.seed)
    tx = make_tx(chain_id, SECOND_MINER_HOT.public_key, 0, 0, Serve(netuid=1, peer_id=own_peer_id, model="elsewhere"))
    answer = post_bytes(first.api, "/tx", codec.encode(SignedTx(tx=tx, sig=SECOND_MINER_HOT.sign(tx.signing_bytes()))))
    wait_until(lambda: api(first.api, f"/tx/{answer['tx']}")["status"] == "included", 60, "the first serve")
    peer = start(tmp, "second-miner", ["--dev-key", "miner-0-hot", "--miner", "text-uniform", "--netuid", "1",
                                       "--bootstrap", first.address])
    try:
        def refused() -> dict[str, dict[str, str]] | None:
            _, found = doctor(peer)
            return found if found.get("serving", {}).get("status") == "fail" else None

        found = wait_until(refused, 90, "the doctor to report the refused serve transaction", 2)
        assert "refused: free_duty_rate_limited" in found["serving"]["message"]
        assert found["serving"]["remedy"] == f"fund the hotkey for fees: p2pnode transfer {SECOND_MINER_HOT.address} 1"
        assert found["registration"]["status"] == "ok"
    finally:
        peer.process.terminate()
        peer.process.wait(timeout=30)


def test_validator_without_weights_and_a_clock_ten_seconds_ahead(network: tuple[Path, Peer]) -> None:
    tmp, miner = network
    peer = start(tmp, "validator", ["--dev-key", "validator-1-hot", "--validate", "1", "--validator-round", "1",
                                    "--bootstrap", miner.address], env={CLOCK_OFFSET_ENV: "10000"})
    try:
        wait_until(lambda: (s := try_api(peer.api, "/status")) and s["block_delay_samples"] >= 3, 90,
                   "blocks from the proposer")
        code, found = doctor(peer)
        assert code == 1
        assert found["peers"]["status"] == "ok"
        clock = found["clock"]
        assert clock["status"] == "fail" and "ahead of" in clock["message"] and "ntp" in clock["remedy"]
        seconds = float(clock["message"].split(" looks ")[1].split(" s ")[0])
        # The estimate adds propagation and import delay to the offset: seconds late on a busy machine.
        assert 9.0 <= seconds <= 20.0, clock
        assert found["weights"]["status"] == "fail" and "has set no weights on netuid 1" in found["weights"]["message"]
        assert found["registration"]["status"] == "ok"
        # The miner's own clock is right: from its side the validator's view changes nothing.
        _, mine = doctor(miner)
        assert mine["clock"]["status"] in ("info", "ok")
    finally:
        peer.process.terminate()
        peer.process.wait(timeout=30)


def test_reachability_follows_autonat_and_ignores_loopback() -> None:
    from p2pnode.cli.doctor import check_reachability

    def finding(addrs: list[str], verdict: str, relays: list[str] | None = None) -> tuple[str, str]:
        [f] = check_reachability({"listen_addrs": addrs, "network": {"reachability": verdict,
                                                                      "relay_reservations": relays or []}})
        return f.status, f.remedy

    wide = ["/ip4/192.0.2.7/tcp/30633"]
    assert finding(wide, "public")[0] == "ok"
    status, remedy = finding(wide, "private")
    assert status == "fail" and "--announce" in remedy
    assert finding(wide, "private", ["relay-peer"])[0] == "warn"
    assert finding(wide, "unknown")[0] == "info"
    assert finding(["/ip4/127.0.0.1/tcp/4001"], "private")[0] == "info"
