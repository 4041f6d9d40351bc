"""`p2pnode explain`: how a uid's emission in an epoch came about, and a check of it on this machine.

The node serves the epoch's record (canonical CBOR) and the receipt the chain committed; this
command hashes the record, reruns the epoch with the chain's own Yuma code and compares, so the
check does not rest on the node's arithmetic.
"""

from __future__ import annotations

import argparse
from typing import Any

from p2pnode.chain.address import encode_address
from p2pnode.chain.params import TAO
from p2pnode.chain.receipts import EpochRecord, ReceiptError, explain_uid, verify_record
from p2pnode.chain.records import EpochReceipt
from p2pnode.cli.common import add_api, add_json, api_get, emit
from p2pnode.cli.errors import CliError
from protocols.codec import MalformedMessage, decode_plain

# A record of a large subnet (weights and bonds are n x n) can be several MiB.
MAX_RECORD_BYTES = 64 << 20

U16 = 65535


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="how a uid's emission came about (and --verify it)",
        description="Show how a uid's emission in an epoch came about: per validator its stake, weight to the "
        "uid, the part cut at consensus, its bond, and its share of the uid's incentive; the uid's "
        "dividends and the owner cut. --verify recomputes the epoch from the node's record of its inputs "
        "and checks it against the hashes the chain committed.",
    )
    parser.add_argument("--netuid", type=int, required=True, help="subnet")
    parser.add_argument("--uid", type=int, required=True, help="uid on the subnet")
    parser.add_argument("--epoch", type=int, default=None, help="epoch index (default: the latest)")
    parser.add_argument("--verify", action="store_true", help="recompute the epoch here and check the receipt")
    add_api(parser)
    add_json(parser)
    parser.set_defaults(func=cmd_explain)


def fetch_record(args: argparse.Namespace) -> tuple[EpochRecord, EpochReceipt | None]:
    """The epoch's record from the node, and the receipt in state, or None."""
    epoch = args.epoch
    if epoch is None:
        listing = api_get(args, f"/receipts/{args.netuid}")
        if not listing["receipts"]:
            raise CliError(f"netuid {args.netuid} has not run an epoch yet")
        epoch = listing["receipts"][-1]["epoch"]
    doc = api_get(args, f"/receipts/{args.netuid}/{epoch}")
    try:
        record = EpochRecord.from_document(decode_plain(bytes.fromhex(doc["record_cbor"]), MAX_RECORD_BYTES))
    except (ReceiptError, MalformedMessage, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"the node's record of epoch {epoch} is malformed: {exc}") from None
    receipt_doc = doc.get("receipt")
    if receipt_doc is None:
        return record, None
    try:
        receipt = EpochReceipt(int(receipt_doc["epoch"]), int(receipt_doc["block"]),
                               bytes.fromhex(receipt_doc["inputs_hash"]), bytes.fromhex(receipt_doc["outputs_hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"the node's receipt of epoch {epoch} is malformed: {exc}") from None
    return record, receipt


def cmd_explain(args: argparse.Namespace) -> int:
    record, receipt = fetch_record(args)
    try:
        view = explain_uid(record, args.uid)
    except ReceiptError as exc:
        raise CliError(str(exc)) from None
    checks = verify_record(record, receipt) if args.verify else []
    doc = dict(view, hotkey=encode_address(view["hotkey"]),
               validators=[dict(v, hotkey=encode_address(v["hotkey"])) for v in view["validators"]])
    if args.verify:
        doc["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
        doc["verified"] = all(c.ok for c in checks)
    emit(args, doc, render(doc))
    return 0 if all(c.ok for c in checks) else 1


def _tao(rao: int) -> str:
    return f"{rao / TAO:.9f}".rstrip("0").rstrip(".") + " TAO"


def _pct(u16: int) -> str:
    return f"{100 * u16 / U16:.2f}%"


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"netuid {doc['netuid']} uid {doc['uid']} ({doc['hotkey']}), epoch {doc['epoch']} at block {doc['block']}",
        f"  emission {_tao(doc['emission_rao'])} = incentive {_tao(doc['incentive_rao'])} "
        f"+ dividends {_tao(doc['dividends_rao'])}",
        f"  consensus {_pct(doc['consensus'])}  incentive {_pct(doc['incentive'])}  dividends {_pct(doc['dividends'])}"
        f"  trust {_pct(doc['trust'])}  stake {_tao(doc['stake'])}  permit {'yes' if doc['validator_permit'] else 'no'}",
        f"  the epoch: pending {_tao(doc['epoch_pending_rao'])}, owner cut {_tao(doc['owner_cut_rao'])}, "
        f"split by Yuma {_tao(doc['yuma_emission_rao'])} (miners {_tao(doc['epoch_incentive_rao'])}, "
        f"validators {_tao(doc['epoch_dividends_rao'])})",
    ]
    if doc["owner_incentive_burned"]:
        lines.append("  this uid is the subnet owner's: its miner incentive is burned; the owner cut is staked to it")
    rows = [("validator", "stake", "weight", "clipped", "cut", "bond", "share of incentive")]
    shown = [v for v in doc["validators"] if v["weight"] or v["bond"]]
    for v in shown:
        rows.append((str(v["uid"]) + ("" if v["active"] else " (inactive)"), _tao(v["stake"]), _pct(v["weight"]),
                     _pct(v["clipped_weight"]), _pct(v["consensus_cut"]), _pct(v["bond"]),
                     f"{v['incentive_share_ppm'] / 10_000:.2f}%"))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines.append("")
    if shown:
        lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    else:
        lines.append("  no validator weighted this uid or holds a bond to it")
    hidden = len(doc["validators"]) - len(shown)
    if hidden:
        lines.append(f"  ({hidden} other permitted validator(s) gave this uid no weight and hold no bond to it)")
    if doc["bonds"]:
        lines.append("")
        lines.append("  this uid's bonds (its dividends come from them): " + ", ".join(
            f"uid {b['uid']} {_pct(b['bond'])} (incentive {_pct(b['incentive'])})" for b in doc["bonds"]))
    if "checks" in doc:
        lines.append("")
        for check in doc["checks"]:
            lines.append(f"  [{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
        lines.append("  verified: the epoch recomputed here matches the chain's receipt" if doc["verified"]
                     else "  NOT verified: see the failed checks above")
    return "\n".join(lines)
