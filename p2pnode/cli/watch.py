"""`p2pnode watch`: print the node's live events (GET /events) as they happen."""

from __future__ import annotations

import argparse
import json
from typing import Any

from p2pnode.cli.client import ApiError, stream_events
from p2pnode.cli.common import add_api
from p2pnode.cli.errors import CliError

EVENT_TYPES = ("head", "finalized", "epoch", "tx_included", "tx_refused", "proposal")


def describe(kind: str, data: Any) -> str:
    """One line per event, for people."""
    if not isinstance(data, dict):
        return f"{kind} {data}"
    if kind == "head":
        reorg = "  (reorganisation)" if data.get("reorg") else ""
        return f"head       height {data.get('height')}  slot {data.get('slot')}  {str(data.get('hash'))[:16]}{reorg}"
    if kind == "finalized":
        return f"finalized  epoch {data.get('epoch')}  height {data.get('height')}  {str(data.get('hash'))[:16]}"
    if kind == "epoch":
        return f"epoch      subnet {data.get('netuid')} ran epoch {data.get('epoch_index')} at height {data.get('height')}"
    if kind == "tx_included":
        return (f"included   {data.get('kind')} {str(data.get('tx'))[:16]} from {data.get('sender')} "
                f"(nonce {data.get('nonce')}) at height {data.get('height')}")
    if kind == "tx_refused":
        return f"refused    {str(data.get('tx'))[:16]} ({data.get('source')}): {data.get('reason')}"
    if kind == "proposal":
        return f"proposal   #{data.get('id')} is {data.get('status')} at height {data.get('height')}"
    return f"{kind:<10} {json.dumps(data, sort_keys=True)}"


def cmd_watch(args: argparse.Namespace) -> int:
    kinds = [k for k in (args.types or "").split(",") if k] or None
    if kinds and set(kinds) - set(EVENT_TYPES):
        raise CliError(f"--types: choose from {', '.join(EVENT_TYPES)}")
    shown = 0
    try:
        for kind, data in stream_events(args.api, kinds):
            print(json.dumps({"event": kind, "data": data}) if args.json else describe(kind, data), flush=True)
            if kind == "dropped":
                raise CliError("the node dropped this stream (the terminal was reading too slowly)")
            shown += 1
            if args.count and shown >= args.count:
                return 0
    except ApiError as exc:
        raise CliError(str(exc)) from None
    raise CliError("the node closed the event stream")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = subparsers.add_parser("watch", help="print the node's live events (heads, finality, epochs, transactions)")
    add_api(watch)
    watch.add_argument("--types", metavar="A,B", help=f"only these events ({', '.join(EVENT_TYPES)})")
    watch.add_argument("--count", type=int, default=0, help="stop after this many events (default: run until ^C)")
    watch.add_argument("--json", action="store_true", help="one JSON object per event")
    watch.set_defaults(func=cmd_watch)
