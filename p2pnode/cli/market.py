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
import os
import urllib.error
import urllib.request
from typing import Any

from p2pnode.cli.errors import CliError
from p2pnode.cli.client import DEFAULT_API

# The node's API address; `--api` or P2PNODE_API override it.
DEFAULT_API_URL = DEFAULT_API
MAX_API_RESPONSE_BYTES = 16 * 1024 * 1024
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


def api_url(args: argparse.Namespace) -> str:
    return (args.api or os.environ.get("P2PNODE_API") or DEFAULT_API_URL).rstrip("/")


def _http(method: str, url: str, body: Any | None, timeout: float) -> Any:
    """One JSON exchange with the node's API; CliError on any failure."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read(MAX_API_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise CliError(f"{method} {url} failed ({exc.code}): {_error_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot reach the node's API at {url}: {reason} (is `p2pnode join` running?)"
        ) from None
    if len(raw) > MAX_API_RESPONSE_BYTES:
        raise CliError(f"{url}: response larger than {MAX_API_RESPONSE_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise CliError(f"{url}: the API answered something that is not JSON") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(64 * 1024))
    except (ValueError, OSError):
        return str(exc.reason)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return " ".join(body["error"].split())[:500]
    return str(exc.reason)


def post_json(url: str, body: Any, timeout: float = 30.0) -> Any:
    return _http("POST", url, body, timeout)


def get_json(url: str, timeout: float = 30.0) -> Any:
    return _http("GET", url, None, timeout)


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
    result = post_json(
        f"{api_url(args)}/query", {"netuid": args.netuid, "input": args.input}, timeout=args.timeout
    )
    if not isinstance(result, dict):
        raise CliError("the API's answer to /query is not an object")
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_answer(result))
    return 0


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
    body = get_json(f"{api_url(args)}/metagraph/{args.netuid}", timeout=args.timeout)
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
        help="ask the best miners of a subnet (through the local node's API)",
        description="Send INPUT to the top miners of a subnet by incentive and print the best answer. "
        "INPUT is a JSON object of the subnet's task, or plain text (text task: the context; "
        "forecast task: numbers separated by commas).",
    )
    query.add_argument("--netuid", type=int, required=True, help="the subnet to ask")
    query.add_argument("input", metavar="INPUT", help="the question")
    query.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    query.add_argument(
        "--api", metavar="URL", help=f"the node's API (default: $P2PNODE_API or {DEFAULT_API_URL})"
    )
    query.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the node (default 30)"
    )
    query.set_defaults(func=cmd_query)

    metagraph = subparsers.add_parser("metagraph", help="show the neurons of a subnet")
    metagraph.add_argument("--netuid", type=int, required=True, help="the subnet to show")
    metagraph.add_argument("--json", action="store_true", help="print a JSON list of neurons")
    metagraph.add_argument(
        "--api", metavar="URL", help=f"the node's API (default: $P2PNODE_API or {DEFAULT_API_URL})"
    )
    metagraph.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the node (default 30)"
    )
    metagraph.set_defaults(func=cmd_metagraph)
