"""Scenario tests on the deterministic simulator: agreement, faults, partitions, slashing, catch-up.

Each scenario runs whole ChainNodes (producer, mempool, votes, sync, SQLite stores) on virtual time;
the CI versions are tens of slots, longer ones are marked slow. Slots are 1 s, epochs 8 slots.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain import consensus, statekeys
from p2pnode.chain.params import TAO
from p2pnode.chain.records import Account
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.testing.sim import Simulation
from protocols import codec, topics

EPOCH = 8


def finalized_epoch(node: ChainService) -> int:
    cp = node.finalized
    return -1 if cp is None else cp.epoch


def assert_agreement(sim: Simulation) -> None:
    """All running nodes share the head, its state root, and the finalized checkpoint."""
    heads = {(n.chain.head.hash, n.chain.head.state_root) for n in sim.up()}
    assert len(heads) == 1, f"heads differ: {sorted(h.hex()[:8] for h, _ in heads)}"
    assert len(set(sim.finalized())) == 1


def assert_finality_never_reverted(sim: Simulation) -> None:
    """Every checkpoint a node ever saw finalized is on its final canonical chain."""
    for sim_node in sim.up():
        for height, block_hash in sim_node.finalized_log:
            assert sim_node.chain.store.canonical_hash(height) == block_hash, f"node {sim_node.index} reverted {height}"
        heights = [h for h, _ in sim_node.finalized_log]
        assert heights == sorted(heights)


def assert_supply_conserved(sim_node_chain: object) -> None:
    store = sim_node_chain.store  # type: ignore[attr-defined]
    state = sim_node_chain.head_state()  # type: ignore[attr-defined]
    from p2pnode.chain.encoding import decode

    balances = sum(Account.from_state(decode(v)).balance for _, v in store.state_items(statekeys.ACCOUNT))
    stakes = sum(decode(v) for _, v in store.state_items(statekeys.STAKE))
    supply = state.supply()
    assert balances + stakes + supply.burned + supply.locked == supply.genesis + supply.emitted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_four_nodes_finalize_the_same_blocks_and_state(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=seed)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(5 * EPOCH)

    sim.run(scenario)
    # run() stopped the nodes; reopen nothing: the logs and stores hold the outcome.
    logs = [n.finalized_log for n in sim.nodes]
    assert all(log == logs[0] for log in logs)
    assert len(logs[0]) >= 3, "finality advanced epoch after epoch"


def test_sixteen_nodes_finalize_the_same_blocks_and_state(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=16, seed=4)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(4 * EPOCH)
        assert_agreement(sim)
        assert min(finalized_epoch(n.node) for n in sim.up() if n.node) >= 2

    sim.run(scenario)


def test_same_seed_same_run(tmp_path: Path) -> None:
    def one_run(directory: Path) -> list[object]:
        sim = Simulation(directory, nodes=4, seed=11, max_latency_ms=400, loss_permille=50)

        async def scenario(sim: Simulation) -> list[object]:
            trace: list[object] = []
            await sim.run_until_slot(4 * EPOCH, every_slot=lambda s: trace.append((s, sim.heads(), sim.finalized())))
            return trace

        return sim.run(scenario)  # type: ignore[no-any-return]

    first, second = one_run(tmp_path / "a"), one_run(tmp_path / "b")
    assert first == second
    assert first[-1][2][0][0] >= 2  # and the run did finalize


@pytest.mark.parametrize("seed", [5, 6])
def test_finality_continues_above_two_thirds_online_and_stops_below(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=seed)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(2 * EPOCH)
        sim.crash(3)  # 3/4 of the stake online
        at_first_crash = finalized_epoch(sim.nodes[0].node)
        await sim.run_until_slot(6 * EPOCH)
        assert finalized_epoch(sim.nodes[0].node) >= at_first_crash + 3
        assert_agreement(sim)
        sim.crash(2)  # 1/2 online: below 2/3
        await sim.run_until_slot(6 * EPOCH + 2)
        stalled_at = finalized_epoch(sim.nodes[0].node)
        height_before = sim.nodes[0].chain.head.height
        await sim.run_until_slot(10 * EPOCH)
        assert finalized_epoch(sim.nodes[0].node) == stalled_at
        assert finalized_epoch(sim.nodes[1].node) == stalled_at
        assert sim.nodes[0].chain.head.height > height_before + EPOCH, "blocks continue without finality"
        assert_agreement(sim)

    sim.run(scenario)


@pytest.mark.parametrize("seed", [7, 8])
def test_partition_halves_cannot_finalize_and_heal_onto_one_chain(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=seed)
    ids = [n.peer_id for n in sim.nodes]

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(2 * EPOCH)
        sim.net.partition(ids[:2], ids[2:])
        at_split = max(finalized_epoch(n.node) for n in sim.up() if n.node)
        await sim.run_until_slot(7 * EPOCH)
        # In-flight votes may complete one more step; after that neither half has 2/3.
        assert max(finalized_epoch(n.node) for n in sim.up() if n.node) <= at_split + 1
        assert sim.nodes[0].chain.head.hash != sim.nodes[2].chain.head.hash
        sim.net.heal()
        await sim.run_until_slot(12 * EPOCH)
        assert_agreement(sim)
        assert finalized_epoch(sim.nodes[0].node) >= at_split + 3, "finality resumes after healing"
        assert_finality_never_reverted(sim)

    sim.run(scenario)


def test_partition_majority_side_finalizes_minority_does_not(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=9)
    ids = [n.peer_id for n in sim.nodes]

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(2 * EPOCH)
        sim.net.partition(ids[:3], ids[3:])
        at_split = finalized_epoch(sim.nodes[3].node)
        await sim.run_until_slot(7 * EPOCH)
        assert finalized_epoch(sim.nodes[0].node) >= at_split + 3
        assert finalized_epoch(sim.nodes[3].node) <= at_split + 1
        sim.net.heal()
        await sim.run_until_slot(10 * EPOCH)
        assert_agreement(sim)
        assert_finality_never_reverted(sim)

    sim.run(scenario)


def _next_slot_of(sim: Simulation, proposer_index: int, after: int) -> int:
    state = sim.nodes[0].chain.head_state()
    hot = sim.validator_hotkeys[proposer_index].public_key
    for slot in range(after, after + 200):
        if consensus.proposer_for_slot(state, slot) == hot:
            return slot
    raise AssertionError("no slot for the proposer")


@pytest.mark.parametrize("seed", [10, 11])
def test_equivocating_proposer_and_double_voter_are_slashed_everywhere(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=5, seed=seed, passive=frozenset({0, 1}))
    hot0, hot1 = sim.validator_hotkeys[0].public_key, sim.validator_hotkeys[1].public_key
    stake = 1_000 * TAO

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(EPOCH + 1)
        slot = _next_slot_of(sim, 0, EPOCH + 3)
        await sim.clock.sleep_until_ms(slot * 1000)
        await sim.equivocate_proposal(0, slot)
        await sim.double_vote(1)
        await sim.run_until_slot(slot + 2 * EPOCH)
        for sim_node in sim.up():
            state = sim_node.chain.head_state()
            for offender in (hot0, hot1):
                assert consensus.is_slashed(state, offender), f"node {sim_node.index}"
                assert state.total_stake(offender) == stake - stake * state.param("slash_permille") // 1000
            assert state.supply().burned == 2 * stake * state.param("slash_permille") // 1000
            assert_supply_conserved(sim_node.chain)
        # Ejected from the set computed after the slashing, on every node alike.
        await sim.run_until_slot(slot + 4 * EPOCH)
        for sim_node in sim.up():
            nxt = consensus.stored_validator_set(sim_node.chain.head_state(), "vset_next").validators  # type: ignore[union-attr]
            assert all(hot not in (hot0, hot1) for hot, _ in nxt)
        assert_agreement(sim)

    sim.run(scenario)


@pytest.mark.parametrize("seed", [12, 13])
def test_a_restarted_node_catches_up_from_its_store(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=4, seed=seed)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(EPOCH + 2)
        sim.crash(3)
        await sim.run_until_slot(5 * EPOCH)
        await sim.start_node(3)
        assert sim.nodes[3].chain.head.height >= EPOCH  # it kept what it had
        await sim.run_until_slot(6 * EPOCH)
        assert_agreement(sim)
        assert_finality_never_reverted(sim)

    sim.run(scenario)


def _join_late(tmp_path: Path, seed: int, height: int) -> None:
    sim = Simulation(tmp_path, nodes=5, validators=4, seed=seed)

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(height)
        await sim.start_node(4)
        await sim.run_until_slot(height + 6)
        assert sim.nodes[4].chain.head.height >= height
        assert_agreement(sim)
        assert sim.nodes[4].node is not None and sim.nodes[4].node.sync.blocks_imported >= height - 10

    sim.run(scenario, start=[0, 1, 2, 3])


@pytest.mark.parametrize("seed", [14])
def test_a_node_joining_at_height_200_catches_up(tmp_path: Path, seed: int) -> None:
    _join_late(tmp_path, seed, 200)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [14, 15])
def test_a_node_joining_at_height_1000_catches_up(tmp_path: Path, seed: int) -> None:
    _join_late(tmp_path, seed, 1000)


@pytest.mark.parametrize("seed", [16, 17])
def test_a_flood_of_invalid_messages_does_not_stop_the_others(tmp_path: Path, seed: int) -> None:
    sim = Simulation(tmp_path, nodes=5, validators=4, seed=seed)
    flooder = sim.nodes[4].peer_id

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(EPOCH)
        for _ in range(4):
            await sim.flood(4, 100)
            await sim.flood_blocks(4, 20)
            await sim.run_until_slot(sim.clock.now_ms() // 1000 + EPOCH)
        honest = [n for n in sim.up() if n.index < 4]
        assert all(finalized_epoch(n.node) >= 3 for n in honest if n.node)
        assert len({n.chain.head.hash for n in honest}) == 1
        assert all(flooder in n.endpoint.banned for n in honest)

    sim.run(scenario)


def test_a_peer_serving_bad_blocks_is_penalised_and_sync_goes_on(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, nodes=5, validators=4, seed=18)
    liar = sim.nodes[0]

    async def corrupt_range(peer_id: str, request: bytes) -> bytes:
        from protocols import sync

        honest = sync.handle_blocks_by_range(request, liar.chain.store.canonical_range_bytes)
        blocks = sync.decode_range_response(honest, sync.MAX_BLOCKS_PER_REQUEST)
        forged = [data[:-8] + b"\x00" * 8 for data in blocks]  # breaks a signature or the encoding
        return codec.encode(sync.BlocksByRangeResponse(blocks=tuple(forged)))

    async def scenario(sim: Simulation) -> None:
        await sim.run_until_slot(3 * EPOCH)
        protocol = topics.blocks_by_range_protocol(sim.nodes[0].node.chain_id)
        liar.endpoint.set_request_handler(protocol, corrupt_range, 64)
        # At first the newcomer reaches only the liar, then everyone.
        sim.net.partition([liar.peer_id, sim.nodes[4].peer_id], [n.peer_id for n in sim.nodes[1:4]])
        await sim.start_node(4)
        await sim.run_until_slot(3 * EPOCH + 3)
        newcomer = sim.nodes[4]
        assert newcomer.chain.head.height == 0
        sim.net.heal()
        await sim.run_until_slot(5 * EPOCH)
        assert newcomer.chain.head.hash == sim.nodes[1].chain.head.hash
        assert any(peer == liar.peer_id and amount > 0 for peer, _, amount in newcomer.endpoint.penalties)

    sim.run(scenario, start=[0, 1, 2, 3])
