"""`p2pnode doctor`: what is wrong with this peer, each finding with a one-line remedy.

Checks, in order: the node's API, key files and their modes, the data directory, listen ports,
peers, the clock against the proposers of recent blocks, sync, registration, serving (a miner),
weights set and revealed (a subnet validator), and earnings. Local checks run even when the node
is down. The exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.chain.params import TAO
from p2pnode.cli.client import ApiError, get_json
from p2pnode.cli.common import add_api, add_json, emit
from p2pnode.keys import default_home

# Blocks of others normally arrive well within a slot; beyond this the clock is off.
CLOCK_WARN_MS = 2_000
SYNC_WARN_SLOTS = 8
MIN_FREE_BYTES = 1 << 30


@dataclass
class Finding:
    check: str
    status: str  # ok, info, warn, fail
    message: str
    remedy: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "message": self.message, "remedy": self.remedy}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="diagnose this peer: keys, data, ports, peers, clock, sync, registration, weights",
        description="Check this machine's keys and data directory and the running peer (through its API): "
        "ports, peers, clock skew against the proposers of recent blocks, sync, registration, serving, "
        "weights set and revealed, earnings. Every finding has a one-line remedy; exit status 1 if any fails.",
    )
    add_api(parser)
    parser.add_argument("--keys-dir", type=Path, help="directory holding wallets/ (default: $P2PNODE_HOME or ~/.p2pnode)")
    parser.add_argument("--data-dir", type=Path, help="the peer's data directory (default: what the peer reports)")
    add_json(parser)
    parser.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    findings = diagnose(args.api, args.keys_dir or default_home(), args.data_dir)
    failed = any(f.status == "fail" for f in findings)
    emit(args, {"ok": not failed, "findings": [f.as_json() for f in findings]}, render(findings))
    return 1 if failed else 0


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{f.status:>4}] {f.check}: {f.message}")
        if f.remedy:
            lines.append(f"       -> {f.remedy}")
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    lines.append("all checks passed" if not failed and not warned else f"{failed} failed, {warned} warnings")
    return "\n".join(lines)


def diagnose(api: str, keys_dir: Path, data_dir: Path | None) -> list[Finding]:
    findings: list[Finding] = []
    try:
        status = get_json(api, "/status", timeout=10.0)
    except ApiError as exc:
        status = None
        findings.append(Finding("node", "fail", str(exc),
                                "start the peer (p2pnode join ...) or point --api / $P2PNODE_API at it"))
    else:
        findings.append(Finding("node", "ok", f"{status['chain_id']} peer {status['peer_id'][:16]}... at {api}"))
    findings += check_keys(keys_dir)
    reported = status.get("data_dir") if status else None
    findings += check_data_dir(data_dir or (Path(reported) if reported else None))
    if status is None:
        return findings
    findings += check_ports(status)
    findings += check_reachability(status)
    findings += check_peers(status)
    findings += check_clock(status)
    findings += check_sync(status)
    findings += check_roles(api, status)
    return findings


# ---------------------------------------------------------------- local checks


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_keys(keys_dir: Path) -> list[Finding]:
    wallets = keys_dir / "wallets"
    if not wallets.is_dir():
        return [Finding("keys", "info", f"no wallets under {keys_dir}",
                        "create one with `p2pnode keys new` (a peer on --dev-key needs none)")]
    loose = []
    for path in [wallets, *wallets.rglob("*")]:
        wanted = 0o700 if path.is_dir() else 0o600
        if _mode(path) & 0o077:
            loose.append((path, wanted))
    if loose:
        path, wanted = loose[0]
        return [Finding("keys", "fail", f"{len(loose)} key file(s) or folder(s) others may read, e.g. {path}",
                        f"chmod {wanted:o} {path} (and the same for the others)")]
    count = len([p for p in wallets.iterdir() if p.is_dir()])
    return [Finding("keys", "ok", f"{count} wallet(s) under {wallets}, owner-only")]


def check_data_dir(data_dir: Path | None) -> list[Finding]:
    if data_dir is None:
        return [Finding("data directory", "info", "unknown (the node is not reachable)", "pass --data-dir to check it")]
    if not data_dir.is_dir():
        return [Finding("data directory", "fail", f"{data_dir} does not exist",
                        "check --data-dir; the peer creates it on `p2pnode join`")]
    if not os.access(data_dir, os.W_OK):
        return [Finding("data directory", "fail", f"{data_dir} is not writable by this user",
                        f"run as the directory's owner or chown it: chown -R $USER {data_dir}")]
    findings = []
    if _mode(data_dir) & 0o077:
        findings.append(Finding("data directory", "warn", f"{data_dir} is readable by others", f"chmod 700 {data_dir}"))
    free = shutil.disk_usage(data_dir).free
    if free < MIN_FREE_BYTES:
        findings.append(Finding("disk", "warn", f"{free >> 20} MiB free under {data_dir}",
                                "free some space: the chain store grows with every block"))
    if not (data_dir / "chain.sqlite").exists():
        findings.append(Finding("data directory", "warn", f"no chain store in {data_dir}",
                                "is this the peer's --data-dir?"))
    if not findings:
        findings.append(Finding("data directory", "ok", f"{data_dir}, owner-only, {free >> 30} GiB free"))
    return findings


# ---------------------------------------------------------------- node checks


def _tcp_endpoint(addr: str) -> tuple[str, int] | None:
    parts = addr.strip("/").split("/")
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[2] == "tcp":
        try:
            return parts[1], int(parts[3])
        except ValueError:
            return None
    return None


def _loopback_only(addrs: list[str]) -> bool:
    return bool(addrs) and all(a.startswith(("/ip4/127.", "/ip6/::1/")) for a in addrs)


def check_ports(status: dict[str, Any]) -> list[Finding]:
    addrs = status.get("listen_addrs") or []
    if not addrs:
        return [Finding("ports", "fail", "the peer listens on no address", "pass --listen /ip4/0.0.0.0/tcp/PORT")]
    unreachable = []
    for addr in addrs:
        endpoint = _tcp_endpoint(addr)
        if endpoint is None:
            continue
        host, port = endpoint
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        try:
            with socket.create_connection((host, port), timeout=3):
                pass
        except OSError as exc:
            unreachable.append(f"{addr} ({exc.strerror or exc})")
    if unreachable:
        return [Finding("ports", "fail", "cannot connect to " + ", ".join(unreachable),
                        "open the port in the firewall, or listen on an address this host has")]
    if _loopback_only(addrs):
        return [Finding("ports", "warn", "listening on loopback only: " + ", ".join(addrs),
                        "fine for a local testnet; to reach others: --listen /ip4/0.0.0.0/tcp/PORT")]
    return [Finding("ports", "ok", "accepting connections on " + ", ".join(addrs))]


def check_reachability(status: dict[str, Any]) -> list[Finding]:
    """AutoNAT's verdict: can other peers dial this one?"""
    net = status.get("network") or {}
    verdict = net.get("reachability")
    if _loopback_only(status.get("listen_addrs") or []):
        return [Finding("reachability", "info", f"AutoNAT: {verdict or 'unknown'} (loopback only: a local network)")]
    if verdict == "public":
        return [Finding("reachability", "ok", "peers can dial this node (AutoNAT: public)")]
    if verdict == "private":
        relays = net.get("relay_reservations") or []
        remedy = "forward the TCP port to this host and pass --announce /ip4/PUBLIC_IP/tcp/PORT"
        if relays:
            return [Finding("reachability", "warn", f"peers cannot dial this node directly; reachable through "
                            f"{len(relays)} relay(s)", remedy)]
        return [Finding("reachability", "fail", "peers cannot dial this node and it holds no relay reservation",
                        remedy)]
    return [Finding("reachability", "info", "not known yet (AutoNAT needs peers to ask)")]


def check_peers(status: dict[str, Any]) -> list[Finding]:
    if status["peers"] == 0:
        return [Finding("peers", "fail", "no connected peers",
                        "pass --bootstrap /ip4/HOST/tcp/PORT/p2p/PEERID of a running peer (or check the firewall)")]
    return [Finding("peers", "ok", f"{status['peers']} connected")]


def check_clock(status: dict[str, Any]) -> list[Finding]:
    delay, samples = status.get("block_delay_ms"), status.get("block_delay_samples", 0)
    if delay is None or not samples:
        return [Finding("clock", "info", "no blocks from other proposers seen yet: skew unknown")]
    if abs(delay) > CLOCK_WARN_MS:
        direction = "ahead of" if delay > 0 else "behind"
        return [Finding("clock", "fail",
                        f"this clock looks {abs(delay) / 1000:.1f} s {direction} the block proposers' "
                        f"(median over {samples} blocks)",
                        "synchronise the system clock (timedatectl set-ntp true, or chrony/ntpd)")]
    return [Finding("clock", "ok", f"blocks arrive {delay} ms after their slot starts (median of {samples})")]


def check_sync(status: dict[str, Any]) -> list[Finding]:
    behind = status["current_slot"] - status["head_slot"]
    if status["syncing"] or behind > SYNC_WARN_SLOTS:
        return [Finding("sync", "warn", f"head at height {status['head_height']}, {behind} slots behind the clock",
                        "wait for sync; if it does not move, check peers and the clock")]
    return [Finding("sync", "ok", f"head at height {status['head_height']}, finalized {status['finalized_height']}")]


def _registrations(api: str, hotkey: str) -> dict[int, dict[str, Any]]:
    """netuid -> this hotkey's metagraph row, over every subnet."""
    found = {}
    for subnet in get_json(api, "/subnets"):
        for row in get_json(api, f"/metagraph/{subnet['netuid']}"):
            if row["hotkey"] == hotkey:
                found[subnet["netuid"]] = row
    return found


_REMEDIES = {
    "insufficient_balance": "fund the hotkey for fees: p2pnode transfer {hotkey} 1",
    "free_duty_rate_limited": "fund the hotkey for fees: p2pnode transfer {hotkey} 1",
    "not_registered": "register the hotkey: p2pnode subnet register --netuid {netuid} --hotkey {hotkey}",
    "stake_below_threshold": "stake on the hotkey: p2pnode stake add {hotkey} AMOUNT",
    "no_validator_permit": "a permit needs stake among the subnet's top validators: p2pnode stake add {hotkey} AMOUNT",
}


def _remedy(reason: str, hotkey: str, netuid: int) -> str:
    return _REMEDIES.get(reason, "see the peer's log for the refused transaction").format(hotkey=hotkey, netuid=netuid)


def check_roles(api: str, status: dict[str, Any]) -> list[Finding]:
    hotkey, roles = status["hotkey"], status.get("roles") or {}
    refusals = status.get("own_tx_refusals") or {}
    try:
        registered = _registrations(api, hotkey)
        account = get_json(api, f"/accounts/{hotkey}")
    except ApiError as exc:
        return [Finding("registration", "fail", f"cannot read the chain: {exc}", "check the node's log")]
    findings: list[Finding] = []
    wanted = {}
    if roles.get("miner"):
        wanted[roles.get("miner_netuid") or 1] = "miner"
    if roles.get("subnet_validator") is not None:
        wanted[roles["subnet_validator"]] = "validator"
    for netuid, role in sorted(wanted.items()):
        if netuid not in registered:
            findings.append(Finding("registration", "fail", f"the {role} hotkey {hotkey} is not registered on netuid {netuid}",
                                    _remedy("not_registered", hotkey, netuid)))
    if not wanted:
        findings.append(Finding("registration", "info", "registered on netuid(s) " + (
            ", ".join(map(str, sorted(registered))) or "none") + " (this peer runs no miner or subnet validator)"))
    elif all(n in registered for n in wanted):
        findings.append(Finding("registration", "ok", ", ".join(
            f"{role} uid {registered[n]['uid']} on netuid {n}" for n, role in sorted(wanted.items()))))
    if roles.get("miner") and (roles.get("miner_netuid") or 1) in registered:
        findings.append(check_serving(status, registered[roles.get("miner_netuid") or 1], refusals, roles.get("miner_netuid") or 1))
    validate = roles.get("subnet_validator")
    if validate is not None and validate in registered:
        findings.append(check_weights(api, status, registered[validate], refusals, validate))
    if wanted and account["balance"] < 10_000 and not any(f.status == "fail" for f in findings):
        findings.append(Finding("fees", "warn", f"the hotkey holds {account['balance']} rao: too little for transaction fees",
                                _remedy("insufficient_balance", hotkey, 0)))
    findings += check_earnings(registered, account)
    return findings


def check_serving(status: dict[str, Any], row: dict[str, Any], refusals: dict[str, Any], netuid: int) -> Finding:
    hotkey = status["hotkey"]
    refused = refusals.get("serve")
    if refused is not None:
        return Finding("serving", "fail", f"the serve transaction was refused: {refused['reason']}",
                       _remedy(refused["reason"], hotkey, netuid))
    if row["peer_id"] != status["peer_id"]:
        return Finding("serving", "warn", "the chain does not yet list this peer as the uid's server",
                       "wait a few blocks: the miner announces itself with a serve transaction")
    return Finding("serving", "ok", f"uid {row['uid']} serves {row['model'] or '?'} at this peer")


def check_weights(api: str, status: dict[str, Any], row: dict[str, Any], refusals: dict[str, Any], netuid: int) -> Finding:
    hotkey = status["hotkey"]
    try:
        view = get_json(api, f"/explain/{netuid}/{row['uid']}")
    except ApiError as exc:
        return Finding("weights", "fail", f"cannot read the uid's weights: {exc}", "check the node's log")
    weights = view["current"]["inputs"]["weights"]
    commits = view.get("weight_commits", 0)
    refused = next((refusals[k] for k in ("set_weights", "commit_weights", "reveal_weights") if k in refusals), None)
    if refused is not None:
        return Finding("weights", "fail", f"a weights transaction was refused: {refused['reason']}",
                       _remedy(refused["reason"], hotkey, netuid))
    if not weights and commits:
        return Finding("weights", "warn", f"{commits} weight commit(s) on chain, none revealed yet",
                       "the reveal follows after the subnet's reveal period; keep the validator running")
    if not weights:
        return Finding("weights", "fail", f"uid {row['uid']} has set no weights on netuid {netuid}",
                       "the validator loop sets them once it has scored serving miners: check that miners serve "
                       "and the peer runs --validate " + str(netuid))
    age = status["head_height"] - row["last_update"]
    return Finding("weights", "ok", f"{len(weights)} weights on chain, last updated {age} blocks ago"
                   + (f"; {commits} commit(s) awaiting reveal" if commits else ""))


def check_earnings(registered: dict[int, dict[str, Any]], account: dict[str, Any]) -> list[Finding]:
    if not registered:
        return []
    parts = [f"netuid {n} uid {r['uid']}: {r['emission'] / TAO:g} TAO last epoch" for n, r in sorted(registered.items())]
    return [Finding("earnings", "info", "; ".join(parts) + f"; stake {sum(r['stake'] for r in registered.values()) / TAO:g} "
                    f"TAO, balance {account['balance'] / TAO:g} TAO")]
