"""JSON views of reward receipts: the receipts in state, the kept epoch records, a uid's explanation.

A record is served as its canonical CBOR in hex, so a client can hash it and rerun the epoch itself
(`p2pnode explain --verify` does) instead of trusting this node's arithmetic.
"""

from __future__ import annotations

from typing import Any

from p2pnode.chain.address import encode_address
from p2pnode.chain.encoding import decode
from p2pnode.chain.receipts import (
    EpochRecord,
    ReceiptError,
    committed_receipts,
    explain_uid,
    find_receipt,
    verify_record,
)
from p2pnode.chain.records import EpochReceipt
from p2pnode.chain.state import State
from p2pnode.store import Store
from p2pnode.store.epoch_records import EpochRecordStore


class ReceiptLookupError(LookupError):
    """What was asked for is not known here; `name` is a stable snake_case reason."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def receipt_json(receipt: EpochReceipt) -> dict[str, Any]:
    return {"epoch": receipt.epoch, "block": receipt.block, "inputs_hash": receipt.inputs_hash.hex(),
            "outputs_hash": receipt.outputs_hash.hex()}


def receipts_view(state: State, records: EpochRecordStore, netuid: int) -> dict[str, Any]:
    if state.subnet(netuid) is None:
        raise ReceiptLookupError("unknown_subnet", f"netuid {netuid}")
    return {"netuid": netuid, "receipts": [receipt_json(r) for r in committed_receipts(state, netuid)],
            "recorded_epochs": records.epochs(netuid)}


def canonical_record(store: Store, records: EpochRecordStore, netuid: int, epoch: int) -> tuple[bytes, int, bytes]:
    """(block hash, height, record CBOR) of the epoch as run by the canonical chain."""
    for block_hash, height, _ in records.documents(netuid, epoch):
        if store.canonical_hash(height) == block_hash:
            raw = records.raw_record(netuid, epoch, block_hash)
            if raw is not None:
                return block_hash, height, raw
    raise ReceiptLookupError("no_epoch_record", f"this peer keeps no record of epoch {epoch} of netuid {netuid}")


def latest_epoch(state: State, netuid: int) -> int:
    receipts = committed_receipts(state, netuid)
    if not receipts:
        raise ReceiptLookupError("no_epoch_yet", f"netuid {netuid} has not run an epoch yet")
    return receipts[-1].epoch


def record_view(state: State, store: Store, records: EpochRecordStore, netuid: int, epoch: int | None) -> dict[str, Any]:
    if state.subnet(netuid) is None:
        raise ReceiptLookupError("unknown_subnet", f"netuid {netuid}")
    if epoch is None:
        epoch = latest_epoch(state, netuid)
    block_hash, height, raw = canonical_record(store, records, netuid, epoch)
    receipt = find_receipt(committed_receipts(state, netuid), epoch)
    return {"netuid": netuid, "epoch": epoch, "block": height, "block_hash": block_hash.hex(),
            "receipt": None if receipt is None else receipt_json(receipt), "record_cbor": raw.hex()}


def explain_view(state: State, store: Store, records: EpochRecordStore, netuid: int, uid: int,
                 epoch: int | None, verify: bool = False) -> dict[str, Any]:
    """How `uid` was paid in `epoch` (default: the latest), with the checks when `verify`."""
    doc = record_view(state, store, records, netuid, epoch)
    record = EpochRecord.from_document(decode(bytes.fromhex(doc["record_cbor"])))
    try:
        view = explain_uid(record, uid)
    except ReceiptError as exc:
        raise ReceiptLookupError("unknown_uid", str(exc)) from None
    view = addresses(view)
    view["receipt"] = doc["receipt"]
    if verify:
        receipt = find_receipt(committed_receipts(state, netuid), record.epoch)
        view["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in verify_record(record, receipt)]
    return view


def addresses(view: dict[str, Any]) -> dict[str, Any]:
    """An explanation with hotkeys as addresses (JSON has no bytes)."""
    out = dict(view, hotkey=encode_address(view["hotkey"]))
    out["validators"] = [dict(v, hotkey=encode_address(v["hotkey"])) for v in view["validators"]]
    return out
