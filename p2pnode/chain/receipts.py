"""Reward receipts: what an epoch read and wrote, as canonical documents, and their hashes in state.

At every subnet epoch the chain commits, under `E|netuid`, the hash of the epoch's inputs (every
field of the `EpochInput` the Yuma function reads, plus the uids' hotkeys, the pending emission
and the owner cut) and the hash of its outputs. The newest `RECEIPTS_KEPT` receipts per subnet
stay in state. A peer that keeps the inputs themselves (`EpochRecord`) can later show how a uid's
emission came about and anyone can check it: hash the inputs, compare with the committed hash,
rerun `yuma.run_epoch` and compare the outputs with the committed output hash.

Documents are plain CBOR values (ints, bools, bytes, lists, maps with text keys), so their hashes
are canonical and a record round-trips through `encode` / `decode` exactly.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import Any

from p2pnode.chain import statekeys, yuma
from p2pnode.chain.encoding import decode, encode, sha256
from p2pnode.chain.records import EpochReceipt
from p2pnode.chain.state import State

RECEIPTS_KEPT = 16
RECEIPT_VERSION = 2  # 2: rows as u16 byte strings (1 had lists of pairs)
U16 = 65535
_INPUTS_DOMAIN = b"p2pnode/epoch-inputs/v2\x00"
_OUTPUTS_DOMAIN = b"p2pnode/epoch-outputs/v2\x00"

# EpochInput fields in document order; per-uid rows are lists of [uid, value] pairs.
_SCALAR_INPUTS = (
    "n", "current_block", "tempo", "activity_cutoff", "max_allowed_validators", "emission", "stake_threshold",
    "owner_uid", "last_mech_step_block", "kappa", "bonds_penalty", "bonds_moving_average", "yuma3_on",
    "liquid_alpha_on", "alpha_low", "alpha_high", "alpha_sigmoid_steepness",
)
_VECTOR_INPUTS = ("last_update", "block_at_registration", "stake", "validator_permit")
_ROW_INPUTS = ("weights", "bonds")
_VECTOR_OUTPUTS = ("active", "stake_weight", "consensus", "incentive", "dividends", "validator_trust", "emission",
                   "server_emission", "validator_emission", "validator_permit")


class ReceiptError(ValueError):
    """A stored epoch record or receipt is malformed; the message names the field."""


@dataclass(frozen=True)
class EpochRecord:
    """One subnet epoch as it ran: context, the Yuma input and output.

    `epoch` is the subnet's epoch index that ran (its `epoch_index` before the run); `pending` the
    emission that accrued; `owner_cut` the part of it paid to the owner before Yuma split the rest
    (`inputs.emission`); `hotkeys[uid]` the hotkey that held each uid.
    """

    netuid: int
    epoch: int
    block: int
    pending: int
    owner_cut: int
    hotkeys: tuple[bytes, ...]
    inputs: yuma.EpochInput
    outputs: yuma.EpochOutput

    def inputs_hash(self) -> bytes:
        return sha256(_INPUTS_DOMAIN + encode(self.inputs_document()))

    def outputs_hash(self) -> bytes:
        return outputs_hash(self.outputs)

    def inputs_document(self) -> dict[str, Any]:
        """What the committed inputs hash covers."""
        return {
            "version": RECEIPT_VERSION,
            "netuid": self.netuid,
            "epoch": self.epoch,
            "block": self.block,
            "pending": self.pending,
            "owner_cut": self.owner_cut,
            "hotkeys": list(self.hotkeys),
            "yuma": input_document(self.inputs),
        }

    def to_document(self) -> dict[str, Any]:
        """The whole record (what a peer stores): the inputs document plus the outputs."""
        return {"inputs": self.inputs_document(), "outputs": output_document(self.outputs)}

    @staticmethod
    def from_document(doc: Any) -> EpochRecord:
        """The record a document describes; raises ReceiptError naming what is wrong."""
        try:
            inputs, outputs = doc["inputs"], doc["outputs"]
            if inputs["version"] != RECEIPT_VERSION:
                raise ReceiptError(f"version: unsupported receipt version {inputs['version']!r}")
            record = EpochRecord(
                netuid=_int(inputs, "netuid"),
                epoch=_int(inputs, "epoch"),
                block=_int(inputs, "block"),
                pending=_int(inputs, "pending"),
                owner_cut=_int(inputs, "owner_cut"),
                hotkeys=tuple(bytes(h) for h in inputs["hotkeys"]),
                inputs=input_from_document(inputs["yuma"]),
                outputs=output_from_document(outputs),
            )
        except yuma.InvalidEpochInput as exc:
            raise ReceiptError(f"malformed epoch inputs: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReceiptError(f"malformed epoch record: missing or mistyped {exc}") from None
        n = record.inputs.n
        if len(record.hotkeys) != n:
            raise ReceiptError("hotkeys: one per uid expected")
        for name in (*_VECTOR_OUTPUTS, "bonds"):
            if len(getattr(record.outputs, name)) != n:
                raise ReceiptError(f"outputs.{name}: one entry per uid expected")
        return record


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc[key]
    if type(value) is not int:
        raise ReceiptError(f"{key}: must be an integer")
    return value


def _u16_le(words: array[int]) -> bytes:
    if sys.byteorder == "little":
        return words.tobytes()
    swapped = array("H", words)
    swapped.byteswap()
    return swapped.tobytes()


def _row_document(row: yuma.RowLike) -> list[bytes]:
    """A sparse row as [destination uids, values], each u16 little-endian bytes, in stored order
    (bytes, not a list of pairs: rows are n x n, and this keeps hashing them cheap)."""
    if not isinstance(row, yuma.SparseRow):
        row = yuma.SparseRow.from_pairs(list(row))
    return [_u16_le(row.uids), _u16_le(row.values)]


def _row_from_document(entry: Any) -> yuma.SparseRow:
    uids, values = entry
    if type(uids) is not bytes or type(values) is not bytes or len(uids) != len(values) or len(uids) % 2:
        raise ReceiptError("a row must be two byte strings of equal, even length")
    arrays = []
    for data in (uids, values):
        words = array("H")
        words.frombytes(data)
        if sys.byteorder != "little":
            words.byteswap()
        arrays.append(words)
    return yuma.SparseRow(arrays[0], arrays[1]) if uids else yuma.EMPTY_ROW


def input_document(inp: yuma.EpochInput) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(inp, name) for name in _SCALAR_INPUTS}
    for name in _VECTOR_INPUTS:
        doc[name] = list(getattr(inp, name))
    for name in _ROW_INPUTS:
        doc[name] = [_row_document(row) for row in getattr(inp, name)]
    doc["commit_blocks"] = None if inp.commit_blocks is None else list(inp.commit_blocks)
    return doc


def input_from_document(doc: dict[str, Any]) -> yuma.EpochInput:
    fields: dict[str, Any] = {name: doc[name] for name in _SCALAR_INPUTS}
    for name in _VECTOR_INPUTS:
        fields[name] = list(doc[name])
    for name in _ROW_INPUTS:
        fields[name] = [_row_from_document(entry) for entry in doc[name]]
    fields["commit_blocks"] = doc["commit_blocks"]
    return yuma.EpochInput(**fields)


def output_document(out: yuma.EpochOutput) -> dict[str, Any]:
    doc: dict[str, Any] = {name: list(getattr(out, name)) for name in _VECTOR_OUTPUTS}
    doc["bonds"] = [_row_document(row) for row in out.bonds]
    return doc


def output_from_document(doc: dict[str, Any]) -> yuma.EpochOutput:
    fields: dict[str, Any] = {name: tuple(doc[name]) for name in _VECTOR_OUTPUTS}
    fields["bonds"] = tuple(_row_from_document(entry) for entry in doc["bonds"])
    return yuma.EpochOutput(**fields)


def outputs_hash(out: yuma.EpochOutput) -> bytes:
    return sha256(_OUTPUTS_DOMAIN + encode(output_document(out)))


# ---------------------------------------------------------------- receipts in state


def receipts_key(netuid: int) -> bytes:
    return statekeys.epoch_receipts(netuid)


def commit_receipt(state: State, record: EpochRecord) -> None:
    """Append the record's receipt to the subnet's list in state, keeping the newest RECEIPTS_KEPT."""
    receipts = committed_receipts(state, record.netuid)
    receipts.append(EpochReceipt(record.epoch, record.block, record.inputs_hash(), record.outputs_hash()))
    state.put(receipts_key(record.netuid), EpochReceipt.list_to_state(receipts[-RECEIPTS_KEPT:]))


def committed_receipts(state: State, netuid: int) -> list[EpochReceipt]:
    """The receipts in state for `netuid`, oldest first."""
    raw = state.get_raw(receipts_key(netuid))
    return [] if raw is None else EpochReceipt.list_from_state(decode(raw))


# ---------------------------------------------------------------- verification and explanation


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def find_receipt(receipts: list[EpochReceipt], epoch: int) -> EpochReceipt | None:
    return next((r for r in receipts if r.epoch == epoch), None)


def verify_record(record: EpochRecord, receipt: EpochReceipt | None) -> list[Check]:
    """Check a kept record against the receipt the chain committed, and rerun the epoch on it.

    Every check runs (a failed one does not hide the others): the receipt exists, names the same
    block, the inputs hash to the committed hash, the epoch recomputed from the inputs gives the
    recorded outputs and these hash to the committed outputs hash, and the payout adds up.
    """
    checks: list[Check] = []
    if receipt is None:
        checks.append(Check("receipt", False, f"no receipt for epoch {record.epoch} of netuid {record.netuid} in state"))
    else:
        checks.append(Check("receipt", receipt.block == record.block,
                            f"committed at block {receipt.block}, record from block {record.block}"))
        got = record.inputs_hash()
        checks.append(Check("inputs_hash", got == receipt.inputs_hash,
                            f"inputs hash {got.hex()[:16]}, committed {receipt.inputs_hash.hex()[:16]}"))
    recomputed = yuma.run_epoch(record.inputs)
    differing = [name for name in (*_VECTOR_OUTPUTS, "bonds") if getattr(recomputed, name) != getattr(record.outputs, name)]
    checks.append(Check("recomputed_outputs", not differing,
                        "the epoch rerun on the inputs gives the recorded outputs" if not differing
                        else "rerun differs in " + ", ".join(differing)))
    if receipt is not None:
        got = outputs_hash(recomputed)
        checks.append(Check("outputs_hash", got == receipt.outputs_hash,
                            f"recomputed outputs hash {got.hex()[:16]}, committed {receipt.outputs_hash.hex()[:16]}"))
    paid = sum(recomputed.server_emission) + sum(recomputed.validator_emission)
    checks.append(Check("payout", record.owner_cut + record.inputs.emission == record.pending and paid <= record.inputs.emission,
                        f"pending {record.pending} = owner cut {record.owner_cut} + yuma {record.inputs.emission}; "
                        f"yuma paid {paid} (the rest, rounding dust, to the owner)"))
    return checks


def _row_map(row: Any, n: int) -> dict[int, int]:
    return {u: v for u, v in row if u < n}


def _voting_row(inp: yuma.EpochInput, i: int) -> dict[int, int]:
    """Validator i's weights as the epoch counts them: destinations registered at or after the
    row's last update (or its earliest live commit) masked, its self-weight dropped unless it is
    the owner's (the masks of docs/spec/epoch.md §3.5)."""
    threshold = inp.last_update[i]
    commit_block = None if inp.commit_blocks is None else inp.commit_blocks[i]
    if commit_block is not None and commit_block + 1 < threshold:
        threshold = commit_block + 1
    bar = inp.block_at_registration
    return {j: v for j, v in _row_map(inp.weights[i], inp.n).items()
            if bar[j] < threshold and (j != i or i == inp.owner_uid)}


def explain_uid(record: EpochRecord, uid: int) -> dict[str, Any]:
    """How `uid`'s emission in this epoch came about, in integers (u16 proportions: 65535 = 1).

    Per validator that could vote (a permit from the previous epoch, or the owner's uid): its
    stake, whether it was active, its weight to the uid normalised over its row after the epoch's
    masks, that weight clipped at the uid's consensus (the consensus cut is the part above it), its
    bond to the uid after the epoch, and its part of the uid's incentive (active stake times clipped
    weight, over all voters, in parts per million). These are explanations at u16 precision; the
    figures that count are the recorded outputs, which `verify_record` recomputes and checks.
    """
    inp, out = record.inputs, record.outputs
    n = inp.n
    if not 0 <= uid < n:
        raise ReceiptError(f"uid {uid} is not below n={n} in epoch {record.epoch}")
    consensus = out.consensus[uid]
    threshold = inp.stake_threshold
    validators = []
    contributions = []
    for i in range(n):
        if not (inp.validator_permit[i] or i == inp.owner_uid):
            continue
        row = _voting_row(inp, i)
        row_sum = sum(row.values())
        weight = row.get(uid, 0) * U16 // row_sum if row_sum else 0
        clipped = min(weight, consensus)
        bond = _row_map(out.bonds[i], n).get(uid, 0)
        counted_stake = inp.stake[i] if inp.stake[i] >= threshold or i == inp.owner_uid else 0
        contribution = counted_stake * clipped if out.active[i] else 0
        contributions.append(contribution)
        validators.append({
            "uid": i, "hotkey": record.hotkeys[i], "stake": inp.stake[i], "stake_weight": out.stake_weight[i],
            "active": out.active[i], "weight_raw": row.get(uid, 0), "weight": weight, "clipped_weight": clipped,
            "consensus_cut": weight - clipped, "bond": bond,
        })
    total = sum(contributions)
    for entry, contribution in zip(validators, contributions, strict=True):
        entry["incentive_share_ppm"] = contribution * 1_000_000 // total if total else 0
    own_bonds = [
        {"uid": dest, "bond": value, "incentive": out.incentive[dest]}
        for dest, value in sorted(_row_map(out.bonds[uid], n).items())
        if value
    ]
    total_incentive = sum(out.server_emission)
    total_dividends = sum(out.validator_emission)
    is_owner = inp.owner_uid == uid
    return {
        "netuid": record.netuid, "epoch": record.epoch, "block": record.block, "uid": uid,
        "hotkey": record.hotkeys[uid], "stake": inp.stake[uid], "active": out.active[uid],
        "validator_permit": out.validator_permit[uid],
        "consensus": consensus, "incentive": out.incentive[uid], "dividends": out.dividends[uid],
        "trust": out.validator_trust[uid],
        "incentive_rao": out.server_emission[uid], "dividends_rao": out.validator_emission[uid],
        "emission_rao": out.server_emission[uid] + out.validator_emission[uid],
        "epoch_pending_rao": record.pending, "owner_cut_rao": record.owner_cut, "yuma_emission_rao": inp.emission,
        "epoch_incentive_rao": total_incentive, "epoch_dividends_rao": total_dividends,
        "is_owner": is_owner, "owner_incentive_burned": is_owner and out.server_emission[uid] > 0,
        "validators": validators, "bonds": own_bonds,
    }


