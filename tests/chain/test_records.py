"""Typed state records: each kind round-trips the stored bytes exactly and refuses a malformed value."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from p2pnode.chain import consensus, finality, statekeys
from p2pnode.chain.encoding import DecodeError, decode, encode
from p2pnode.chain.records import (
    GLOBAL_RECORDS,
    RECORDS_BY_TABLE,
    Account,
    EpochReceipt,
    FfgLink,
    FinalityRecord,
    HotkeyRecord,
    MalformedRecord,
    Neuron,
    Proposal,
    ProposalVote,
    SlashRecord,
    Subnet,
    Supply,
    UnbondingEntry,
    ValidatorSet,
    VoteLock,
    WeightCommit,
)
from p2pnode.chain.types import Checkpoint
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.checkpoint_net import run_chain
from p2pnode.testing.factories import make_genesis, open_chain
from p2pnode.testing.harness import busy_chain

COLD = dev_keypair("records-cold")  # the busy chain's funded account (see `busy_chain`)
KEY = bytes(range(32))


def _round_trip_all(items: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """Round-trip every record among state `items`; returns how many of each table were seen."""
    seen: dict[bytes, int] = {}
    for key, raw in items:
        table = statekeys.table_of(key)
        assert table is not None
        codec = RECORDS_BY_TABLE.get(table)
        if table == statekeys.GLOBAL:
            codec = GLOBAL_RECORDS.get(key[len(statekeys.GLOBAL):].decode())
        if codec is None:
            continue
        assert encode(codec.to_state(codec.from_state(decode(raw)))) == raw, key
        seen[table] = seen.get(table, 0) + 1
    return seen


def test_every_stored_record_round_trips_its_bytes_exactly() -> None:
    h = busy_chain("records")
    seen = _round_trip_all(h.reader.data.items())
    assert {name for name in GLOBAL_RECORDS if statekeys.global_value(name) in h.reader.data} == set(GLOBAL_RECORDS)
    assert set(seen) >= {statekeys.ACCOUNT, statekeys.HOTKEY, statekeys.SUBNET, statekeys.NEURON, statekeys.COMMITS,
                         statekeys.UNBONDING, statekeys.PROPOSAL, statekeys.VOTE, statekeys.VOTE_LOCK,
                         statekeys.EPOCH_RECEIPTS, statekeys.GLOBAL}
    # The optional fields were exercised both ways.
    state = h.state
    direct, committed = state.subnet(2), state.subnet(1)
    assert direct is not None and direct.adjusted_burn is not None and direct.interval_start is not None
    assert committed is not None and committed.adjusted_burn is None
    setter, other = state.neuron(2, 0), state.neuron(1, 1)
    assert setter is not None and setter.weights_set_block is not None and setter.weights == ((0, 21845), (1, 65535))
    assert other is not None and other.weights_set_block is None and other.peer_id == "12D3KooWrecords"


@pytest.mark.parametrize("record", [
    Account(5, 1), HotkeyRecord(KEY, 11_796), SlashRecord(40, 7), VoteLock(3, 90), ProposalVote("abstain", 9),
    UnbondingEntry(KEY, 4, 120), WeightCommit(b"\x01" * 32, 2, 17), EpochReceipt(3, 40, b"i" * 32, b"o" * 32),
    Supply(genesis=100, emitted=5, burned=2, locked=1), ValidatorSet(4, ((KEY, 9), (bytes(32), 1)), b"seed"),
    FfgLink(2, KEY, 30, (bytes(32), KEY)),
    FinalityRecord((Checkpoint(epoch=1, height=8, hash=KEY),), None, (Checkpoint(epoch=2, height=15, hash=KEY),), (2, 3)),
    Subnet(b"", b"", "root", {"tempo": 100}, 0, 0, -3, 0, 0, 0),
    Subnet(KEY, KEY, "text", {"tempo": 10, "registration_burn": 5}, 4, 9, 12, 1, 2, 3, adjusted_burn=6,
           interval_registrations=0, interval_start=8),
    Neuron(KEY, 3, 4, weights=((0, 1), (2, 65535)), bonds=((1, 7),), weights_set_block=4, active=False),
])
def test_a_record_survives_encode_and_decode(record: Any) -> None:
    assert type(record).from_state(decode(encode(record.to_state()))) == record


def _neuron_state() -> Any:
    return decode(encode(Neuron(KEY, 3, 4, weights=((0, 1),)).to_state()))  # as stored: lists, not tuples


@pytest.mark.parametrize(("kind", "value", "detail"), [
    (Account, [1], "not [balance, nonce]"),
    (Account, [-1, 0], "balance is not an unsigned integer"),
    (Account, [True, 0], "balance is not an unsigned integer"),
    (HotkeyRecord, [b"short", 0], "owner is not a 32-byte key"),
    (Neuron, {**_neuron_state(), "colour": 1}, "unknown ['colour']"),
    (Neuron, {k: v for k, v in _neuron_state().items() if k != "hot"}, "missing ['hot']"),
    (Neuron, {**_neuron_state(), "weights": [[0, 1, 2]]}, "weights has an entry that is not [uid, value]"),
    (Neuron, {**_neuron_state(), "permit": 1}, "permit is not a bool"),
    (Neuron, {**_neuron_state(), "weights_set_at": None}, "weights_set_at is not an unsigned integer"),
    (Subnet, [1, 2], "not a map"),
    (Subnet, {**Subnet(KEY, KEY, "text", {}, 0, 0, 0, 0, 0, 0).to_state(), "hp": {"tempo": "ten"}},
     "hp is not a map of names to integers"),
    (ProposalVote, ["maybe", 1], "choice 'maybe'"),
    (WeightCommit, [b"h", 1], "entry is not a list of 3"),
    (EpochReceipt, [1, 2, "hash", b""], "inputs_hash is not bytes"),
    (Supply, {"genesis": 1, "emitted": 0, "burned": 0}, "missing ['locked']"),
    (ValidatorSet, {"epoch": 1, "validators": [[KEY, -1]], "seed": b""}, "stake is not an unsigned integer"),
    (FinalityRecord, {"justified": [[1, 2, b"x"]], "finalized": None, "checkpoints": [], "tallies": []},
     "checkpoint hash is not a 32-byte key"),
])
def test_a_malformed_stored_value_is_refused_by_name(kind: Any, value: Any, detail: str) -> None:
    with pytest.raises(MalformedRecord) as info:
        kind.from_state(value)
    assert info.value.detail == detail
    assert isinstance(info.value, DecodeError)  # callers that handle a corrupted store's bytes handle it too


def test_a_corrupted_account_in_state_is_a_named_error_not_a_wrong_balance() -> None:
    h = busy_chain("records")
    h.reader.data[statekeys.account(COLD.public_key)] = encode({"balance": 5})
    with pytest.raises(MalformedRecord, match="malformed account record"):
        h.state.balance(COLD.public_key)


def test_a_proposal_counts_votes_by_choice() -> None:
    prop = Proposal(1, KEY, "signal", "", 0, b"", "", 0, 0, "hi", 10, 1, 5, 8, "voting")
    prop.add_to_tally("yes", 4)
    prop.add_to_tally("abstain", 2)
    prop.add_to_tally("yes", -1)
    assert (prop.yes, prop.no, prop.abstain) == (3, 0, 2)
    assert Proposal.from_state(decode(encode(prop.to_state()))) == prop


def test_supply_counters_move_one_at_a_time() -> None:
    supply = Supply(genesis=100, emitted=0, burned=0, locked=0).plus("locked", 7).plus("burned", 3)
    assert supply == Supply(genesis=100, emitted=0, burned=3, locked=7)
    with pytest.raises(ValueError):
        supply.plus("genesis2", 1)


def test_a_validator_set_is_built_once_per_stored_value_and_shared() -> None:
    state = busy_chain("records").state
    first, second = consensus.stored_validator_set(state, "vset"), consensus.stored_validator_set(state, "vset")
    assert first is second and first is not None  # frozen, so sharing cannot leak a change
    assert first.total_stake == sum(stake for _, stake in first.validators) > 0
    assert first.stake_of(first.validators[0][0]) == first.validators[0][1] and first.stake_of(KEY) == 0


def test_a_finalizing_chain_round_trips_its_finality_records(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "chain.sqlite", make_genesis(4, 4))
    run_chain(chain, 24)  # every validator votes each epoch: checkpoints justify and finalize
    assert chain.finalized is not None and chain.finalized.epoch >= 1
    seen = _round_trip_all(chain.store.state_items())
    assert seen.get(statekeys.FFG_TALLY, 0) >= 1 and seen[statekeys.GLOBAL] >= 4  # ffg, supply, the sets
    record = finality.finality_record(chain.head_state())
    assert record.finalized == chain.finalized and record.justified[-1].epoch > record.finalized.epoch
