"""Shared pieces of CLI commands: the API option, output, and signing and submitting transactions."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from p2pnode.chain.address import AddressError, decode_address
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import SignedTx, make_tx
from p2pnode.cli.errors import CliError
from p2pnode.cli.keys import DEFAULT_WALLET
from p2pnode.cli.client import DEFAULT_API, ApiError, get_json, post_bytes
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
    """Sign `body` with the next nonce of `signer` and submit it to the node; returns the node's answer."""
    status = api_get(args, "/status")
    account = api_get(args, f"/accounts/{signer.address}")
    fee = args.fee if getattr(args, "fee", None) is not None else status["min_fee"]
    nonce = account["nonce"] + account.get("pending_txs", 0)
    tx = make_tx(status["chain_id"], signer.public_key, nonce, fee, body)
    stx = SignedTx(tx=tx, sig=signer.sign(tx.signing_bytes()))
    try:
        return post_bytes(args.api, "/tx", codec.encode(stx))  # type: ignore[no-any-return]
    except ApiError as exc:
        raise CliError(f"transaction refused: {exc}") from None


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if getattr(args, "json", False) else text)
