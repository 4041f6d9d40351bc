"""Shared pieces of CLI commands: the API option, output, and signing and submitting transactions."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from p2pnode.chain.address import AddressError, decode_address
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import SignedTx, make_tx
from p2pnode.cli.client import DEFAULT_API, ApiError, get_json, post_bytes
from p2pnode.cli.errors import CliError
from p2pnode.cli.keys import DEFAULT_WALLET
from p2pnode.keys import KeyStore, KeyStoreError, default_home, password_from
from protocols import codec
from protocols.crypto import Keypair

API_ENV = "P2PNODE_API"


def add_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=os.environ.get(API_ENV, DEFAULT_API),
                        help=f"node API URL (default: ${API_ENV}, else {DEFAULT_API})")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_signer(parser: argparse.ArgumentParser, *, hotkey: bool = False) -> None:
    parser.add_argument("--keys-dir", type=Path, help="directory holding wallets/ (default: $P2PNODE_HOME or ~/.p2pnode)")
    parser.add_argument("--wallet", default=DEFAULT_WALLET, help=f"wallet name (default: {DEFAULT_WALLET})")
    if hotkey:
        parser.add_argument("--hotkey", default="default", help="hotkey name that signs (default: default)")
    parser.add_argument("--password-file", type=Path, help="coldkey password file (else $P2PNODE_PASSWORD or a prompt)")
    parser.add_argument("--fee", type=int, default=None, help="fee in rao (default: the chain's minimum)")
    add_wait(parser)


def add_tx_options(parser: argparse.ArgumentParser, *, hotkey: bool = False) -> None:
    """The options of a command that submits a transaction: signer, fee, waiting, API, --json."""
    add_signer(parser, hotkey=hotkey)
    add_api(parser)
    add_json(parser)


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """The options of a command that reads from the node: API, --json."""
    add_api(parser)
    add_json(parser)


def add_wait(parser: argparse.ArgumentParser) -> None:
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait", choices=("included", "finalized"), default="included",
                      help="wait until the transaction is in a block (default) or in a finalized block")
    wait.add_argument("--no-wait", dest="wait", action="store_const", const="none",
                      help="return once the node admitted the transaction")
    parser.add_argument("--wait-timeout", type=float, default=120.0, metavar="S",
                        help="give up waiting after S seconds (default: 120)")


def load_signer(args: argparse.Namespace, *, hotkey: bool = False) -> Keypair:
    store = KeyStore(args.keys_dir or default_home())
    try:
        if hotkey:
            return store.load_hotkey(args.wallet, args.hotkey)
        return store.load_coldkey(args.wallet, password_from(password_file=args.password_file))
    except KeyStoreError as exc:
        raise CliError(str(exc).splitlines()[0]) from None


def api_get(args: argparse.Namespace, path: str) -> Any:
    try:
        return get_json(args.api, path)
    except ApiError as exc:
        raise CliError(str(exc)) from None


def parse_address(text: str, what: str) -> bytes:
    try:
        return decode_address(text)
    except AddressError as exc:
        raise CliError(f"{what}: {exc}") from None


def submit(args: argparse.Namespace, signer: Keypair, body: ChainObject) -> dict[str, Any]:
    """Sign `body` with the next nonce of `signer`, submit it to the node and (unless --no-wait) wait
    until it is in a block (or a finalized one); returns the node's answer with "included" added.

    A refusal, at admission or while waiting, is a CliError naming the reason."""
    answer = submit_only(args, signer, body)
    mode = getattr(args, "wait", "none")
    if mode != "none":
        answer["included"] = wait_for_inclusion(args, answer["tx"], answer["since_height"], mode)
    return answer


def wait_for_inclusion(args: argparse.Namespace, tx_id: str, since: int, mode: str) -> dict[str, Any]:
    """Poll the node until the transaction is included (and finalized, for mode "finalized")."""
    deadline = time.monotonic() + getattr(args, "wait_timeout", 120.0)
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = api_get(args, f"/tx/{tx_id}?since={since}")
        if last["status"] == "included" and (mode == "included" or last["finalized"]):
            return last
        if last["status"] == "unknown":
            raise CliError(f"transaction {tx_id[:16]} left the mempool without being included "
                           "(replaced by another with the same nonce, or it no longer applies)")
        time.sleep(0.5)
    if last.get("status") == "pending" and last.get("problem"):
        raise CliError(f"transaction {tx_id[:16]} not included within {args.wait_timeout:g} s: "
                       f"it would be refused now: {last['problem']}")
    where = "included but not yet finalized" if last.get("status") == "included" else "still pending"
    raise CliError(f"transaction {tx_id[:16]} {where} after {args.wait_timeout:g} s "
                   "(check the node: p2pnode status; or use --no-wait)")


def submit_only(args: argparse.Namespace, signer: Keypair, body: ChainObject) -> dict[str, Any]:
    """Sign and submit; the node's answer plus `since_height`, the head height before submission."""
    status = api_get(args, "/status")
    account = api_get(args, f"/accounts/{signer.address}")
    fee = args.fee if getattr(args, "fee", None) is not None else status["min_fee"]
    nonce = account["nonce"] + account.get("pending_txs", 0)
    tx = make_tx(status["chain_id"], signer.public_key, nonce, fee, body)
    stx = SignedTx(tx=tx, sig=signer.sign(tx.signing_bytes()))
    try:
        answer: dict[str, Any] = post_bytes(args.api, "/tx", codec.encode(stx))
    except ApiError as exc:
        raise CliError(f"transaction refused: {exc}") from None
    answer["since_height"] = status["head_height"]
    return answer


def done_text(what: str, result: dict[str, Any]) -> str:
    """One line: the transaction, and where it landed when the command waited."""
    included = result.get("included")
    if included is None:
        return f"{what}: transaction {result['tx']} submitted"
    state = "finalized" if included["finalized"] else "included"
    return f"{what}: transaction {result['tx']} {state} in block {included['height']} ({included['block'][:16]})"


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if getattr(args, "json", False) else text)
