"""Genesis files (JSON under testnet/) and the well-known development keys.

Format:
    {"chain_id": "...", "genesis_time_ms": 0, "params": {name: int},
     "balances": {address: rao}, "validators": [{"hotkey": addr, "coldkey": addr, "stake": rao}],
     "subnets": [{"owner_coldkey": addr, "owner_hotkey": addr, "task": "text", "hyperparameters": {},
                  "neurons": [{"hotkey": addr, "coldkey": addr}]}],
     "bootstrap": [multiaddr, ...], "state_root": hex (optional)}

`state_root` pins the genesis state root: every peer that builds the genesis state checks it, and a
peer joining by checkpoint sync on a fresh data directory takes it instead of hashing every genesis
item (`p2pnode genesis-root --network FILE [--write]` prints or pins it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from p2pnode.chain.address import AddressError, decode_address
from p2pnode.chain.encoding import MAX_UINT64
from p2pnode.chain.genesis import Genesis, GenesisError, GenesisSubnet, GenesisValidator
from p2pnode.chain.types import BadChainId, check_chain_id
from p2pnode.local_files import LocalFileError, parse_json, read_regular_file
from protocols.crypto import Keypair, keypair_from_seed

TESTNET_DIR = Path(__file__).resolve().parent.parent / "testnet"
MAX_GENESIS_BYTES = 16 << 20


def dev_keypair(name: str) -> Keypair:
    """A well-known development key (never use for real funds): seed = sha256('p2pnode-dev/' + name)."""
    return keypair_from_seed(hashlib.sha256(b"p2pnode-dev/" + name.encode()).digest())


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_UINT64:
        raise GenesisError(f"{where}: expected an integer in {minimum}..2^64-1")
    return value


def _addr(value: Any, where: str) -> bytes:
    if type(value) is not str:
        raise GenesisError(f"{where}: expected an address string")
    try:
        return decode_address(value)
    except AddressError as exc:
        raise GenesisError(f"{where}: {exc}") from None


def _keys(obj: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    if type(obj) is not dict:
        raise GenesisError(f"{where}: expected an object")
    unknown = set(obj) - required - optional
    missing = required - set(obj)
    if unknown:
        raise GenesisError(f"{where}: unknown keys {sorted(unknown)}")
    if missing:
        raise GenesisError(f"{where}: missing keys {sorted(missing)}")


def genesis_from_json(doc: Any) -> tuple[Genesis, list[str]]:
    """Validate a parsed genesis document; returns the Genesis and its bootstrap multiaddrs."""
    _keys(doc, "genesis", {"chain_id", "genesis_time_ms", "balances", "validators"},
          {"params", "subnets", "bootstrap", "comment", "state_root"})
    if type(doc["chain_id"]) is not str or not doc["chain_id"]:
        raise GenesisError("chain_id: expected a non-empty string")
    try:
        check_chain_id(doc["chain_id"])
    except BadChainId as exc:
        raise GenesisError(str(exc)) from None
    params = doc.get("params", {})
    if type(params) is not dict:
        raise GenesisError("params: expected an object")
    balances = doc["balances"]
    if type(balances) is not dict:
        raise GenesisError("balances: expected an object of address -> rao")
    validators = doc["validators"]
    if type(validators) is not list:
        raise GenesisError("validators: expected a list")
    subnets = doc.get("subnets", [])
    if type(subnets) is not list:
        raise GenesisError("subnets: expected a list")
    bootstrap = doc.get("bootstrap", [])
    if type(bootstrap) is not list or not all(type(b) is str for b in bootstrap):
        raise GenesisError("bootstrap: expected a list of multiaddr strings")
    state_root = doc.get("state_root")
    if state_root is not None:
        if type(state_root) is not str or len(state_root) != 64:
            raise GenesisError("state_root: expected 64 hex digits")
        try:
            state_root = bytes.fromhex(state_root)
        except ValueError:
            raise GenesisError("state_root: expected 64 hex digits") from None
    vals = []
    for i, v in enumerate(validators):
        _keys(v, f"validators[{i}]", {"hotkey", "coldkey", "stake"}, set())
        vals.append(GenesisValidator(_addr(v["hotkey"], f"validators[{i}].hotkey"),
                                     _addr(v["coldkey"], f"validators[{i}].coldkey"),
                                     _int(v["stake"], f"validators[{i}].stake", 1)))
    sns = []
    for i, s in enumerate(subnets):
        _keys(s, f"subnets[{i}]", {"owner_coldkey", "owner_hotkey", "task"}, {"hyperparameters", "neurons"})
        neurons = s.get("neurons", [])
        if type(neurons) is not list:
            raise GenesisError(f"subnets[{i}].neurons: expected a list")
        for j, nr in enumerate(neurons):
            _keys(nr, f"subnets[{i}].neurons[{j}]", {"hotkey", "coldkey"}, set())
        hp = s.get("hyperparameters", {})
        if type(hp) is not dict:
            raise GenesisError(f"subnets[{i}].hyperparameters: expected an object")
        if type(s["task"]) is not str:
            raise GenesisError(f"subnets[{i}].task: expected a string")
        sns.append(GenesisSubnet(_addr(s["owner_coldkey"], f"subnets[{i}].owner_coldkey"),
                                 _addr(s["owner_hotkey"], f"subnets[{i}].owner_hotkey"), s["task"],
                                 {k: _int(x, f"subnets[{i}].hyperparameters.{k}") for k, x in hp.items()},
                                 tuple((_addr(nr["hotkey"], f"subnets[{i}].neurons[{j}].hotkey"),
                                        _addr(nr["coldkey"], f"subnets[{i}].neurons[{j}].coldkey"))
                                       for j, nr in enumerate(neurons))))
    genesis = Genesis(
        chain_id=doc["chain_id"],
        genesis_time_ms=_int(doc["genesis_time_ms"], "genesis_time_ms"),
        params={k: _int(x, f"params.{k}") for k, x in params.items()},
        balances=tuple((_addr(a, f"balances[{a!r}]"), _int(x, f"balances[{a!r}]", 1)) for a, x in balances.items()),
        validators=tuple(vals),
        subnets=tuple(sns),
        state_root=state_root,
    )
    return genesis, list(bootstrap)


def genesis_path(path_or_name: str | Path) -> Path:
    """A genesis file by path, or by network name under testnet/."""
    path = Path(path_or_name)
    if not path.exists() and "/" not in str(path_or_name):
        path = TESTNET_DIR / f"{path_or_name}.json"
    return path


def load_genesis(path_or_name: str | Path) -> tuple[Genesis, list[str]]:
    """Load a genesis file by path, or by network name from testnet/ (e.g. 'devnet')."""
    path = genesis_path(path_or_name)
    try:
        doc = parse_json(read_regular_file(path, MAX_GENESIS_BYTES))
    except LocalFileError as exc:
        raise GenesisError(f"genesis {path}: {exc}") from None
    return genesis_from_json(doc)
