"""Checkpoint sync across validator-set changes: a joiner that trusts only the genesis set joins a
chain whose block validators were replaced after genesis, by the validator-set walk; forged
transitions are refused by name and their server penalised."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from p2pnode.chain import consensus, finality
from p2pnode.chain.encoding import encode
from p2pnode.chain.params import TAO
from p2pnode.chain.state import compose_root
from p2pnode.chain.types import AddStake, Checkpoint, FinalityVote, SignedVote
from p2pnode.services.chain.block_tree import EARLIER_SERVED_CHECKPOINTS, BlockTree
from p2pnode.services.chain.checkpoint import CheckpointConfig, CheckpointSync, CheckpointSyncError
from p2pnode.services.chain.vset_walk import (
    ValidatorSetHistory,
    WalkError,
    parse_validator_set,
    step_checkpoint,
    verify_walk,
)
from p2pnode.testing.checkpoint_net import FixedClock, LoopbackNetwork, build, run_chain, status_of
from p2pnode.testing.factories import (
    DEV_CHAIN_ID,
    make_genesis,
    open_chain,
    recompute_root,
    signed,
    validator_keys,
)
from protocols import codec, sync

# Eight candidates, four block validators: the four with the most stake (ties: lower hotkey).
GENESIS = make_genesis(8, 4, params={"max_block_validators": 4})
KEYS = validator_keys(8)


def genesis_set(chain: BlockTree) -> dict[bytes, int]:
    vset = consensus.validator_set_for_epoch(chain.head_state(), 0)
    assert vset is not None
    return dict(vset.validators)


@pytest.fixture(scope="module")
def changed_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[BlockTree, dict[bytes, int]]:
    """Nine epochs in which every genesis validator is replaced (epoch 1: the four outsiders stake
    more), then one genesis validator comes back (epoch 4)."""
    chain = open_chain(tmp_path_factory.mktemp("served") / "served.sqlite", GENESIS)
    ValidatorSetHistory(chain)
    trusted = genesis_set(chain)
    outsiders = [(cold, hot) for cold, hot in KEYS if hot.public_key not in trusted]
    insiders = [(cold, hot) for cold, hot in KEYS if hot.public_key in trusted]
    state = chain.head_state()
    txs = {10: [signed(cold, state.nonce(cold.public_key), AddStake(hotkey=hot.public_key, amount=1_000 * TAO))
                for cold, hot in outsiders]}
    cold, hot = insiders[0]
    txs[34] = [signed(cold, state.nonce(cold.public_key), AddStake(hotkey=hot.public_key, amount=5_000 * TAO))]
    run_chain(chain, 72, txs)
    assert chain.finalized is not None and chain.finalized.epoch >= 7
    return chain, trusted


def joiner(path: Path, network: LoopbackNetwork, trusted: dict[bytes, int]) -> CheckpointSync:
    chain = open_chain(path, GENESIS)
    return CheckpointSync(store=chain.store, network=network, clock=FixedClock(), chain_id=DEV_CHAIN_ID,  # type: ignore[arg-type]
                          genesis_hash=chain.store.genesis_hash, local_status=status_of(chain),
                          trusted_stake=trusted, config=CheckpointConfig(chunk_items=50, peer_wait_s=1, settle_s=0))


def honest_walk(chain: BlockTree) -> list[sync.ValidatorSetStep]:
    fin = chain.finalized
    assert fin is not None
    answer = ValidatorSetHistory(chain).answer(sync.ValidatorSetWalkRequest(checkpoint=fin.hash, after_epoch=0))
    resp = sync.decode_walk(answer, 0)
    assert resp.done
    return list(resp.steps)


def test_a_chain_whose_validators_all_changed_is_joined_by_the_walk(
        changed_chain: tuple[BlockTree, dict[bytes, int]], tmp_path: Path) -> None:
    chain, trusted = changed_chain
    fin = chain.finalized
    assert fin is not None
    now = consensus.validator_set_for_epoch(chain.head_state(), fin.epoch + 1)
    assert now is not None
    final_set = {hot for hot, _ in now.validators}
    assert len(final_set & set(trusted)) == 1, "three of the four genesis validators are gone"
    # The genesis set's votes alone cannot show this checkpoint final (what joins did before walks).
    network = LoopbackNetwork()
    network.add("honest", chain)

    async def no_walk(peer_id: str, data: bytes) -> bytes:
        return sync.encode_walk_error("no_walk")

    network.walk_servers["honest"] = no_walk
    with pytest.raises(CheckpointSyncError, match="no_finality_evidence"):
        trio.run(joiner(tmp_path / "old.sqlite", network, trusted).join)
    # With the walk it joins, and keeps only the steps needed (few: one per epoch of the swap).
    network.walk_servers.clear()
    join = joiner(tmp_path / "joiner.sqlite", network, trusted)
    report = trio.run(join.join)
    assert report.checkpoint == fin and report.penalised == [] and network.penalties == []
    assert 2 <= report.walk_steps <= 5, report.walk_steps
    joined = BlockTree(join.store)
    for height in range(fin.height + 1, chain.head.height + 1):
        joined.import_block(chain.store.canonical_block(height))  # type: ignore[arg-type]
    assert joined.head.hash == chain.head.hash
    assert recompute_root(joined.store.state_items()) == joined.head.state_root
    # The joined node serves the walk it verified, and extends it as finality moves on.
    ValidatorSetHistory(joined)
    run_chain(chain, 16)
    for height in range(joined.head.height + 1, chain.head.height + 1):
        joined.import_block(chain.store.canonical_block(height))  # type: ignore[arg-type]
    assert joined.finalized == chain.finalized
    walk = honest_walk(joined)
    assert verify_walk(walk, chain.finalized, trusted, DEV_CHAIN_ID)  # type: ignore[arg-type]


def test_a_forged_validator_set_transition_is_refused_and_its_server_penalised(
        changed_chain: tuple[BlockTree, dict[bytes, int]], tmp_path: Path) -> None:
    chain, trusted = changed_chain
    fin = chain.finalized
    assert fin is not None
    steps = honest_walk(chain)
    # A set of the forger's own keys in place of the set the first step names.
    forger_keys = validator_keys(16)[12:]
    fake_set = {"epoch": 2, "validators": sorted([hot.public_key, 1_000 * TAO] for _, hot in forger_keys),
                "seed": bytes(32)}
    forged = [dataclasses.replace(steps[0], vset_next=encode(fake_set)), *steps[1:]]
    with pytest.raises(WalkError) as refused:
        verify_walk(forged, fin, trusted, DEV_CHAIN_ID)
    assert refused.value.reason == "validator_set_not_committed"
    # A header made up to commit to that set: its root opens, but the trusted set never voted for it.
    header = dataclasses.replace(steps[0].header, state_root=compose_root(
        steps[0].items_digest, steps[0].vset, encode(fake_set)))
    made_up = dataclasses.replace(forged[0], header=header)
    with pytest.raises(WalkError) as refused:
        verify_walk([made_up, *steps[1:]], fin, trusted, DEV_CHAIN_ID)
    assert refused.value.reason == "validator_set_step_unattested"
    # ... nor do votes of the forger's keys for it count.
    cp = step_checkpoint(made_up)
    forged_votes = []
    for _, hot in forger_keys:
        vote = FinalityVote(chain=DEV_CHAIN_ID, validator=hot.public_key, source=Checkpoint(epoch=0, height=0, hash=bytes(32)), target=cp)
        forged_votes.append(SignedVote(vote=vote, sig=hot.sign(vote.signing_bytes())))
    with pytest.raises(WalkError) as refused:
        verify_walk([dataclasses.replace(made_up, votes=tuple(forged_votes)), *steps[1:]], fin, trusted, DEV_CHAIN_ID)
    assert refused.value.reason == "validator_set_step_unattested"
    # A walk that stops short of the checkpoint, or ends past its finality.
    with pytest.raises(WalkError) as refused:
        verify_walk(steps[:-1], fin, trusted, DEV_CHAIN_ID)
    assert refused.value.reason == "walk_does_not_end_at_checkpoint"
    with pytest.raises(WalkError) as refused:
        verify_walk([*steps[:-1], dataclasses.replace(steps[-1], link_votes=())], fin, trusted, DEV_CHAIN_ID)
    assert refused.value.reason == "checkpoint_not_finalized"

    # Over the network: the forger (asked first) is penalised by name; the join succeeds from the honest peer.
    network = LoopbackNetwork()
    network.add("a-forger", chain)
    network.add("b-honest", chain)

    async def forge(peer_id: str, data: bytes) -> bytes:
        return codec.encode(sync.ValidatorSetWalkResponse(error="", steps=tuple(forged), done=True))

    network.walk_servers["a-forger"] = forge
    report = trio.run(joiner(tmp_path / "joiner.sqlite", network, trusted).join)
    assert report.checkpoint == fin and report.walk_steps == len(steps)
    assert network.penalties == [("a-forger", "bad_walk:validator_set_not_committed")]
    # Only forgers: the join fails and says why.
    network = LoopbackNetwork()
    network.add("a-forger", chain)
    network.walk_servers["a-forger"] = forge
    with pytest.raises(CheckpointSyncError, match="bad_validator_set_walk: validator_set_not_committed"):
        trio.run(joiner(tmp_path / "alone.sqlite", network, trusted).join)


def test_a_validator_set_value_from_a_peer_is_checked_for_shape() -> None:
    good = {"epoch": 1, "validators": [[bytes(32), 5]], "seed": bytes(32)}
    assert parse_validator_set(encode(good)) == {bytes(32): 5}
    for bad in (b"\xff", encode([1]), encode({"validators": [[bytes(31), 5]]}),
                encode({"validators": [[bytes(32), 0]]}), encode({"validators": [[bytes(32), 1], [bytes(32), 2]]})):
        with pytest.raises(WalkError) as refused:
            parse_validator_set(bad)
        assert refused.value.reason == "malformed_validator_set"


def test_the_walk_is_served_in_pages_refused_by_name_and_rate_limited(
        changed_chain: tuple[BlockTree, dict[bytes, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain, trusted = changed_chain
    fin = chain.finalized
    assert fin is not None
    steps = honest_walk(chain)
    assert len(steps) >= 2
    # One step per page: the joiner asks again after each page's last epoch.
    monkeypatch.setattr(sync, "MAX_WALK_STEPS", 1)
    network = LoopbackNetwork()
    server = network.add("honest", chain)
    pages: list[int] = []
    original = server.serve_walk

    async def counted(peer_id: str, data: bytes) -> bytes:
        pages.append(sync.decode_walk_request(data).after_epoch)
        return await original(peer_id, data)

    network.walk_servers["honest"] = counted
    report = trio.run(joiner(tmp_path / "paged.sqlite", network, trusted).join)
    assert report.walk_steps == len(steps) and pages == [0, *[s.epoch for s in steps[:-1]]]
    # Refusals by name: a checkpoint that is not the server's current one; a node with no walk.
    answer = server.answer_walk("p", sync.ValidatorSetWalkRequest(checkpoint=bytes(32), after_epoch=0))
    assert sync.decode_walk(answer, 0).error == "not_current_checkpoint"
    unwalked = open_chain(tmp_path / "unwalked.sqlite", GENESIS)
    ValidatorSetHistory.adopt(unwalked.store, None, [])  # as after a join on a trusted hash
    history = ValidatorSetHistory(unwalked)
    run_chain(unwalked, 24)
    assert unwalked.finalized is not None and unwalked.finalized.epoch >= 1
    answer = history.answer(sync.ValidatorSetWalkRequest(checkpoint=unwalked.finalized.hash, after_epoch=0))
    assert sync.decode_walk(answer, 0).error == "no_walk"
    # The chunk server's per-peer limit covers the walk too.
    limited = type(server)(chain, network, network.clock, DEV_CHAIN_ID, rate_per_s=0, burst=2)  # type: ignore[arg-type]
    request = sync.ValidatorSetWalkRequest(checkpoint=fin.hash, after_epoch=0)
    errors = [sync.decode_walk(limited.answer_walk("greedy", request), 0).error for _ in range(4)]
    assert errors == ["", "", "rate_limited", "rate_limited"]


def test_the_checkpoint_before_the_latest_is_still_served_so_a_join_begun_there_finishes(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "served.sqlite", GENESIS)
    ValidatorSetHistory(chain)
    trusted = genesis_set(chain)
    run_chain(chain, 40)
    earlier, status_then = chain.finalized, status_of(chain)
    assert earlier is not None
    run_chain(chain, 8)  # finality moves on by one epoch
    assert chain.finalized is not None and chain.finalized.epoch == earlier.epoch + 1
    assert chain.previous_finalized == earlier
    network = LoopbackNetwork()
    network.add("honest", chain)
    network.claimed_status["honest"] = status_then  # what the joiner saw when it began
    join = joiner(tmp_path / "joiner.sqlite", network, trusted)
    report = trio.run(join.join)
    assert report.checkpoint == earlier and network.penalties == []
    assert recompute_root(join.store.state_items()) == chain.store.header(earlier.hash).state_root  # type: ignore[union-attr]
    # One more epoch: its walk is no longer served (a join fetches the walk first, its state after),
    # its state is while it is among the EARLIER_SERVED_CHECKPOINTS before the latest.
    server = network.servers["honest"][1]
    request = sync.StateChunkRequest(block=earlier.hash, after=b"", max_items=4)
    run_chain(chain, 8)
    answer = server.answer_walk("p", sync.ValidatorSetWalkRequest(checkpoint=earlier.hash, after_epoch=0))
    assert sync.decode_walk(answer, 0).error == "not_current_checkpoint"
    run_chain(chain, 8 * (EARLIER_SERVED_CHECKPOINTS - 2))
    assert chain.earlier_finalized[-1] == earlier
    assert sync.decode_state_chunk(server.answer("p", request), b"", 4).error == ""
    run_chain(chain, 8)
    assert sync.decode_state_chunk(server.answer("p", request), b"", 4).error == "not_current_checkpoint"
    # A join still on it fails by that name (finality moved on), blaming no one.
    late = joiner(tmp_path / "late.sqlite", network, trusted)
    late.trusted_checkpoint = earlier.hash
    with pytest.raises(CheckpointSyncError) as failed:
        trio.run(late.join)
    assert failed.value.reason == "checkpoint_no_longer_served" and network.penalties == []


@pytest.mark.parametrize("outsiders_in", [1, 4])
def test_a_change_across_an_empty_boundary_slot_relies_on_two_thirds_carrying_over(
        outsiders_in: int, tmp_path: Path) -> None:
    """The set of epoch 3 appears in the first block of epoch 2; when the boundary slot 16 is
    empty, the checkpoint of epoch 2 is an epoch-1 block that does not hold it. The walk then
    checks the next checkpoint with the set before the change: one validator replaced (3/4 of the
    stake carries over) still joins; all four replaced is refused by name (pass --checkpoint)."""
    chain = open_chain(tmp_path / "served.sqlite", GENESIS)
    ValidatorSetHistory(chain)
    trusted = genesis_set(chain)
    state = chain.head_state()
    outsiders = [(cold, hot) for cold, hot in KEYS if hot.public_key not in trusted][:outsiders_in]
    run_chain(chain, 15, {10: [signed(cold, state.nonce(cold.public_key), AddStake(hotkey=hot.public_key,
                                                                                    amount=1_000 * TAO))
                               for cold, hot in outsiders]})
    assert chain.head.slot == 15
    build(chain, 17)  # slot 16, the boundary of epoch 2, has no block
    run_chain(chain, 40)
    fin = chain.finalized
    assert fin is not None and fin.epoch >= 5
    now = consensus.validator_set_for_epoch(chain.head_state(), fin.epoch + 1)
    assert now is not None and len(set(dict(now.validators)) - set(trusted)) == outsiders_in
    network = LoopbackNetwork()
    network.add("honest", chain)
    join = joiner(tmp_path / "joiner.sqlite", network, trusted)
    if outsiders_in == 1:
        assert trio.run(join.join).checkpoint == fin
        return
    with pytest.raises(CheckpointSyncError, match="bad_validator_set_walk: validator_set_step_unattested"):
        trio.run(join.join)


def test_a_store_from_before_several_checkpoints_were_served_keeps_serving_its_previous_one(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "old.sqlite", GENESIS)
    run_chain(chain, 48)
    earlier = chain.earlier_finalized
    assert len(earlier) >= 2
    # What a store written before `finalized_earlier` holds: the one previous checkpoint only.
    chain.store._db.execute("DELETE FROM meta WHERE key = 'finalized_earlier'")
    chain.store.set_meta("finalized_previous", encode(finality.cp_plain(earlier[0])))
    reopened = BlockTree(chain.store)
    assert reopened.earlier_finalized == [earlier[0]] and reopened.previous_finalized == earlier[0]
    items, _ = reopened.finalized_state_chunk(b"", 4, 1 << 20, earlier[0])
    assert items
    run_chain(reopened, 8)  # finality moves on: the list grows from there
    assert reopened.earlier_finalized[1] == earlier[0]
