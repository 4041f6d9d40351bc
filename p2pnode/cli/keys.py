"""``p2pnode keys``: create, list, show, import and export keys.

A wallet is a name that holds one coldkey (funds and stake; encrypted) and any number of named
hotkeys (run neurons; unencrypted, mode 0600). The flags follow btcli: ``--wallet`` (alias
``--wallet.name``, ``--wallet-name``) and ``--hotkey`` (alias ``--wallet.hotkey``,
``--wallet-hotkey``) pick the key; without ``--hotkey`` a command acts on the coldkey. The keys
live under ``--keys-dir`` (alias ``--wallet.path``, ``--wallet-path``), else ``$P2PNODE_HOME``,
else ``~/.p2pnode``. The coldkey password comes from ``--password-file``, else
``$P2PNODE_PASSWORD``, else a prompt. docs/keys.md has the details.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pnode.chain.address import AddressError
from p2pnode.cli.errors import CliError
from p2pnode.keys import (
    KDF_ENV,
    KDF_FAST,
    KeyInfo,
    KeyStore,
    KeyStoreError,
    WalletInfo,
    default_home,
    kdf_params_from_env,
    parse_seed_hex,
    password_from,
)

DEFAULT_WALLET = "default"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` command group to the top-level parser."""
    keys = subparsers.add_parser(
        "keys",
        help="create, list, show, import and export keys",
        description=__doc__.split("\n\n")[1].replace("``", ""),
    )
    commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    _command(
        commands, "new", _new, (_add_key_selection, _add_password_file, _add_json),
        help="create a wallet's coldkey, or with --hotkey a hotkey",
        description="Create the wallet's coldkey (asks for a new password twice), or with --hotkey a "
        "named hotkey in the wallet. Existing keys are never replaced.",
    )
    _command(
        commands, "list", _list, (_add_keys_dir, _add_json),
        help="list wallets with their coldkey and hotkey addresses",
        description="List every wallet with its coldkey and hotkey addresses (no password needed).",
    )
    _command(
        commands, "show", _show, (_add_key_selection, _add_verify, _add_password_file, _add_json),
        help="show a wallet, or with --hotkey one hotkey",
        description="Show a wallet's keys, addresses, files and encryption, or with --hotkey one hotkey. "
        "With --verify, also decrypt the coldkey to check the password and the file.",
    )
    _command(
        commands, "import", _import, (_add_key_selection, _add_import_source, _add_password_file, _add_json),
        help="import a key from a secret seed or a key file",
        description="Import the wallet's coldkey, or with --hotkey a hotkey, from a 32-byte secret seed "
        "in hex (from --seed-file, '-' for standard input, or typed at a hidden prompt) or from a "
        "p2pnode key file (--key-file: a backup copy of a coldkey or hotkey file). A coldkey from a "
        "seed is encrypted under a new password; a coldkey file keeps its encryption and must open "
        "with its password before it is imported.",
    )
    _command(
        commands, "export-public", _export_public, (_add_key_selection, _add_public_format),
        help="print the address (or public key) of the coldkey, or with --hotkey a hotkey",
        description="Print the address of the wallet's coldkey, or with --hotkey a hotkey. No secret "
        "is read: this is what to give to others.",
    )


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    command: Callable[[argparse.Namespace], int],
    add_options: tuple[Callable[[argparse.ArgumentParser], None], ...],
    *,
    help: str,
    description: str,
) -> None:
    parser = commands.add_parser(name, help=help, description=description)
    for add in add_options:
        add(parser)
    parser.set_defaults(func=_run_with_errors(command))


def _add_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify",
        action="store_true",
        help="decrypt the coldkey (asks for its password) and check that it matches its address",
    )


def _add_import_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--seed-file", metavar="PATH", help="file holding the secret seed in hex ('-': stdin)"
    )
    source.add_argument("--key-file", metavar="PATH", type=Path, help="a p2pnode key file to copy in")


def _add_public_format(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--hex", action="store_true", help="print the public key in hex instead")
    output.add_argument(
        "--json", action="store_true", help="print wallet, kind, address and public key as JSON"
    )


def _add_keys_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys-dir",
        "--wallet.path",
        "--wallet-path",
        dest="keys_dir",
        metavar="DIR",
        type=Path,
        help="directory holding wallets/ (default: $P2PNODE_HOME, else ~/.p2pnode)",
    )


def _add_key_selection(parser: argparse.ArgumentParser) -> None:
    _add_keys_dir(parser)
    parser.add_argument(
        "--wallet",
        "--wallet.name",
        "--wallet-name",
        dest="wallet",
        metavar="NAME",
        default=DEFAULT_WALLET,
        help=f"wallet name (default: {DEFAULT_WALLET})",
    )
    parser.add_argument(
        "--hotkey",
        "--wallet.hotkey",
        "--wallet-hotkey",
        dest="hotkey",
        metavar="NAME",
        help="hotkey name; without it the command acts on the coldkey",
    )


def _add_password_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        metavar="PATH",
        type=Path,
        help="read the coldkey password from this file (else $P2PNODE_PASSWORD, else a prompt)",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _run_with_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the keystore's expected failures into one-line CLI errors."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (KeyStoreError, AddressError) as exc:
            raise CliError(_one_line(str(exc))) from None
        except OSError as exc:
            # The disk, not the keys: a full disk, a read-only or unreadable directory.
            where = f" {exc.filename}" if exc.filename else ""
            raise CliError(_one_line(f"{exc.strerror or exc}{where}")) from None

    return run


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _store(args: argparse.Namespace) -> KeyStore:
    home = args.keys_dir.expanduser() if args.keys_dir is not None else default_home()
    return KeyStore(home)


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def _warn_if_fast_kdf() -> None:
    if kdf_params_from_env() == KDF_FAST:
        print(
            f"p2pnode: warning: {KDF_ENV}=fast: this coldkey's password is cheap to guess; "
            "use it only for tests and local testnets",
            file=sys.stderr,
        )


def _print_created(info: KeyInfo, verb: str, as_json: bool) -> None:
    if as_json:
        _print_json(info.to_json())
        return
    name = f"hotkey {info.hotkey!r}" if info.hotkey is not None else "coldkey"
    print(f"{verb} {name} of wallet {info.wallet!r}: {info.address}")
    print(f"  file: {info.path}")
    if info.hotkey is None:
        print(
            "  keep a backup copy of this file and remember its password: the two together are the only way back"
        )


def _new(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.hotkey is not None:
        store.create_hotkey(args.wallet, args.hotkey)
        info = store.hotkey_info(args.wallet, args.hotkey)
    else:
        _refuse_existing_key(store, args.wallet, None)
        password = password_from(
            password_file=args.password_file, confirm=True, prompt="New coldkey password: "
        )
        store.create_coldkey(args.wallet, password)
        _warn_if_fast_kdf()
        info = store.coldkey_info(args.wallet)
    _print_created(info, "created", args.json)
    return 0


def _refuse_existing_key(store: KeyStore, wallet: str, hotkey: str | None) -> None:
    # Checked before any prompt, so nobody types a seed or a new password only to be refused.
    if hotkey is None:
        path, what = store.coldkey_path(wallet), "a coldkey"
    else:
        path, what = store.hotkey_path(wallet, hotkey), f"a hotkey {hotkey!r}"
    if os.path.lexists(path):
        raise CliError(f"wallet {wallet!r} already has {what} ({path}); keys are never replaced")


MAX_SEED_FILE_BYTES = 4096


def _read_seed(seed_file: str | None) -> bytes:
    if seed_file is None:
        try:
            text = getpass.getpass("Secret seed (64 hex digits): ")
        except EOFError:
            raise CliError("no secret seed given (type it at the prompt, or use --seed-file)") from None
    elif seed_file == "-":
        text = sys.stdin.readline()
    else:
        try:
            with open(seed_file, "rb") as handle:  # may be a pipe; a seed is 64 hex digits
                raw = handle.read(MAX_SEED_FILE_BYTES + 1)
            if len(raw) > MAX_SEED_FILE_BYTES:
                raise CliError(f"seed file {seed_file} is larger than {MAX_SEED_FILE_BYTES} bytes")
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(_one_line(f"cannot read seed file {seed_file}: {exc}")) from None
    return parse_seed_hex(text)


def _import(args: argparse.Namespace) -> int:
    store = _store(args)
    _refuse_existing_key(store, args.wallet, args.hotkey)
    if args.key_file is not None:
        password = None
        if args.hotkey is None:
            password = password_from(
                password_file=args.password_file, prompt="Password of the coldkey file: "
            )
        info = store.import_key_file(args.wallet, args.hotkey, args.key_file, password)
    elif args.hotkey is not None:
        store.create_hotkey(args.wallet, args.hotkey, seed=_read_seed(args.seed_file))
        info = store.hotkey_info(args.wallet, args.hotkey)
    else:
        seed = _read_seed(args.seed_file)
        password = password_from(
            password_file=args.password_file, confirm=True, prompt="New coldkey password: "
        )
        store.create_coldkey(args.wallet, password, seed=seed)
        _warn_if_fast_kdf()
        info = store.coldkey_info(args.wallet)
    _print_created(info, "imported", args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    wallets = store.list_wallets()
    if args.json:
        _print_json({"keys_dir": str(store.home), "wallets": [wallet.to_json() for wallet in wallets]})
        return 0
    if not wallets:
        print(f"no wallets in {store.wallets_dir} (create one: p2pnode keys new --wallet NAME)")
        return 0
    for wallet in wallets:
        _print_wallet_summary(wallet)
    return 0


def _print_wallet_summary(wallet: WalletInfo) -> None:
    print(f"wallet {wallet.name}")
    if wallet.coldkey is not None:
        print(f"  coldkey          {wallet.coldkey.address}")
    else:
        print("  coldkey          (not on this machine)")
    width = max((len(hotkey.hotkey or "") for hotkey in wallet.hotkeys), default=0)
    for hotkey in wallet.hotkeys:
        print(f"  hotkey  {hotkey.hotkey:<{max(width, 8)}} {hotkey.address}")


def _describe_key(info: KeyInfo) -> list[str]:
    lines = [
        f"  address:     {info.address}",
        f"  public key:  {info.public_key.hex()}",
        f"  file:        {info.path}",
    ]
    if info.kdf is not None:
        lines.append(
            f"  encryption:  argon2id (opslimit {info.kdf.opslimit}, memlimit {info.kdf.memlimit // 1024} KiB)"
            " + xsalsa20-poly1305"
        )
    else:
        lines.append("  encryption:  none (hotkey; protected by file mode 0600)")
    return lines


def _show(args: argparse.Namespace) -> int:
    store = _store(args)
    verified = None
    if args.hotkey is not None:
        info = store.hotkey_info(args.wallet, args.hotkey)  # loads and checks the seed
        document: dict[str, Any] = info.to_json()
        lines = [f"hotkey {args.hotkey} of wallet {args.wallet}", *_describe_key(info)]
    else:
        wallet = store.wallet_info(args.wallet)
        if args.verify:
            if wallet.coldkey is None:
                raise CliError(f"wallet {args.wallet!r} has no coldkey on this machine to verify")
            password = password_from(password_file=args.password_file, prompt="Coldkey password: ")
            store.load_coldkey(args.wallet, password)
            verified = True
        document = wallet.to_json()
        lines = [f"wallet {wallet.name}"]
        if wallet.coldkey is not None:
            lines += ["coldkey", *_describe_key(wallet.coldkey)]
            if verified:
                lines.append("  verified:    the password opens it and the key matches its address")
        else:
            lines.append("coldkey: not on this machine")
        for hotkey in wallet.hotkeys:
            lines += [f"hotkey {hotkey.hotkey}", *_describe_key(hotkey)]
        if not wallet.hotkeys:
            lines.append("hotkeys: none")
    if args.json:
        if verified:
            document["verified"] = True
        _print_json(document)
    else:
        print("\n".join(lines))
    return 0


def _export_public(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.hotkey is not None:
        info = store.hotkey_info(args.wallet, args.hotkey)
    else:
        info = store.coldkey_info(args.wallet)
    if args.json:
        _print_json(
            {
                "wallet": info.wallet,
                "kind": info.kind,
                "hotkey": info.hotkey,
                "address": info.address,
                "public_key": info.public_key.hex(),
            }
        )
    elif args.hex:
        print(info.public_key.hex())
    else:
        print(info.address)
    return 0
