"""A genesis document that pins its state root: every peer that builds the genesis checks the pin,
and a fresh peer joining by checkpoint sync takes it instead of hashing every genesis item."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from p2pnode.chain.genesis import GenesisError, build_genesis_pinned, build_genesis_state
from p2pnode.chain.params import TAO
from p2pnode.genesis_file import genesis_from_json
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.checkpoint import CheckpointConfig, CheckpointSync
from p2pnode.services.chain.vset_walk import ValidatorSetHistory
from p2pnode.store.sqlite_store import Store
from p2pnode.testing.checkpoint_net import FixedClock, LoopbackNetwork, run_chain, status_of
from p2pnode.testing.factories import DEV_CHAIN_ID, make_genesis, open_chain, recompute_root

EXTRA = tuple((i.to_bytes(4, "big") * 8, TAO) for i in range(1, 201))
GENESIS = make_genesis(4, 4, extra_balances=EXTRA)


def test_a_pinned_root_gives_the_same_genesis_without_hashing_and_a_wrong_pin_is_refused() -> None:
    reader, _, header = build_genesis_state(GENESIS)
    pinned = dataclasses.replace(GENESIS, state_root=header.state_root)
    assert build_genesis_state(pinned)[2].hash == header.hash, "a right pin is checked and accepted"
    pinned_reader, pinned_header = build_genesis_pinned(pinned)
    assert pinned_header == header and pinned_reader.data == reader.data
    with pytest.raises(GenesisError, match="state_root: the genesis state's root is"):
        build_genesis_state(dataclasses.replace(GENESIS, state_root=bytes(32)))
    with pytest.raises(GenesisError, match="pins no state root"):
        build_genesis_pinned(GENESIS)


def test_the_genesis_file_reads_a_pin_and_refuses_a_malformed_one() -> None:
    doc = {"chain_id": "pin-test", "genesis_time_ms": 0, "balances": {}, "validators": [], "state_root": "ab" * 32}
    assert genesis_from_json(doc)[0].state_root == bytes([0xAB]) * 32
    for bad in ("ab" * 31, "zz" * 32, 5):
        with pytest.raises(GenesisError, match="state_root: expected 64 hex digits"):
            genesis_from_json({**doc, "state_root": bad})


def test_a_store_on_an_unhashed_genesis_is_completed_by_a_later_full_build(tmp_path: Path) -> None:
    reader, acc, header = build_genesis_state(GENESIS)
    store = Store(tmp_path / "chain.sqlite")
    pinned_reader, pinned_header = build_genesis_pinned(dataclasses.replace(GENESIS, state_root=header.state_root))
    store.initialise(pinned_header, pinned_reader, None)
    assert store.genesis_unhashed() and store.genesis_hash == header.hash
    store.initialise(header, reader, acc)  # a later start without checkpoint sync hashes it
    assert not store.genesis_unhashed() and store.head_accumulator() == acc
    assert recompute_root(store.state_items()) == header.state_root


def test_a_peer_on_a_pinned_genesis_joins_by_checkpoint_sync(tmp_path: Path) -> None:
    served = open_chain(tmp_path / "served.sqlite", GENESIS)
    ValidatorSetHistory(served)
    run_chain(served, 40)
    fin = served.finalized
    assert fin is not None
    network = LoopbackNetwork()
    network.add("honest", served)
    store = Store(tmp_path / "joiner.sqlite")
    reader, header = build_genesis_pinned(dataclasses.replace(GENESIS, state_root=served.store.header(
        served.store.genesis_hash).state_root))  # type: ignore[union-attr]
    store.initialise(header, reader, None)
    fresh = BlockTree(store)
    join = CheckpointSync(store=store, network=network, clock=FixedClock(), chain_id=DEV_CHAIN_ID,  # type: ignore[arg-type]
                          genesis_hash=store.genesis_hash, local_status=status_of(fresh),
                          trusted_stake={v.hotkey: v.stake for v in GENESIS.validators},
                          config=CheckpointConfig(chunk_items=64, peer_wait_s=1, settle_s=0))
    report = trio.run(join.join)
    assert report.checkpoint == fin and report.walk_steps >= 1 and network.penalties == []
    assert not store.genesis_unhashed()
    joined = BlockTree(store)
    for height in range(fin.height + 1, served.head.height + 1):
        joined.import_block(served.store.canonical_block(height))  # type: ignore[arg-type]
    assert joined.head.hash == served.head.hash
    assert recompute_root(store.state_items()) == joined.head.state_root


def test_a_store_still_at_genesis_checks_the_pin_and_one_past_genesis_takes_it(tmp_path: Path) -> None:
    """A genesis file with other validators and the real pin has the real genesis hash, so the
    store's check cannot tell it apart: a store at height 0 (where checkpoint sync may still run
    and trust those validators) hashes the file and refuses it; a store past genesis takes the pin."""
    from p2pnode.peer import genesis_for_store

    _, _, header = build_genesis_state(GENESIS)
    pinned = dataclasses.replace(GENESIS, state_root=header.state_root)
    swapped = dataclasses.replace(pinned, validators=GENESIS.validators[:1])
    assert build_genesis_pinned(swapped)[1].hash == header.hash
    store = Store(tmp_path / "chain.sqlite")
    store.initialise(*_reader_header_acc(pinned))
    assert store.head_height == 0
    with pytest.raises(GenesisError, match="state_root: the genesis state's root is"):
        genesis_for_store(store, swapped, checkpoint_sync=True)
    assert genesis_for_store(store, pinned, checkpoint_sync=True)[1] is not None, "hashed at height 0"
    chain = BlockTree(store)
    run_chain(chain, 2)
    assert store.head_height > 0
    _, acc, past_header = genesis_for_store(store, pinned, checkpoint_sync=True)
    assert acc is None and past_header.hash == header.hash, "past genesis: the pin, not a hash of every item"


def _reader_header_acc(genesis):  # noqa: ANN001, ANN202
    reader, acc, header = build_genesis_state(genesis)
    return header, reader, acc
