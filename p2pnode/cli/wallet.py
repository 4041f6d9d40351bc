"""`p2pnode wallet overview`: balances, stakes, registrations and earnings of a wallet's keys.

Reads the wallet's addresses from the key files (no password needed: only public parts are read)
and everything else from a node's API.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from p2pnode.chain.params import TAO
from p2pnode.cli.common import add_read_options, api_get, emit
from p2pnode.cli.errors import CliError
from p2pnode.cli.keys import DEFAULT_WALLET
from p2pnode.keys import KeyStore, KeyStoreError, WalletInfo, default_home


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wallet = subparsers.add_parser("wallet", help="a wallet's balances, stakes, registrations and earnings")
    sub = wallet.add_subparsers(dest="wallet_command", metavar="COMMAND", required=True)
    overview = sub.add_parser(
        "overview", help="per key: balance, stake, registrations and the last epoch's earnings",
        description="For the wallet's coldkey: balance and stake per hotkey. For each of its hotkeys: "
        "balance, stake and, on every subnet it is registered on, uid, permit, incentive, dividends and "
        "the last epoch's emission. Amounts in TAO.",
    )
    overview.add_argument("--keys-dir", type=Path, help="directory holding wallets/ (default: $P2PNODE_HOME or ~/.p2pnode)")
    overview.add_argument("--wallet", default=DEFAULT_WALLET, help=f"wallet name (default: {DEFAULT_WALLET})")
    overview.add_argument("--all", action="store_true", help="every wallet under the keys directory")
    add_read_options(overview)
    overview.set_defaults(func=cmd_overview)


def cmd_overview(args: argparse.Namespace) -> int:
    store = KeyStore(args.keys_dir or default_home())
    try:
        wallets = store.list_wallets() if args.all else [store.wallet_info(args.wallet)]
    except KeyStoreError as exc:
        raise CliError(f"{str(exc).splitlines()[0]} (create one with `p2pnode keys new`)") from None
    if not wallets:
        raise CliError(f"no wallets under {store.wallets_dir} (create one with `p2pnode keys new`)")
    rows_by_hotkey = _registrations(args)
    docs = [_wallet_doc(args, wallet, rows_by_hotkey) for wallet in wallets]
    emit(args, docs if args.all else docs[0], "\n\n".join(_render(doc) for doc in docs))
    return 0


def _registrations(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """hotkey address -> its metagraph rows (with netuid), over every subnet but root."""
    found: dict[str, list[dict[str, Any]]] = {}
    for subnet in api_get(args, "/subnets"):
        if subnet["netuid"] == 0:
            continue
        for row in api_get(args, f"/metagraph/{subnet['netuid']}"):
            found.setdefault(row["hotkey"], []).append(dict(row, netuid=subnet["netuid"]))
    return found


def _wallet_doc(args: argparse.Namespace, wallet: WalletInfo, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"wallet": wallet.name, "coldkey": None, "hotkeys": []}
    if wallet.coldkey is not None:
        account = api_get(args, f"/accounts/{wallet.coldkey.address}")
        doc["coldkey"] = {"address": wallet.coldkey.address, "balance": account["balance"],
                          "stake": account["stake"], "total_stake": account["total_stake"]}
    for hotkey in wallet.hotkeys:
        account = api_get(args, f"/accounts/{hotkey.address}")
        registrations = [
            {"netuid": r["netuid"], "uid": r["uid"], "stake": r["stake"], "validator_permit": r["validator_permit"],
             "incentive": r["incentive"], "dividends": r["dividends"], "emission": r["emission"],
             "active": r["active"], "serving": bool(r["peer_id"])}
            for r in rows.get(hotkey.address, [])
        ]
        doc["hotkeys"].append({"name": hotkey.hotkey, "address": hotkey.address, "balance": account["balance"],
                               "registrations": registrations})
    cold = doc["coldkey"]
    doc["totals"] = {
        "balance": (cold["balance"] if cold else 0) + sum(h["balance"] for h in doc["hotkeys"]),
        "stake": cold["total_stake"] if cold else 0,
        "last_epoch_emission": sum(r["emission"] for h in doc["hotkeys"] for r in h["registrations"]),
    }
    return doc


def _tao(rao: int) -> str:
    return f"{rao / TAO:,.4f}"


def _render(doc: dict[str, Any]) -> str:
    lines = [f"wallet {doc['wallet']}"]
    cold = doc["coldkey"]
    if cold is None:
        lines.append("  coldkey: not on this machine")
    else:
        lines.append(f"  coldkey {cold['address']}: balance {_tao(cold['balance'])} TAO, "
                     f"staked {_tao(cold['total_stake'])} TAO")
        lines += [f"    stake on {s['hotkey']}: {_tao(s['amount'])} TAO" for s in cold["stake"]]
    header = ("hotkey", "netuid", "uid", "stake", "permit", "incentive", "dividends", "emission", "serving")
    table = [header]
    for hot in doc["hotkeys"]:
        lines.append(f"  hotkey {hot['name']} {hot['address']}: balance {_tao(hot['balance'])} TAO")
        for r in hot["registrations"]:
            table.append((hot["name"], str(r["netuid"]), str(r["uid"]), _tao(r["stake"]),
                          "yes" if r["validator_permit"] else "-", f"{r['incentive']:.4f}", f"{r['dividends']:.4f}",
                          _tao(r["emission"]), "yes" if r["serving"] else "-"))
    if len(table) > 1:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines.append("")
        lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    elif doc["hotkeys"]:
        lines.append("  no hotkey is registered on a subnet (p2pnode subnet register --netuid N --hotkey ADDRESS)")
    totals = doc["totals"]
    lines.append(f"  total: balance {_tao(totals['balance'])} TAO, staked {_tao(totals['stake'])} TAO, "
                 f"earned last epoch {_tao(totals['last_epoch_emission'])} TAO")
    return "\n".join(lines)
