"""`p2pnode testnet up | status | down`: a whole local network of peer processes on loopback.

`up` writes a genesis with well-known development keys (N block validators, a text subnet whose
three miners serve models of different quality and whose two validators are the first two block
validators), starts one process per peer, records pids, ports and logs under DIR, and waits until
the peers are connected and finalizing. `down` stops them by their saved pids.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from p2pnode.chain.params import TAO, check_param
from p2pnode.cli.chain import parse_amount
from p2pnode.cli.client import ApiError, get_json
from p2pnode.cli.common import add_api, add_json, add_wait
from p2pnode.cli.errors import CliError
from p2pnode.genesis_file import dev_keypair

DEFAULT_DIR = Path("testnet-run")
LOCAL_CHAIN_ID = "p2pnode-local"
STATE_FILE = "testnet.json"
MINER_MODELS = ("text-transformer", "text-bigram", "text-uniform")
SUBNET_HYPERPARAMETERS = {
    "tempo": 20, "activity_cutoff": 2000, "weights_rate_limit": 2, "reveal_period_epochs": 1,
    "commit_reveal_enabled": 1, "immunity_period": 100, "min_allowed_weights": 1, "max_allowed_validators": 8,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    testnet = subparsers.add_parser("testnet", help="a local multi-peer network on loopback")
    sub = testnet.add_subparsers(dest="testnet_command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="create a genesis and start the peers")
    up.add_argument("-n", "--nodes", type=int, default=4, help="block validators (default: 4)")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"run directory (default: {DEFAULT_DIR})")
    up.add_argument("--no-market", action="store_true", help="no subnet miners and validators")
    up.add_argument("--base-port", type=int, default=0, help="first TCP port (default: any free ports)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for finality")
    up.add_argument("--slot-ms", type=int, default=1000)
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", type=parse_param,
                    help="a global chain parameter in the genesis, e.g. max_block_txs=2000 (repeatable)")
    up.add_argument("--json", action="store_true")
    up.add_argument("--keep-on-failure", action="store_true",
                    help="if start-up fails, leave the peers that did start running (to inspect them)")
    up.set_defaults(func=_up)

    status = sub.add_parser("status", help="per peer: height, finality, peers")
    status.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    faucet = sub.add_parser("faucet", help="send test TAO to an address (local networks only)",
                            description="Send test TAO from a development account of the local network.")
    faucet.add_argument("address", help="the address to fund")
    faucet.add_argument("amount", type=parse_amount, help="TAO (1.5) or rao (1500rao)")
    add_api(faucet)
    add_wait(faucet)
    add_json(faucet)
    faucet.set_defaults(func=_faucet)

    down = sub.add_parser("down", help="stop the peers by their saved pids")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    down.set_defaults(func=_down)


# ---------------------------------------------------------------- genesis


def parse_param(text: str) -> tuple[str, int]:
    """`NAME=VALUE` of `testnet up --param`: a global chain parameter within its declared bounds."""
    name, _, value = text.partition("=")
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected an integer, got {value!r}") from None
    problem = check_param(name, number)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return name, number


def make_genesis(n: int, market: bool, slot_ms: int, params: dict[str, int] | None = None) -> dict[str, Any]:
    validators = [(dev_keypair(f"validator-{i}-cold"), dev_keypair(f"validator-{i}-hot")) for i in range(n)]
    miners = [(dev_keypair(f"miner-{i}-cold"), dev_keypair(f"miner-{i}-hot")) for i in range(len(MINER_MODELS))]
    owner_cold, owner_hot = dev_keypair("subnet-owner-cold"), dev_keypair("subnet-owner-hot")
    balances: dict[str, int] = {}
    for i in range(4):
        balances[dev_keypair(f"user-{i}").address] = 1_000_000 * TAO
    for cold, hot in [*validators, *miners, (owner_cold, owner_hot)]:
        balances[cold.address] = 100_000 * TAO
        balances[hot.address] = 100 * TAO  # fees for serve / weights transactions
    genesis: dict[str, Any] = {
        "comment": "local development network: every key here is public (derived from its name)",
        "chain_id": LOCAL_CHAIN_ID,
        "genesis_time_ms": int(time.time() * 1000) // 1000 * 1000,
        "params": {"slot_ms": slot_ms, "epoch_slots": 4, "max_block_validators": max(n, 1), "min_fee": 1_000,
                   "voting_period": 30, "enactment_delay": 5, **(params or {})},
        "balances": balances,
        "validators": [{"hotkey": hot.address, "coldkey": cold.address, "stake": 1_000 * TAO} for cold, hot in validators],
        "subnets": [],
    }
    if market:
        neurons = [{"hotkey": hot.address, "coldkey": cold.address} for cold, hot in miners]
        neurons += [{"hotkey": hot.address, "coldkey": cold.address} for cold, hot in validators[:2]]
        genesis["subnets"].append({
            "owner_coldkey": owner_cold.address, "owner_hotkey": owner_hot.address, "task": "text",
            "hyperparameters": SUBNET_HYPERPARAMETERS, "neurons": neurons,
        })
    return genesis


# ---------------------------------------------------------------- processes


def _spawn(run_dir: Path, name: str, args: list[str]) -> dict[str, Any]:
    node_dir = run_dir / name
    node_dir.mkdir(parents=True, exist_ok=True)
    ready = node_dir / "ready.json"
    ready.unlink(missing_ok=True)
    log_path = node_dir / "log.txt"
    command = [sys.executable, "-m", "p2pnode", "join", "--network", str(run_dir / "genesis.json"),
               "--data-dir", str(node_dir / "data"), "--ready-file", str(ready), "--no-progress",
               "--log-level", "warning", *args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    _CHILDREN[process.pid] = process
    return {"name": name, "pid": process.pid, "log": str(log_path), "ready_file": str(ready), "args": args,
            "command": command, "model_dir": os.environ.get("P2PNODE_MODEL_DIR")}


def _wait_ready(entry: dict[str, Any], deadline: float) -> dict[str, Any]:
    ready = Path(entry["ready_file"])
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            entry.update(peer_id=info["peer_id"], api=info["api"], listen_addrs=info["listen_addrs"])
            return entry
        if not _alive(entry["pid"]):
            raise CliError(f"{entry['name']} exited during start; see {entry['log']}")
        time.sleep(0.1)  # polling a file written by another process: there is no event to wait on
    raise CliError(f"{entry['name']} did not start in time; see {entry['log']}")


# Processes this `up` started: their state comes from the process handle, not from /proc.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"p2pnode" in cmdline and b"join" in cmdline  # not a reused pid of another program


def _port(base: int, offset: int) -> int:
    return 0 if base == 0 else base + offset


def _up(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise CliError("-n must be at least 1")
    run_dir: Path = args.dir
    state_path = run_dir / STATE_FILE
    if state_path.exists() and any(_alive(n["pid"]) for n in json.loads(state_path.read_text())["nodes"]):
        raise CliError(f"a testnet is already running in {run_dir}; stop it with `p2pnode testnet down --dir {run_dir}`")
    run_dir.mkdir(parents=True, exist_ok=True)
    market = not args.no_market
    genesis = make_genesis(args.nodes, market, args.slot_ms, dict(args.param))
    (run_dir / "genesis.json").write_text(json.dumps(genesis, indent=2))
    nodes: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.timeout

    def save() -> None:
        state_path.write_text(json.dumps({"nodes": nodes, "genesis": str(run_dir / "genesis.json")}, indent=2))

    try:
        bootstrap: list[str] = []
        for i in range(args.nodes):
            role = ["--validator", "--dev-key", f"validator-{i}-hot"]
            if market and i < 2:
                role += ["--validate", "1"]
            extra = ["--listen", f"/ip4/127.0.0.1/tcp/{_port(args.base_port, 2 * i)}",
                     "--api-port", str(_port(args.base_port, 2 * i + 1))]
            entry = _spawn(run_dir, f"node-{i}", [*role, *extra, *(a for b in bootstrap for a in ("--bootstrap", b))])
            entry["role"] = "block validator" + (" + subnet validator" if "--validate" in role else "")
            nodes.append(entry)
            save()
            if i == 0:  # everyone bootstraps from the first peer; the DHT does the rest
                _wait_ready(entry, deadline)
                bootstrap = [a for a in entry["listen_addrs"] if "/tcp/" in a][:1]
        if market:
            _train_text_model(run_dir, deadline)
            for i, model in enumerate(MINER_MODELS):
                offset = 2 * (args.nodes + i)
                extra = ["--listen", f"/ip4/127.0.0.1/tcp/{_port(args.base_port, offset)}",
                         "--api-port", str(_port(args.base_port, offset + 1))]
                entry = _spawn(run_dir, f"miner-{i}", ["--dev-key", f"miner-{i}-hot", "--miner", model,
                                                       *extra, *(a for b in bootstrap for a in ("--bootstrap", b))])
                entry["role"] = f"miner ({model})"
                nodes.append(entry)
                save()
        for entry in nodes:
            _wait_ready(entry, deadline)
        save()
        _wait_finalizing(nodes, deadline)
    except BaseException as exc:
        save()
        _after_failed_up(exc, nodes, run_dir, keep=args.keep_on_failure)
        raise
    rows = _collect(nodes)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
        print(next_steps(rows[0]["api"], run_dir, market))
    return 0


def next_steps(api: str, run_dir: Path, market: bool) -> str:
    """Where the dashboard is and what to try next (printed at the end of `testnet up`)."""
    lines = [
        "",
        f"dashboard: {api}/",
        f"logs and data under {run_dir}/",
        "",
        "next, try:",
        f"  p2pnode status --api {api}",
        "  p2pnode keys new                                 # a wallet of your own",
        f"  p2pnode testnet faucet ADDRESS 100 --api {api}   # test TAO for its coldkey",
        f"  p2pnode wallet overview --api {api}",
    ]
    if market:
        lines += [f"  p2pnode subnet list --api {api}",
                  f"  p2pnode explain --netuid 1 --uid 1 --verify --api {api}   # after the first epochs"]
    lines += [f"  p2pnode doctor --api {api}",
              f"  p2pnode testnet down --dir {run_dir}"]
    return "\n".join(lines)


# The local network's development account that funds the faucet (every local genesis holds it).
FAUCET_KEY = "user-0"
FAUCET_MAX_RAO = 10_000 * TAO


def _faucet(args: argparse.Namespace) -> int:
    from p2pnode.chain.types import Transfer
    from p2pnode.cli.common import api_get, done_text, emit, parse_address, submit

    to = parse_address(args.address, "address")
    status = api_get(args, "/status")
    if status["chain_id"] != LOCAL_CHAIN_ID:
        raise CliError(f"the faucet works on the local network ({LOCAL_CHAIN_ID}) only; this node is on "
                       f"{status['chain_id']!r}")
    if args.amount > FAUCET_MAX_RAO:
        raise CliError(f"the faucet sends at most {FAUCET_MAX_RAO // TAO} TAO at a time")
    result = submit(args, dev_keypair(FAUCET_KEY), Transfer(to=to, amount=args.amount))
    emit(args, result, done_text(f"faucet: {args.amount / TAO:g} TAO to {args.address}", result))
    return 0


TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_text.py"
TRAIN_STEPS = 600


def _train_text_model(run_dir: Path, deadline: float) -> None:
    """Train the text-transformer once per run directory, so its miner starts serving at once.

    Without a checkpoint the miner would train at start inside its own process (and answer nothing
    meanwhile); trained here, while the validators connect, it is cached in DIR/models for later runs.
    """
    model_dir = run_dir / "models"
    checkpoint = model_dir / "text-transformer.pt"
    os.environ["P2PNODE_MODEL_DIR"] = str(model_dir.resolve())
    if checkpoint.exists() or not TRAIN_SCRIPT.exists():
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    print(f"training the text-transformer miner model once ({TRAIN_STEPS} steps) into {checkpoint} ...",
          file=sys.stderr, flush=True)
    with open(run_dir / "train.log", "ab") as log:
        try:
            subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--steps", str(TRAIN_STEPS), str(checkpoint)],
                           stdout=log, stderr=subprocess.STDOUT, check=True,
                           timeout=max(10.0, deadline - time.monotonic()))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise CliError(f"training the text model failed ({exc}); see {run_dir / 'train.log'}") from None


def _wait_finalizing(nodes: list[dict[str, Any]], deadline: float) -> None:
    # Peers already seen connected and finalizing are not asked again: finality only grows, and
    # with 32 peers on two cores every status request is CPU the peers need for themselves.
    waiting = list(nodes)
    while time.monotonic() < deadline:
        rows = _collect(waiting)
        waiting = [n for n, r in zip(waiting, rows, strict=True) if not (r.get("peers") and r.get("finalized_height"))]
        if not waiting:
            return
        dead = [n["name"] for n in nodes if not _alive(n["pid"])]
        if dead:
            raise CliError(f"{', '.join(dead)} stopped; see the logs under {Path(nodes[0]['log']).parent.parent}")
        time.sleep(0.5)  # polling other processes' APIs: there is no event to wait on
    raise CliError("the testnet did not reach finality in time; `p2pnode testnet status` and the logs say more")


def _collect(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entry in nodes:
        row: dict[str, Any] = {"name": entry["name"], "pid": entry["pid"], "peer_id": entry.get("peer_id"),
                               "api": entry.get("api"), "role": entry.get("role")}
        try:
            if not entry.get("api"):
                raise ApiError("not started")
            s = get_json(entry["api"], "/status", timeout=3.0)
            row.update(height=s["head_height"], finalized_height=s["finalized_height"],
                       finalized_hash=s["finalized_hash"], finalized_state_root=s["finalized_state_root"],
                       peers=s["peers"], running=True)
        except ApiError as exc:
            row.update(height=None, finalized_height=None, finalized_hash=None, finalized_state_root=None,
                       peers=None, running=_alive(entry["pid"]), error=str(exc))
        rows.append(row)
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'name':<9} {'pid':>7} {'height':>7} {'final':>7} {'peers':>5}  {'finalized root':<16}  {'peer id':<20} role")
    for r in rows:
        print(f"{r['name']:<9} {r['pid']:>7} {str(r['height']):>7} {str(r['finalized_height']):>7} "
              f"{str(r['peers']):>5}  {str(r['finalized_state_root'])[:16]:<16}  {str(r['peer_id'])[:20]:<20} {r.get('role') or ''}")


def _load(run_dir: Path) -> list[dict[str, Any]]:
    state_path = run_dir / STATE_FILE
    try:
        return list(json.loads(state_path.read_text())["nodes"])
    except FileNotFoundError:
        raise CliError(f"no testnet in {run_dir} (no {STATE_FILE})") from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{state_path} is not a testnet state file") from None


def _status(args: argparse.Namespace) -> int:
    rows = _collect(_load(args.dir))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0


def _after_failed_up(exc: BaseException, nodes: list[dict[str, Any]], run_dir: Path, *, keep: bool) -> None:
    """A failed `up` stops what it started (or, with --keep-on-failure, says what still runs).

    Raises a CliError that adds this to the failure's own message; other exceptions (Ctrl-C) are
    left to propagate after the peers are stopped.
    """
    running = [n for n in nodes if _alive(n["pid"])]
    if keep:
        if not running:
            return
        names = ", ".join(n["name"] for n in running)
        note = (f"{len(running)} peer(s) still run ({names}; logs under {run_dir}); "
                f"stop them with `p2pnode testnet down --dir {run_dir}`")
    else:
        stopped, killed = _stop(running)
        note = (f"stopped the {stopped} peer(s) this `up` had started" + (f" ({killed} killed)" if killed else "")
                + f"; their logs stay under {run_dir}")
    if isinstance(exc, CliError):
        raise CliError(f"{exc}\n{note}") from None
    print(note, file=sys.stderr)


def _stop(running: list[dict[str, Any]]) -> tuple[int, int]:
    """SIGTERM each peer, SIGKILL those still up after 15 s; returns (stopped, killed)."""
    for n in running:
        try:
            os.kill(n["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(n["pid"]) for n in running):
        time.sleep(0.1)  # waiting for other processes to exit: no event to wait on across processes
    stubborn = [n for n in running if _alive(n["pid"])]
    for n in stubborn:
        try:
            os.kill(n["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    for n in running:  # reap our own children so they do not linger as zombies
        child = _CHILDREN.get(n["pid"])
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    return len(running), len(stubborn)


def _down(args: argparse.Namespace) -> int:
    nodes = _load(args.dir)
    running = [n for n in nodes if _alive(n["pid"])]
    stopped, killed = _stop(running)
    print(f"stopped {stopped} peer(s)" + (f" ({killed} killed)" if killed else ""))
    return 0
