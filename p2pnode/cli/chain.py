"""Chain commands through a node's API: `balance`, `transfer`, `stake add|remove`, `subnet ...`.

Transactions are signed here with the wallet's coldkey (or hotkey where the chain wants the
hotkey) and submitted to the node, which admits them to its mempool and gossips them.
"""

from __future__ import annotations

import argparse

from p2pnode.chain.params import TAO
from p2pnode.chain.types import (
    AddStake,
    CreateSubnet,
    Register,
    RemoveStake,
    SetHyperparameter,
    Transfer,
    hotkey_binding_message,
)
from p2pnode.cli.common import (
    add_read_options,
    add_tx_options,
    api_get,
    done_text,
    emit,
    load_signer,
    parse_address,
    submit,
)
from p2pnode.cli.errors import CliError
from p2pnode.keys import KeyStore, KeyStoreError, default_home
from protocols.crypto import Keypair


def parse_amount(text: str) -> int:
    """An amount in TAO ('1.5') or in rao ('1500000000rao'), as integer rao."""
    try:
        if text.endswith("rao"):
            value = int(text[:-3])
        else:
            whole, _, frac = text.partition(".")
            if len(frac) > 9 or not (whole or frac).isdigit() or (frac and not frac.isdigit()):
                raise ValueError
            value = int(whole or "0") * TAO + int((frac or "0").ljust(9, "0"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount (TAO like 1.5, or rao like 1500rao)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the amount must be positive")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    balance = subparsers.add_parser("balance", help="balance, nonce and stake of an address")
    balance.add_argument("address")
    add_read_options(balance)
    balance.set_defaults(func=_balance)

    transfer = subparsers.add_parser("transfer", help="send TAO from the wallet's coldkey")
    transfer.add_argument("destination", help="address")
    transfer.add_argument("amount", type=parse_amount, help="TAO (1.5) or rao (1500rao)")
    add_tx_options(transfer)
    transfer.set_defaults(func=_transfer)

    stake = subparsers.add_parser("stake", help="stake on a hotkey (own or delegated) and unstake")
    stake_sub = stake.add_subparsers(dest="stake_command", metavar="COMMAND", required=True)
    for name, helptext in (("add", "stake TAO on a hotkey"), ("remove", "unstake TAO from a hotkey")):
        p = stake_sub.add_parser(name, help=helptext)
        p.add_argument("hotkey", help="hotkey address")
        p.add_argument("amount", type=parse_amount)
        add_tx_options(p)
        p.set_defaults(func=_stake, stake_action=name)

    subnet = subparsers.add_parser("subnet", help="subnets: list, create, register, set hyperparameters")
    sn_sub = subnet.add_subparsers(dest="subnet_command", metavar="COMMAND", required=True)
    listing = sn_sub.add_parser("list", help="list subnets")
    add_read_options(listing)
    listing.set_defaults(func=_subnet_list)
    create = sn_sub.add_parser("create", help="create a subnet (locks the lock cost)")
    create.add_argument("--task", required=True, choices=["text", "forecast"])
    create.add_argument("--owner-hotkey", required=True, help="address of the owner hotkey")
    create.add_argument("--max-lock", type=parse_amount, default=None, help="refuse if the lock cost is higher")
    add_tx_options(create)
    create.set_defaults(func=_subnet_create)
    reg = sn_sub.add_parser("register", help="burn to register a hotkey on a subnet")
    reg.add_argument("--netuid", type=int, required=True)
    reg.add_argument("--hotkey", dest="register_hotkey", required=True, help="address of the hotkey to register")
    reg.add_argument("--max-burn", type=parse_amount, default=None, help="refuse if the burn is higher")
    add_tx_options(reg)
    reg.set_defaults(func=_subnet_register)
    hp = sn_sub.add_parser("set", help="set a hyperparameter (subnet owner)")
    hp.add_argument("--netuid", type=int, required=True)
    hp.add_argument("name")
    hp.add_argument("value", type=int)
    add_tx_options(hp)
    hp.set_defaults(func=_subnet_set)


def _tao(rao: int) -> str:
    return f"{rao / TAO:,.9f} TAO"


def _balance(args: argparse.Namespace) -> int:
    parse_address(args.address, "address")
    acct = api_get(args, f"/accounts/{args.address}")
    lines = [f"balance: {_tao(acct['balance'])}", f"nonce:   {acct['nonce']}",
             f"staked:  {_tao(acct['total_stake'])}"]
    lines += [f"  on {s['hotkey']}: {_tao(s['amount'])}" for s in acct["stake"]]
    emit(args, acct, "\n".join(lines))
    return 0


def _done(args: argparse.Namespace, result: dict, what: str) -> int:
    emit(args, result, done_text(what, result))
    return 0



def _transfer(args: argparse.Namespace) -> int:
    to = parse_address(args.destination, "destination")
    return _done(args, submit(args, load_signer(args), Transfer(to=to, amount=args.amount)), "transfer")


def _hotkey_consent(args: argparse.Namespace, hot: bytes, cold: Keypair) -> bytes:
    """The hotkey's signature letting `cold` own it, when the wallet holds that hotkey; else empty.

    The chain binds a hotkey nobody owns yet only with this signature; an owned hotkey needs none.
    """
    store = KeyStore(args.keys_dir or default_home())
    try:
        names = [info.hotkey for info in store.wallet_info(args.wallet).hotkeys if info.public_key == hot]
        key = store.load_hotkey(args.wallet, names[0]) if names and names[0] else None
    except KeyStoreError:
        return b""
    if key is None:
        return b""
    chain_id = api_get(args, "/status")["chain_id"]
    return key.sign(hotkey_binding_message(chain_id, cold.public_key))


def _stake(args: argparse.Namespace) -> int:
    hot = parse_address(args.hotkey, "hotkey")
    signer = load_signer(args)
    if args.stake_action == "add":
        body: AddStake | RemoveStake = AddStake(
            hotkey=hot, amount=args.amount, hotkey_sig=_hotkey_consent(args, hot, signer)
        )
    else:
        body = RemoveStake(hotkey=hot, amount=args.amount)
    return _done(args, submit(args, signer, body), f"stake {args.stake_action}")


def _subnet_list(args: argparse.Namespace) -> int:
    subnets = api_get(args, "/subnets")
    lines = [f"{'netuid':>6} {'task':<9} {'uids':>5} {'tempo':>6} {'pending emission':>20} {'register burn':>18}  owner"]
    lines += [f"{s['netuid']:>6} {s['task']:<9} {s['n']:>5} {s['hyperparameters']['tempo']:>6} "
              f"{_tao(s['pending_emission']):>20} {_tao(s.get('registration_burn', 0)):>18}  {s['owner'] or '-'}"
              for s in subnets]
    emit(args, subnets, "\n".join(lines))
    return 0


def _subnet_create(args: argparse.Namespace) -> int:
    owner = parse_address(args.owner_hotkey, "owner hotkey")
    max_lock = args.max_lock if args.max_lock is not None else 2**64 - 1
    signer = load_signer(args)
    body = CreateSubnet(hotkey=owner, task=args.task, max_lock=max_lock, hotkey_sig=_hotkey_consent(args, owner, signer))
    return _done(args, submit(args, signer, body), "create subnet")


def _subnet_register(args: argparse.Namespace) -> int:
    hot = parse_address(args.register_hotkey, "hotkey")
    max_burn = args.max_burn if args.max_burn is not None else 2**64 - 1
    subnet = next((sn for sn in api_get(args, "/subnets") if sn["netuid"] == args.netuid), None)
    if subnet is None:
        raise CliError(f"no subnet {args.netuid}")
    price = subnet.get("registration_burn", subnet["hyperparameters"]["registration_burn"])
    if price > max_burn:
        raise CliError(f"registration burns {_tao(price)} now, above --max-burn {_tao(max_burn)}")
    signer = load_signer(args)
    body = Register(netuid=args.netuid, hotkey=hot, max_burn=max_burn, hotkey_sig=_hotkey_consent(args, hot, signer))
    return _done(args, submit(args, signer, body), f"register (burns {_tao(price)})")


def _subnet_set(args: argparse.Namespace) -> int:
    if args.value < 0:
        raise CliError("the value must not be negative")
    body = SetHyperparameter(netuid=args.netuid, name=args.name, value=args.value)
    return _done(args, submit(args, load_signer(args), body), "set hyperparameter")
