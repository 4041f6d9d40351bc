"""Reward receipts: epochs commit their input hashes, peers keep the inputs, anyone can recheck them."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain import consensus
from p2pnode.chain.encoding import decode, encode
from p2pnode.chain.params import TAO
from p2pnode.chain.receipts import (
    RECEIPTS_KEPT,
    EpochRecord,
    ReceiptError,
    committed_receipts,
    explain_uid,
    find_receipt,
    verify_record,
)
from p2pnode.chain.types import AddStake, Register, SetWeights
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.store.epoch_records import EpochRecordStore
from p2pnode.testing.factories import bound, neuron_keys, open_chain, signed, subnet_genesis, validator_keys

COLD, HOT = neuron_keys(4)
VALS = validator_keys(4)
PROPOSERS = {hot.public_key: hot for hot in [*(h for _, h in VALS), *HOT]}  # staking makes candidates
TEMPO = 5


class Chain:
    def __init__(self, tmp: Path, keep: int = RECEIPTS_KEPT) -> None:
        genesis = subnet_genesis(4, {"tempo": TEMPO})
        self.tree: BlockTree = open_chain(tmp / "chain.sqlite", genesis)
        self.records = EpochRecordStore(tmp / "epochs.sqlite", keep=keep)
        self.tree.epoch_listeners.append(self.records.add)
        self.nonces: dict[bytes, int] = {}

    def tx(self, key, body):  # type: ignore[no-untyped-def]
        nonce = self.nonces.get(key.public_key, self.tree.head_state().nonce(key.public_key))
        self.nonces[key.public_key] = nonce + 1
        return signed(key, nonce, body)

    def block(self, txs=()) -> None:  # type: ignore[no-untyped-def]
        state = self.tree.head_state()
        slot = self.tree.head.slot + 1
        proposer = PROPOSERS[consensus.proposer_for_slot(state, slot)]
        self.tree.import_block(self.tree.build_block(proposer, slot, list(txs)))
        self.nonces = {}

    def record(self, netuid: int, epoch: int) -> EpochRecord:
        docs = [doc for block_hash, height, doc in self.records.documents(netuid, epoch)
                if self.tree.store.canonical_hash(height) == block_hash]
        assert len(docs) == 1
        return EpochRecord.from_document(docs[0])


@pytest.fixture
def market(tmp_path: Path) -> Chain:
    """Owner uid 0, validators uids 1 and 2 (staked), miners uids 3 and 4, three epochs with weights."""
    c = Chain(tmp_path)
    c.block([c.tx(COLD[i], Register(netuid=1, hotkey=HOT[i].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[i], COLD[i]))) for i in range(4)])
    c.block([c.tx(COLD[0], AddStake(hotkey=HOT[0].public_key, amount=1000 * TAO, hotkey_sig=bound(HOT[0], COLD[0]))),
             c.tx(COLD[1], AddStake(hotkey=HOT[1].public_key, amount=500 * TAO, hotkey_sig=bound(HOT[1], COLD[1])))])
    for _ in range(TEMPO):
        c.block()  # an epoch hands out permits
    c.block([c.tx(HOT[0], SetWeights(netuid=1, uids=(3, 4), values=(60000, 20000), version_key=0)),
             c.tx(HOT[1], SetWeights(netuid=1, uids=(3, 4), values=(20000, 50000), version_key=0))])
    for _ in range(3 * TEMPO):
        c.block()
    return c


def test_every_epoch_commits_a_receipt_and_every_uid_verifies(market: Chain) -> None:
    state = market.tree.head_state()
    receipts = committed_receipts(state, 1)
    assert len(receipts) >= 4
    assert [r.epoch for r in receipts] == list(range(receipts[0].epoch, receipts[0].epoch + len(receipts)))
    last = receipts[-1]
    record = market.record(1, last.epoch)
    checks = verify_record(record, find_receipt(receipts, record.epoch))
    assert [c.name for c in checks] == ["receipt", "inputs_hash", "recomputed_outputs", "outputs_hash", "payout"]
    assert all(c.ok for c in checks), checks
    # The recorded outputs are what the chain wrote into the neurons at that epoch.
    for uid in range(record.inputs.n):
        neuron = state.neuron(1, uid)
        assert (neuron.incentive, neuron.dividends) == (record.outputs.incentive[uid], record.outputs.dividends[uid])
        assert neuron.emission == explain_uid(record, uid)["emission_rao"]
    # Miners' incentives come from the validators' clipped weights; the better miner earns more.
    miner3, miner4 = explain_uid(record, 3), explain_uid(record, 4)
    assert miner3["incentive_rao"] > 0 and miner4["incentive_rao"] > 0
    assert sum(v["incentive_share_ppm"] for v in miner3["validators"]) in range(999_990, 1_000_001)
    by_uid = {v["uid"]: v for v in miner3["validators"]}
    assert by_uid[1]["weight"] > by_uid[2]["weight"]
    assert by_uid[2]["consensus_cut"] == by_uid[2]["weight"] - by_uid[2]["clipped_weight"]
    validator = explain_uid(record, 1)
    assert validator["dividends_rao"] > 0 and {b["uid"] for b in validator["bonds"]} == {3, 4}
    owner = explain_uid(record, 0)
    assert owner["is_owner"] and owner["owner_cut_rao"] > 0
    assert record.owner_cut + record.inputs.emission == record.pending
    # The per-validator breakdown reproduces the epoch's incentive: rank_j = sum_i stake_i * clipped_ij.
    ranks = [sum(v["stake"] * v["clipped_weight"] for v in explain_uid(record, j)["validators"] if v["active"])
             for j in range(record.inputs.n)]
    for j, rank in enumerate(ranks):
        assert abs(rank * 65535 // sum(ranks) - record.outputs.incentive[j]) <= 65535 // 200, (j, ranks)
    # Every kept epoch verifies.
    for receipt in receipts:
        assert all(c.ok for c in verify_record(market.record(1, receipt.epoch), receipt))


@pytest.mark.parametrize("field", ["stake", "weights", "bonds", "last_update", "kappa"])
def test_altering_one_stored_input_fails_verification(market: Chain, field: str) -> None:
    receipts = committed_receipts(market.tree.head_state(), 1)
    epoch = receipts[-1].epoch
    [(block_hash, height, doc)] = market.records.documents(1, epoch)
    yuma_doc = doc["inputs"]["yuma"]
    if field == "stake":
        yuma_doc["stake"][3] += 1
    elif field == "weights":
        values = bytearray(yuma_doc["weights"][1][1])
        values[0] ^= 1  # one weight of validator uid 1, off by one
        yuma_doc["weights"][1][1] = bytes(values)
    elif field == "bonds":
        yuma_doc["bonds"][1] = [b"", b""]  # validator uid 1 without its bonds
    elif field == "last_update":
        yuma_doc["last_update"][2] -= 1
    else:
        yuma_doc["kappa"] += 1
    market.records.put_document(1, epoch, block_hash, height, doc)
    checks = {c.name: c for c in verify_record(market.record(1, epoch), find_receipt(receipts, epoch))}
    assert not checks["inputs_hash"].ok
    assert checks["receipt"].ok


def test_altering_a_recorded_output_fails_verification(market: Chain) -> None:
    receipts = committed_receipts(market.tree.head_state(), 1)
    epoch = receipts[-1].epoch
    [(block_hash, height, doc)] = market.records.documents(1, epoch)
    doc["outputs"]["server_emission"][3] += 5
    market.records.put_document(1, epoch, block_hash, height, doc)
    checks = {c.name: c for c in verify_record(market.record(1, epoch), find_receipt(receipts, epoch))}
    assert checks["inputs_hash"].ok and checks["outputs_hash"].ok
    assert not checks["recomputed_outputs"].ok and "server_emission" in checks["recomputed_outputs"].detail


def test_receipts_and_records_stay_bounded(tmp_path: Path) -> None:
    c = Chain(tmp_path, keep=3)
    for _ in range((RECEIPTS_KEPT + 3) * TEMPO):
        c.block()
    receipts = committed_receipts(c.tree.head_state(), 1)
    assert len(receipts) == RECEIPTS_KEPT
    kept = c.records.epochs(1)
    assert len(kept) == 3 and kept[-1] == receipts[-1].epoch
    # An epoch whose receipt has left state cannot be verified against the chain, and says so.
    old = EpochRecord.from_document(c.records.documents(1, kept[0])[0][2])
    checks = verify_record(old, find_receipt(receipts[-1:], old.epoch))
    assert not checks[0].ok and "no receipt" in checks[0].detail


def test_record_document_round_trips_and_rejects_malformed(market: Chain) -> None:
    epoch = committed_receipts(market.tree.head_state(), 1)[-1].epoch
    record = market.record(1, epoch)
    again = EpochRecord.from_document(decode(encode(record.to_document())))
    assert again == record and again.inputs_hash() == record.inputs_hash()
    doc = record.to_document()
    del doc["inputs"]["yuma"]["stake"]
    with pytest.raises(ReceiptError, match="stake"):
        EpochRecord.from_document(doc)
    doc = record.to_document()
    doc["inputs"]["yuma"]["stake"] = doc["inputs"]["yuma"]["stake"][:-1]
    with pytest.raises(ReceiptError, match="stake"):
        EpochRecord.from_document(doc)
    with pytest.raises(ReceiptError, match="uid 9"):
        explain_uid(record, 9)


def test_a_record_with_outputs_of_the_wrong_length_is_refused(market: Chain) -> None:
    epoch = committed_receipts(market.tree.head_state(), 1)[-1].epoch
    doc = market.record(1, epoch).to_document()
    doc["outputs"]["incentive"] = doc["outputs"]["incentive"][:-1]
    with pytest.raises(ReceiptError, match="outputs.incentive"):
        EpochRecord.from_document(doc)
    doc = market.record(1, epoch).to_document()
    doc["outputs"]["bonds"][1] = [b"\x01\x00", b"\x01"]
    with pytest.raises(ReceiptError, match="equal, even length"):
        EpochRecord.from_document(doc)


def test_a_failing_record_file_loses_the_records_not_the_block(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    c.records.close()  # every write now fails
    for _ in range(2 * TEMPO):
        c.block()
    assert len(committed_receipts(c.tree.head_state(), 1)) >= 2
    assert c.tree.head.height == 2 * TEMPO
