"""`p2pnode join` (run a peer) and `p2pnode status` (ask a running peer)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import trio

from p2pnode.chain.genesis import GenesisError
from p2pnode.cli.common import add_read_options, api_get, emit
from p2pnode.cli.errors import CliError
from p2pnode.cli.keys import DEFAULT_WALLET
from p2pnode.cli.market import resolve_miner_device
from p2pnode.cli.profiling import profiler_from_env
from p2pnode.keys import KeyStore, KeyStoreError, default_home
from p2pnode.net.addresses import DEFAULT_P2P_PORT, AddressError, default_listen_addrs

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    join = subparsers.add_parser("join", help="run a peer on a network")
    join.add_argument("--network", default="devnet", help="network name under testnet/ or a genesis file path")
    join.add_argument("--data-dir", type=Path, help="chain data directory (default: ~/.p2pnode/<network>)")
    join.add_argument("--keys-dir", type=Path, help="directory holding wallets/ (default: $P2PNODE_HOME or ~/.p2pnode)")
    join.add_argument("--wallet", default=DEFAULT_WALLET, help="wallet whose hotkey is this peer's identity")
    join.add_argument("--hotkey", default="default", help="hotkey name (default: default)")
    join.add_argument("--create-keys", action="store_true", help="create the wallet's hotkey if it does not exist")
    join.add_argument("--dev-key", metavar="NAME", help="use a well-known development key instead (local testnets only)")
    join.add_argument("--validator", action="store_true", help="produce blocks and vote for finality (block validator)")
    join.add_argument("--miner", metavar="MODEL", help="serve MODEL (a registered name or package.module:factory)")
    join.add_argument("--netuid", type=int, default=1, help="subnet the miner serves (default: 1)")
    join.add_argument("--device", default="cpu", metavar="DEVICE",
                      help="where the miner's model runs: cpu (default), cuda, cuda:N or auto (a GPU if torch sees one)")
    join.add_argument("--validate", metavar="NETUID", type=int, help="run the validator loop on this subnet")
    join.add_argument("--validator-round", type=float, default=6.0, help="seconds between validator rounds")
    join.add_argument("--challenge-data", type=Path, metavar="PATH",
                      help="the subnet validator's private challenges (text: a UTF-8 text file; forecast: one "
                           "series per line); default: challenges generated afresh")
    join.add_argument("--weight-sharpness", type=float, default=2.0, metavar="P",
                      help="subnet validator weights = (score margin over the task's baseline) ** P (default 2)")
    join.add_argument("--listen", action="append", metavar="MULTIADDR",
                      help="listen address; repeatable (default: every interface, IPv4 and IPv6, TCP port --port)")
    join.add_argument("--port", type=int, default=DEFAULT_P2P_PORT,
                      help=f"TCP port of the default listen addresses (default: {DEFAULT_P2P_PORT})")
    join.add_argument("--announce", action="append", default=[], metavar="MULTIADDR",
                      help="address to give out instead of the listen addresses, e.g. /ip4/203.0.113.7/tcp/30633 "
                           "(a port forward or cloud NAT); repeatable")
    relay = join.add_mutually_exclusive_group()
    relay.add_argument("--relay-service", dest="relay_service", action="store_true", default=None,
                       help="relay connections for peers behind NAT (default: on for --validator)")
    relay.add_argument("--no-relay-service", dest="relay_service", action="store_false",
                       help="do not relay for others")
    join.add_argument("--upnp", action="store_true",
                      help="ask a UPnP router on the LAN to forward the listen port (off by default)")
    join.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR", help="bootstrap peer; repeatable")
    join.add_argument("--api-port", type=int, default=8545, help="local HTTP API port on 127.0.0.1 (0: any free port)")
    join.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    join.add_argument("--no-progress", action="store_true", help="no sync progress bar")
    join.add_argument("--checkpoint-sync", action="store_true",
                      help="a fresh data directory joins at the finalized checkpoint its peers advertise "
                           "(state fetched and checked against the checkpoint's root) instead of replaying from genesis")
    join.add_argument("--checkpoint", metavar="HASH",
                      help="with --checkpoint-sync: trust this finalized block hash (hex) instead of checking "
                           "finality votes against the genesis validators (weak subjectivity)")
    join.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    join.set_defaults(func=_join)

    status = subparsers.add_parser("status", help="the state of a running peer")
    add_read_options(status)
    status.set_defaults(func=_status)

    root = subparsers.add_parser(
        "genesis-root", help="the genesis state root of a network (pin it in the file with --write)",
        description="Builds the genesis state and prints its root. With --write the root is pinned in the file "
                    "(\"state_root\"): peers check it, and a fresh peer joining with --checkpoint-sync uses it "
                    "instead of hashing every genesis account.")
    root.add_argument("--network", default="devnet", help="network name under testnet/ or a genesis file path")
    root.add_argument("--write", action="store_true", help="add the root to the genesis file")
    root.set_defaults(func=_genesis_root)


def _genesis_root(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from p2pnode.chain.genesis import build_genesis_state
    from p2pnode.genesis_file import genesis_path, load_genesis

    try:
        genesis, _ = load_genesis(args.network)
        _, _, header = build_genesis_state(dataclasses.replace(genesis, state_root=None))  # a new pin replaces an old one
    except GenesisError as exc:
        raise CliError(f"genesis: {exc}") from None
    root = header.state_root.hex()
    if args.write:
        path = genesis_path(args.network)
        doc = json.loads(path.read_text())
        doc["state_root"] = root
        path.write_text(json.dumps(doc, indent=1) + "\n")
    print(root)
    return 0


def _hotkey(args: argparse.Namespace):  # -> Keypair
    if args.dev_key:
        from p2pnode.genesis_file import dev_keypair

        return dev_keypair(args.dev_key)
    store = KeyStore(args.keys_dir or default_home())
    try:
        return store.load_hotkey(args.wallet, args.hotkey)
    except KeyStoreError as exc:
        if args.create_keys:
            try:
                return store.create_hotkey(args.wallet, args.hotkey)
            except KeyStoreError as again:
                raise CliError(str(again)) from None
        raise CliError(f"{exc} (create it with `p2pnode keys new --wallet {args.wallet} --hotkey {args.hotkey}` "
                       "or pass --create-keys)") from None


def _join(args: argparse.Namespace) -> int:
    from p2pnode.peer import PeerOptions, run_peer
    from p2pnode.store import StoreError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    network_name = Path(args.network).stem if args.network.endswith(".json") else args.network
    data_dir = args.data_dir or default_home() / network_name
    miner_device = resolve_miner_device(args.device) if args.miner else "cpu"
    if not 0 < args.weight_sharpness <= 16:
        raise CliError("--weight-sharpness must be above 0 and at most 16")
    checkpoint = None
    if args.checkpoint is not None:
        try:
            checkpoint = bytes.fromhex(args.checkpoint)
        except ValueError:
            checkpoint = b""
        if len(checkpoint) != 32:
            raise CliError("--checkpoint must be a block hash: 64 hex digits")
        if not args.checkpoint_sync:
            raise CliError("--checkpoint needs --checkpoint-sync")
    options = PeerOptions(
        genesis=args.network,
        data_dir=data_dir,
        hotkey=_hotkey(args),
        validator=args.validator,
        miner_model=args.miner,
        miner_netuid=args.netuid,
        miner_device=miner_device,
        validate_netuid=args.validate,
        validator_round_s=args.validator_round,
        challenge_data=args.challenge_data,
        weight_sharpness=args.weight_sharpness,
        listen=args.listen or default_listen_addrs(args.port),
        announce=args.announce,
        relay_service=args.relay_service,
        upnp=args.upnp,
        bootstrap=args.bootstrap,
        api_port=args.api_port,
        progress=not args.no_progress and os.isatty(2),
        ready_file=args.ready_file,
        checkpoint_sync=args.checkpoint_sync,
        checkpoint=checkpoint,
    )
    from p2pnode.services.chain.checkpoint import CheckpointSyncError

    profiler = profiler_from_env()
    try:
        trio.run(run_peer, options)
    except BaseExceptionGroup as group:  # trio's nurseries wrap what a task raised
        failed = group.subgroup(CheckpointSyncError)
        if failed is None:
            raise
        while isinstance(failed, BaseExceptionGroup):
            failed = failed.exceptions[0]
        raise CliError(f"checkpoint sync failed: {failed}") from None
    except (GenesisError, StoreError) as exc:
        raise CliError(str(exc)) from None
    except AddressError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot start the peer: {exc}") from None
    finally:
        if profiler is not None:  # stopped while profiling: keep what was measured
            profiler.stop()
    return 0


def _role_lines(roles: dict[str, object]) -> list[str]:
    """What the market roles are doing (the peer's one-line state of each), when it runs any."""
    lines = []
    if roles.get("miner_status"):
        lines.append(f"miner:      {roles.get('miner')} on subnet {roles.get('miner_netuid')}: {roles['miner_status']}")
    if roles.get("subnet_validator_status"):
        lines.append(f"validating: subnet {roles.get('subnet_validator')}: {roles['subnet_validator_status']}")
    return lines


def _status(args: argparse.Namespace) -> int:
    s = api_get(args, "/status")
    net = s.get("network") or {}
    announced = net.get("announced_addrs") or []
    relays = net.get("relay_reservations") or []
    text = "\n".join([
        f"chain:      {s['chain_id']} (genesis {s['genesis_hash'][:16]})",
        f"peer id:    {s['peer_id']}",
        f"head:       height {s['head_height']} slot {s['head_slot']} {s['head_hash'][:16]}",
        f"finalized:  height {s['finalized_height']} {str(s['finalized_hash'])[:16]}",
        f"peers:      {s['peers']}   mempool: {s['mempool']}   syncing: {s['syncing']}",
        f"reachable:  {net.get('reachability', '?')}   dht: {net.get('dht_mode', '?')}"
        + (f"   relaying for others ({net.get('relayed_circuits', 0)} circuits)" if net.get("relay_service") else ""),
        f"relays:     {', '.join(r[:16] + '…' for r in relays) if relays else 'none'}"
        + (f"   hole punches: {punches['succeeded']} direct, {punches['failed']} failed"
           if (punches := net.get("hole_punches")) else ""),
        *[f"announce:   {a}" for a in announced or ["(nothing yet)"]],
        f"protocol:   v{s['protocol_version']} (supports {s['supported_versions']})"
        + (f"   HALTED: {s['halted']}" if s.get("halted") else ""),
        *_role_lines(s.get("roles") or {}),
    ])
    emit(args, s, text)
    return 0
