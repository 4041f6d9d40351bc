"""`p2pnode query` and `p2pnode metagraph`: the market, through the local node's HTTP API.

The CLI process has no libp2p host, so both commands ask the running node (``p2pnode join``):

    POST {api}/query          {"netuid": N, "input": "..."}  -> the answer (see services/query.py)
    GET  {api}/metagraph/{N}  -> [{"uid", "hotkey", "stake", "validator_permit", "consensus",
                                   "incentive", "dividends", "emission", "model", ...}, ...]

Errors from the API come as ``{"error": "..."}`` with a 4xx/5xx status; they, and an unreachable
node, become one-line `CliError`s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from p2pnode.cli.client import ApiError, get_json, post_json, stream
from p2pnode.cli.common import add_api
from p2pnode.cli.errors import CliError

METAGRAPH_COLUMNS = (
    "uid",
    "hotkey",
    "stake",
    "validator_permit",
    "consensus",
    "incentive",
    "dividends",
    "emission",
    "model",
)


def resolve_miner_device(device: str) -> str:
    """The torch device a miner's model will run on ("auto": a GPU if torch sees one, else "cpu").

    Checked before the peer starts, so a missing GPU is one line, not a failed role later.
    """
    from models.base import resolve_device
    from models.errors import DeviceUnavailable

    try:
        return str(resolve_device(device))
    except DeviceUnavailable as exc:
        raise CliError(f"--device: {exc}") from None


def _ask(args: argparse.Namespace, method: str, path: str, body: Any | None = None) -> Any:
    try:
        if method == "POST":
            return post_json(args.api, path, body, timeout=args.timeout)
        return get_json(args.api, path, timeout=args.timeout)
    except ApiError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------- query


def format_answer(result: dict[str, Any]) -> str:
    """A human-readable answer: who answered, how fast, and the answer in the task's terms."""
    head = f"uid {result.get('uid')} ({result.get('hotkey')}) answered in {result.get('latency_ms')} ms"
    response = result.get("response")
    lines = [head]
    if isinstance(response, dict) and isinstance(response.get("logprobs"), list):
        pairs = [p for p in response["logprobs"] if isinstance(p, list) and len(p) == 2]
        pairs = [(str(ch), float(lp)) for ch, lp in pairs if isinstance(lp, int | float)]
        pairs.sort(key=lambda p: -p[1])
        shown = ", ".join(f"{ch!r} {math.exp(lp):.1%}" for ch, lp in pairs[:5])
        lines.append(f"next character: {shown}")
    elif isinstance(response, dict) and isinstance(response.get("forecast"), list):
        lines.append(
            "forecast: "
            + ", ".join(f"{v:g}" if isinstance(v, int | float) else "?" for v in response["forecast"])
        )
    else:
        lines.append(json.dumps(response, sort_keys=True))
    failures = result.get("failures")
    if isinstance(failures, dict) and failures:
        lines.append("not used: " + "; ".join(f"uid {uid}: {why}" for uid, why in sorted(failures.items())))
    return "\n".join(lines)


def cmd_query(args: argparse.Namespace) -> int:
    if not 0 <= args.netuid <= 65535:
        raise CliError("--netuid must be between 0 and 65535")
    body: dict[str, Any] = {"netuid": args.netuid, "input": args.input}
    if args.uid is not None:
        if not 0 <= args.uid <= 65535:
            raise CliError("--uid must be between 0 and 65535")
        body["uid"] = args.uid
    if args.max_tokens is not None:
        return _generate(args, body)
    result = _ask(args, "POST", "/query", body)
    if not isinstance(result, dict):
        raise CliError("the API's answer to /query is not an object")
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_answer(result))
    return 0


def _generate(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Print generated text as its chunks arrive (--json: one JSON event per line)."""
    body.update(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    writers: list[int] = []
    try:
        for kind, data in stream(args.api, "POST", "/generate", body, idle_timeout=args.timeout):
            if args.json:
                print(json.dumps({"event": kind, "data": data}, sort_keys=True), flush=True)
            elif kind == "chunk" and isinstance(data, dict):
                sys.stdout.write(str(data.get("text", "")))
                sys.stdout.flush()
                writers.append(data.get("uid"))  # type: ignore[arg-type]
            if kind == "error":
                if not args.json:
                    print()
                message = data.get("error") if isinstance(data, dict) else data
                raise CliError(f"generation stopped: {message}")
            if kind == "done":
                if not args.json:
                    print()
                    print(f"written by uid {', '.join(str(u) for u in dict.fromkeys(writers))}", file=sys.stderr)
                return 0
    except ApiError as exc:
        raise CliError(str(exc)) from None
    raise CliError("the node closed the stream before the text was done")


# ---------------------------------------------------------------- metagraph


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "-"
    return str(value)


def format_metagraph(rows: list[dict[str, Any]]) -> str:
    table = [[column.upper().replace("VALIDATOR_PERMIT", "VPERMIT") for column in METAGRAPH_COLUMNS]]
    table += [[_cell(row.get(column)) for column in METAGRAPH_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(METAGRAPH_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def cmd_metagraph(args: argparse.Namespace) -> int:
    if not 0 <= args.netuid <= 65535:
        raise CliError("--netuid must be between 0 and 65535")
    body = _ask(args, "GET", f"/metagraph/{args.netuid}")
    rows = body.get("neurons") if isinstance(body, dict) else body
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise CliError("the API's metagraph is not a list of neurons")
    if args.json:
        print(
            json.dumps([{column: row.get(column) for column in METAGRAPH_COLUMNS} for row in rows], indent=2)
        )
    else:
        print(format_metagraph(rows) if rows else f"subnet {args.netuid} has no neurons")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    query = subparsers.add_parser(
        "query",
        help="ask a subnet's miners (through the local node's API)",
        description="Send INPUT to a subnet's miners, routed by incentive, measured latency and load (a slow "
        "miner is hedged, a failing one replaced), and print the first verified answer. "
        "INPUT is a JSON object of the subnet's task, or plain text (text task: the context; "
        "forecast task: numbers separated by commas).",
    )
    query.add_argument("--netuid", type=int, required=True, help="the subnet to ask")
    query.add_argument("input", metavar="INPUT", help="the question")
    query.add_argument("--uid", type=int, help="ask this miner only (default: routed by incentive, latency and load)")
    query.add_argument("--max-tokens", type=int, metavar="N",
                       help="generate N characters of text after INPUT (text subnets), printed as they arrive")
    query.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, 0 to 2 (default 1)")
    query.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    query.add_argument("--json", action="store_true",
                       help="print the whole answer as JSON, with its receipt (uid, hotkey, signature, latency)")
    add_api(query)
    query.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the node (default 30)"
    )
    query.set_defaults(func=cmd_query)

    metagraph = subparsers.add_parser("metagraph", help="show the neurons of a subnet")
    metagraph.add_argument("--netuid", type=int, required=True, help="the subnet to show")
    metagraph.add_argument("--json", action="store_true", help="print a JSON list of neurons")
    add_api(metagraph)
    metagraph.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the node (default 30)"
    )
    metagraph.set_defaults(func=cmd_metagraph)
