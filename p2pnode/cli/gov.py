"""`p2pnode gov propose | vote | list | show`: stake-weighted governance through a node's API."""

from __future__ import annotations

import argparse

from p2pnode.chain.types import GovVote, Propose
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gov = subparsers.add_parser("gov", help="governance: proposals and votes")
    sub = gov.add_subparsers(dest="gov_command", metavar="COMMAND", required=True)

    propose = sub.add_parser("propose", help="submit a proposal (the deposit is taken from the coldkey)")
    what = propose.add_mutually_exclusive_group(required=True)
    what.add_argument("--set-param", nargs=2, metavar=("NAME", "VALUE"), help="change a global parameter")
    what.add_argument("--create-subnet", nargs=2, metavar=("OWNER_HOTKEY", "TASK"), help="create a subnet")
    what.add_argument("--upgrade", nargs=2, metavar=("VERSION", "HEIGHT"), help="activate a protocol version at a height")
    what.add_argument("--signal", metavar="TEXT", help="a plain-text signal")
    add_tx_options(propose)
    propose.set_defaults(func=_propose)

    vote = sub.add_parser("vote", help="vote with the coldkey's stake (a later vote replaces an earlier one)")
    vote.add_argument("proposal", type=int)
    vote.add_argument("choice", choices=["yes", "no", "abstain"])
    add_tx_options(vote)
    vote.set_defaults(func=_vote)

    listing = sub.add_parser("list", help="list proposals")
    add_read_options(listing)
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="show one proposal and its tally")
    show.add_argument("proposal", type=int)
    add_read_options(show)
    show.set_defaults(func=_show)


def _int(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CliError(f"{what}: {text!r} is not an integer") from None
    if value < 0:
        raise CliError(f"{what}: must not be negative")
    return value


def _propose(args: argparse.Namespace) -> int:
    fields = dict(action="signal", param="", value=0, owner=b"", task="", version=0, activation_height=0, text="")
    if args.set_param:
        fields.update(action="set_param", param=args.set_param[0], value=_int(args.set_param[1], "VALUE"))
    elif args.create_subnet:
        fields.update(action="create_subnet", owner=parse_address(args.create_subnet[0], "OWNER_HOTKEY"),
                      task=args.create_subnet[1])
    elif args.upgrade:
        fields.update(action="upgrade", version=_int(args.upgrade[0], "VERSION"),
                      activation_height=_int(args.upgrade[1], "HEIGHT"))
    else:
        fields.update(text=args.signal)
    result = submit(args, load_signer(args), Propose(**fields))
    emit(args, result, done_text("proposal", result))
    return 0


def _vote(args: argparse.Namespace) -> int:
    result = submit(args, load_signer(args), GovVote(proposal=args.proposal, choice=args.choice))
    emit(args, result, done_text("vote", result))
    return 0


def _summary(p: dict) -> str:
    what = {"set_param": f"set {p['param']} = {p['value']}", "create_subnet": f"create a {p['task']} subnet",
            "upgrade": f"upgrade to v{p['version']} at {p['activation_height']}", "signal": p["text"][:40]}[p["action"]]
    return f"#{p['id']:<4} {p['status']:<10} ends {p['end']:<8} yes {p['yes']:<16} no {p['no']:<16} {what}"


def _list(args: argparse.Namespace) -> int:
    proposals = api_get(args, "/proposals")
    emit(args, proposals, "\n".join(_summary(p) for p in proposals) or "no proposals")
    return 0


def _show(args: argparse.Namespace) -> int:
    proposal = api_get(args, f"/proposals/{args.proposal}")
    lines = [f"{k}: {v}" for k, v in proposal.items()]
    emit(args, proposal, "\n".join(lines))
    return 0
