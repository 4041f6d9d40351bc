"""The records stored in chain state, one dataclass per kind, and their exact stored form.

One module per family (`accounts`, `subnets`, `consensus`, `governance`; `fields` holds the
shared checks); every name is imported from here.

`statekeys` says where a record lives; this module says what it is. Each record kind decodes the
value found at its key with `from_state(value)` (the already-CBOR-decoded value) and gives it back
with `to_state()`, and the two round-trip exactly: `encode(Kind.from_state(v).to_state())` is the
stored bytes again, so state roots, golden vectors, genesis and block hashes do not depend on this
module. Stored map keys keep their short historical names ("hot", "hp", "n"); the attributes say
what the fields are.

A stored value of the wrong shape (a missing or unknown field, a wrong type, a negative amount)
raises `MalformedRecord`: the node wrote every value itself, so that is a bug or a corrupted store,
never input to tolerate.

Optional map fields (a subnet's registration burn once adjusted, a neuron's last weight set) are
`None` while absent: an absent field and a field holding its default encode differently, and the
state root sees the difference.

Small value records are frozen (but for the hot `Account`); subnets, neurons and proposals are
mutable (a transaction reads one, changes it and writes it back), each `from_state` returning a
fresh copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2pnode.chain import statekeys
from p2pnode.chain.records.accounts import (
    Account,
    HotkeyRecord,
    SlashRecord,
    Supply,
    UnbondingEntry,
)
from p2pnode.chain.records.consensus import (
    EMPTY_FINALITY,
    FfgLink,
    FinalityRecord,
    ValidatorSet,
    checkpoint_from_state,
    checkpoint_to_state,
)
from p2pnode.chain.records.fields import KEY_LEN, MalformedRecord
from p2pnode.chain.records.governance import Proposal, ProposalVote, VoteLock
from p2pnode.chain.records.subnets import EpochReceipt, Neuron, Subnet, WeightCommit

# ---------------------------------------------------------------- which table holds which record


@dataclass(frozen=True, slots=True)
class RecordCodec:
    """How one table's stored value becomes its record (or list of records) and back."""

    from_state: Callable[[Any], Any]
    to_state: Callable[[Any], Any]


# Tables not listed hold plain values: stake amounts (S, T), sorted key lists (L, R, W), uids (K),
# heights (Z); the named globals (G) are listed in `GLOBAL_RECORDS` where they are records.
RECORDS_BY_TABLE: dict[bytes, RecordCodec] = {
    statekeys.ACCOUNT: RecordCodec(Account.from_state, Account.to_state),
    statekeys.HOTKEY: RecordCodec(HotkeyRecord.from_state, HotkeyRecord.to_state),
    statekeys.SUBNET: RecordCodec(Subnet.from_state, Subnet.to_state),
    statekeys.NEURON: RecordCodec(Neuron.from_state, Neuron.to_state),
    statekeys.COMMITS: RecordCodec(WeightCommit.list_from_state, WeightCommit.list_to_state),
    statekeys.EPOCH_RECEIPTS: RecordCodec(EpochReceipt.list_from_state, EpochReceipt.list_to_state),
    statekeys.UNBONDING: RecordCodec(UnbondingEntry.list_from_state, UnbondingEntry.list_to_state),
    statekeys.SLASHED: RecordCodec(SlashRecord.from_state, SlashRecord.to_state),
    statekeys.FFG_TALLY: RecordCodec(FfgLink.list_from_state, FfgLink.list_to_state),
    statekeys.PROPOSAL: RecordCodec(Proposal.from_state, Proposal.to_state),
    statekeys.VOTE: RecordCodec(ProposalVote.from_state, ProposalVote.to_state),
    statekeys.VOTE_LOCK: RecordCodec(VoteLock.from_state, VoteLock.to_state),
}

# Named globals (`G|name`) stored as a record.
GLOBAL_RECORDS: dict[str, RecordCodec] = {
    "supply": RecordCodec(Supply.from_state, Supply.to_state),
    "ffg": RecordCodec(FinalityRecord.from_state, FinalityRecord.to_state),
    **{name: RecordCodec(ValidatorSet.from_state, ValidatorSet.to_state) for name in ("vset_prev", "vset", "vset_next")},
}

__all__ = [
    "EMPTY_FINALITY",
    "GLOBAL_RECORDS",
    "KEY_LEN",
    "RECORDS_BY_TABLE",
    "Account",
    "EpochReceipt",
    "FfgLink",
    "FinalityRecord",
    "HotkeyRecord",
    "MalformedRecord",
    "Neuron",
    "Proposal",
    "ProposalVote",
    "RecordCodec",
    "SlashRecord",
    "Subnet",
    "Supply",
    "UnbondingEntry",
    "ValidatorSet",
    "VoteLock",
    "WeightCommit",
    "checkpoint_from_state",
    "checkpoint_to_state",
]
