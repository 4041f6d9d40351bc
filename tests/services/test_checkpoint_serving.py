"""Checkpoint sync in one process: chunked serving of the finalized state, a join that checks the
finality votes and the state root, a corrupt server penalised while the join succeeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.chain import finality
from p2pnode.chain.types import Checkpoint
from p2pnode.services.chain.backfill import BackfillConfig, HistoryBackfill
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.checkpoint import (
    CheckpointConfig,
    CheckpointSync,
    CheckpointSyncError,
    StateChunkServer,
)
from p2pnode.services.chain.vset_walk import ValidatorSetHistory
from p2pnode.testing.checkpoint_net import FixedClock, LoopbackNetwork, build, run_chain, status_of
from p2pnode.testing.factories import DEV_CHAIN_ID, make_genesis, open_chain, recompute_root
from protocols import sync

GENESIS = make_genesis(4, 4)
GENESIS_STAKE = {v.hotkey: v.stake for v in GENESIS.validators}
FakeClock = FixedClock
FakeNetwork = LoopbackNetwork


def joiner(tmp_path: Path, network: FakeNetwork, **kwargs: Any) -> CheckpointSync:
    chain = open_chain(tmp_path / "joiner.sqlite", GENESIS)
    config = CheckpointConfig(chunk_items=kwargs.pop("chunk_items", 7), peer_wait_s=1, settle_s=0)
    return CheckpointSync(store=chain.store, network=network, clock=FakeClock(), chain_id=DEV_CHAIN_ID,  # type: ignore[arg-type]
                          genesis_hash=chain.store.genesis_hash, local_status=status_of(chain),
                          trusted_stake=GENESIS_STAKE, config=config, **kwargs)


@pytest.fixture(scope="module")
def finalized_chain(tmp_path_factory: pytest.TempPathFactory) -> BlockTree:
    chain = open_chain(tmp_path_factory.mktemp("served") / "served.sqlite", GENESIS)
    ValidatorSetHistory(chain)  # as a node's chunk server does from the start: it keeps the walk
    run_chain(chain, 40)
    assert chain.finalized is not None and chain.finalized.height >= 16
    assert chain.head.height > chain.finalized.height + 2, "the head is ahead of the checkpoint"
    return chain


@pytest.fixture
def fin(finalized_chain: BlockTree) -> Checkpoint:
    """The served chain's finalized checkpoint when the test starts."""
    checkpoint = finalized_chain.finalized
    assert checkpoint is not None
    return checkpoint


def serving(chain: BlockTree, *names: str) -> FakeNetwork:
    """A network whose peers `names` all serve `chain` honestly."""
    network = FakeNetwork()
    for name in names:
        network.add(name, chain)
    return network


def test_chunks_cover_the_finalized_state_not_the_head(finalized_chain: BlockTree) -> None:
    chain = finalized_chain
    fin = chain.finalized
    assert fin is not None
    items: list[tuple[bytes, bytes]] = []
    after, done, chunks = b"", False, 0
    while not done:
        chunk, done = chain.finalized_state_chunk(after, 5, 1 << 20)
        assert len(chunk) <= 5 and (done or chunk)
        items += chunk
        after = chunk[-1][0] if chunk else after
        chunks += 1
    assert chunks > 3
    assert [k for k, _ in items] == sorted({k for k, _ in items}), "keys strictly increasing, none twice"
    assert recompute_root(items) == chain.store.header(fin.hash).state_root
    assert recompute_root(items) != chain.head.state_root


def test_a_request_for_another_block_is_refused_by_name(finalized_chain: BlockTree) -> None:
    server = StateChunkServer(finalized_chain, FakeNetwork(), FakeClock(), DEV_CHAIN_ID)  # type: ignore[arg-type]
    answer = server.answer("p", sync.StateChunkRequest(block=finalized_chain.head.hash, after=b"", max_items=10))
    assert sync.decode_state_chunk(answer, b"", 10).error == "not_current_checkpoint"


def test_requests_are_rate_limited_per_peer(finalized_chain: BlockTree, fin: Checkpoint) -> None:
    server = StateChunkServer(finalized_chain, FakeNetwork(), FakeClock(), DEV_CHAIN_ID, rate_per_s=0, burst=3)  # type: ignore[arg-type]
    req = sync.StateChunkRequest(block=fin.hash, after=b"", max_items=2)
    errors = [sync.decode_state_chunk(server.answer("greedy", req), b"", 2).error for _ in range(5)]
    assert errors == ["", "", "", "rate_limited", "rate_limited"]
    assert sync.decode_state_chunk(server.answer("other", req), b"", 2).error == ""
    # Many peer ids together cannot pass the shared limit.
    shared = StateChunkServer(finalized_chain, FakeNetwork(), FakeClock(), DEV_CHAIN_ID, total_rate_per_s=2)  # type: ignore[arg-type]
    errors = [sync.decode_state_chunk(shared.answer(f"sybil-{i}", req), b"", 2).error for i in range(6)]
    assert errors == ["", "", "", "", "rate_limited", "rate_limited"]


def test_out_of_order_keys_are_malformed() -> None:
    data = sync.encode_state_chunk([(b"b", b"1"), (b"a", b"2")], done=True)
    with pytest.raises(sync.codec.MalformedMessage):
        sync.decode_state_chunk(data, b"", 10)
    with pytest.raises(sync.codec.MalformedMessage):
        sync.decode_state_chunk(sync.encode_state_chunk([(b"a", b"1")], done=True), b"a", 10)


def test_a_fresh_store_joins_at_the_checkpoint_and_follows_the_head(finalized_chain: BlockTree, fin: Checkpoint,
                                                                    tmp_path: Path) -> None:
    network = serving(finalized_chain, "honest")
    join = joiner(tmp_path, network)
    report = trio.run(join.join)
    assert report.checkpoint == fin
    assert report.penalised == [] and network.penalties == []
    assert report.walk_steps == 1, "the genesis set never changed: the walk is the checkpoint's step"
    chain = BlockTree(join.store)
    assert chain.head.hash == fin.hash and chain.finalized == fin
    # Why finality is also kept outside state: the checkpoint block's own state cannot name it
    # finalized (the votes that finalize it are in later blocks); only the store's record does.
    state_finalized = finality.finalized_checkpoint(chain.head_state())
    assert state_finalized is not None and state_finalized.epoch < fin.epoch
    assert join.store.canonical_hash(1) is None, "no history below the checkpoint"
    # Following the head: the served chain's blocks after the checkpoint import on the snapshot.
    for height in range(fin.height + 1, finalized_chain.head.height + 1):
        block = finalized_chain.store.canonical_block(height)
        assert block is not None
        chain.import_block(block)
    assert chain.head.hash == finalized_chain.head.hash
    assert recompute_root(chain.store.state_items()) == chain.head.state_root
    # and it keeps following as the network goes on.
    run_chain(finalized_chain, 3)
    for height in range(chain.head.height + 1, finalized_chain.head.height + 1):
        chain.import_block(finalized_chain.store.canonical_block(height))  # type: ignore[arg-type]
    assert chain.head.hash == finalized_chain.head.hash


def test_a_corrupt_server_is_penalised_and_the_join_still_succeeds(finalized_chain: BlockTree, fin: Checkpoint,
                                                                  tmp_path: Path) -> None:
    network = FakeNetwork()
    # Sorted first, so the round-robin download takes chunks from both.
    network.add("a-corrupt", finalized_chain, corrupt=True)
    network.add("b-honest", finalized_chain)
    join = joiner(tmp_path, network)
    report = trio.run(join.join)
    assert network.chunk_requests["a-corrupt"] >= 1
    assert "a-corrupt" in report.penalised and "b-honest" not in report.penalised
    assert ("a-corrupt", "bad_state_snapshot") in network.penalties
    assert recompute_root(join.store.state_items()) == finalized_chain.store.header(fin.hash).state_root


def test_without_votes_of_two_thirds_of_the_trusted_stake_the_join_fails(finalized_chain: BlockTree, tmp_path: Path) -> None:
    network = serving(finalized_chain, "honest")
    # A validator set the node trusts in which the chain's voters hold under 2/3 of the stake.
    stranger = bytes(range(32))
    trusted = dict(GENESIS_STAKE)
    trusted[stranger] = 3 * sum(GENESIS_STAKE.values())
    join = joiner(tmp_path, network)
    join.trusted_stake = trusted
    with pytest.raises(CheckpointSyncError, match="bad_validator_set_walk: validator_set_step_unattested"):
        trio.run(join.join)
    assert join.store.head_height == 0, "nothing installed"
    # The same without a walk to check: the checkpoint's own finality votes fall short.
    network.walk_servers["honest"] = no_walk
    join = joiner(tmp_path / "again", network) if (tmp_path / "again").mkdir() is None else None
    assert join is not None
    join.trusted_stake = trusted
    with pytest.raises(CheckpointSyncError, match="no_finality_evidence"):
        trio.run(join.join)


async def no_walk(peer_id: str, data: bytes) -> bytes:
    return sync.encode_walk_error("no_walk")


def test_a_trusted_checkpoint_hash_skips_the_votes_and_other_checkpoints_are_ignored(
    finalized_chain: BlockTree, fin: Checkpoint, tmp_path: Path
) -> None:
    network = serving(finalized_chain, "honest")
    join = joiner(tmp_path, network, trusted_checkpoint=fin.hash)
    join.trusted_stake = {}
    assert trio.run(join.join).checkpoint == fin
    other = joiner(tmp_path / "other", network, trusted_checkpoint=bytes(32)) if (tmp_path / "other").mkdir() is None else None
    assert other is not None
    with pytest.raises(CheckpointSyncError, match="no_checkpoint_peers"):
        trio.run(other.join)


def test_peers_advertising_a_checkpoint_they_cannot_show_are_penalised_and_passed_over(
    finalized_chain: BlockTree, fin: Checkpoint, tmp_path: Path
) -> None:
    network = FakeNetwork()
    honest = status_of(finalized_chain)
    bogus = dataclasses.replace(honest, finalized_hash=bytes([7]) * 32, finalized_epoch=fin.epoch + 1)
    for liar in ("liar-1", "liar-2"):  # the most advertised checkpoint is theirs
        network.add(liar, finalized_chain)
        network.claimed_status[liar] = bogus
    network.add("honest", finalized_chain)
    join = joiner(tmp_path, network)
    report = trio.run(join.join)
    assert report.checkpoint == fin
    assert sorted(report.penalised) == ["liar-1", "liar-2"]
    assert {reason for _, reason in network.penalties} == {"wrong_checkpoint_block"}


def test_history_below_the_checkpoint_is_backfilled_past_a_peer_with_another_history(
    finalized_chain: BlockTree, tmp_path: Path
) -> None:
    network = serving(finalized_chain, "honest")
    join = joiner(tmp_path, network)
    fin = trio.run(join.join).checkpoint
    assert join.store.history_low() == fin.height
    # A peer whose blocks at those heights are another chain's (same genesis, other transactions).
    other = open_chain(tmp_path / "other.sqlite", GENESIS)
    for slot in range(2, 2 + fin.height + 2):
        build(other, slot)
    network.add("a-other-history", other)
    backfill = HistoryBackfill(store=join.store, network=network, chain_id=DEV_CHAIN_ID,  # type: ignore[arg-type]
                               config=BackfillConfig(batch=7, pause_s=0, retry_s=0))
    trio.run(backfill.run)
    assert backfill.done() and backfill.penalised == ["a-other-history"]
    for height in range(0, fin.height + 1):
        assert join.store.canonical_hash(height) == finalized_chain.store.canonical_hash(height), height
    # Now it serves ranges from genesis like any peer.
    assert len(join.store.canonical_range_bytes(1, 64)) == fin.height


def test_a_joiner_waits_out_a_servers_rate_limit(finalized_chain: BlockTree, tmp_path: Path) -> None:
    class TrioClock:
        def now_ms(self) -> int:
            return int(trio.current_time() * 1000)

    network = FakeNetwork()
    server = network.add("limited", finalized_chain)
    server.clock = TrioClock()  # type: ignore[assignment]
    server.buckets = type(server.buckets)(rate_per_s=50, burst=2)
    join = joiner(tmp_path, network, chunk_items=3)
    join.config = dataclasses.replace(join.config, rate_limit_wait_s=0.01)
    report = trio.run(join.join)
    assert report.penalised == []
    assert network.chunk_requests["limited"] > report.items // 3 + 2, "some requests were refused and repeated"
