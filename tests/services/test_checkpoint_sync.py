"""Checkpoint sync in one process: chunked serving of the finalized state, a join that checks the
finality votes and the state root, a corrupt server penalised while the join succeeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.chain import consensus, finality
from p2pnode.chain.types import Block, FinalityVote, SignedVote, Transfer
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.checkpoint import (
    CheckpointConfig,
    CheckpointSync,
    CheckpointSyncError,
    StateChunkServer,
)
from p2pnode.testing.factories import (
    DEV_CHAIN_ID,
    make_genesis,
    open_chain,
    recompute_root,
    signed,
    user_keys,
    validator_keys,
)
from protocols import sync, topics
from protocols.network import RequestError

VALS = validator_keys(4)
HOTS = {hot.public_key: hot for _, hot in VALS}
USERS = user_keys(4)
GENESIS = make_genesis(4, 4)
GENESIS_STAKE = {v.hotkey: v.stake for v in GENESIS.validators}


class FakeClock:
    def now_ms(self) -> int:
        return 0


def build(chain: BlockTree, slot: int, txs: list[Any] = (), votes: list[SignedVote] = ()) -> Block:  # type: ignore[assignment]
    proposer = consensus.proposer_for_slot(chain.head_state(), slot)
    block = chain.build_block(HOTS[proposer], slot, list(txs), list(votes))
    chain.import_block(block)
    return block


def run_chain(chain: BlockTree, slots: int, *, every_validator_votes: bool = True) -> None:
    """Blocks with a transfer each, and every validator's finality vote in the middle of each epoch."""
    pending: list[SignedVote] = []
    nonce = chain.head_state().nonce(USERS[0].public_key)
    for slot in range(chain.head.slot + 1, chain.head.slot + 1 + slots):
        transfer = signed(USERS[0], nonce, Transfer(to=USERS[slot % 3 + 1].public_key, amount=slot))
        nonce += 1
        build(chain, slot, [transfer], pending)
        pending = []
        if slot % 8 == 4 and slot > 8 and every_validator_votes:
            state, head = chain.head_state(), chain.head
            target = finality.vote_target(state, head.hash, head.height, head.slot, slot // 8)
            source = finality.justified_checkpoint(state)
            for _, hot in VALS:
                vote = FinalityVote(chain=DEV_CHAIN_ID, validator=hot.public_key, source=source, target=target)
                pending.append(SignedVote(vote=vote, sig=hot.sign(vote.signing_bytes())))


def status_of(chain: BlockTree) -> sync.Status:
    head, fin = chain.head, chain.finalized
    genesis = chain.store.genesis_hash
    return sync.Status(
        chain=DEV_CHAIN_ID, genesis=genesis, head_height=head.height, head_slot=head.slot, head_hash=head.hash,
        justified_epoch=0, finalized_epoch=0 if fin is None else fin.epoch,
        finalized_height=0 if fin is None else fin.height, finalized_hash=genesis if fin is None else fin.hash)


class FakeNetwork:
    """Request/response between in-process servers, each a chain with its state-chunk server."""

    def __init__(self) -> None:
        self.servers: dict[str, tuple[BlockTree, StateChunkServer]] = {}
        self.penalties: list[tuple[str, str]] = []
        self.chunk_requests: dict[str, int] = {}

    def add(self, peer_id: str, chain: BlockTree, *, corrupt: bool = False) -> StateChunkServer:
        server = StateChunkServer(chain, self, FakeClock(), DEV_CHAIN_ID, rate_per_s=0, burst=10_000)  # type: ignore[arg-type]
        server.corrupt = corrupt
        self.servers[peer_id] = (chain, server)
        return server

    def connected_peers(self) -> list[str]:
        return sorted(self.servers)

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        self.penalties.append((peer_id, reason))

    async def request(self, peer_id: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:  # noqa: ASYNC109
        await trio.lowlevel.checkpoint()
        if peer_id not in self.servers:
            raise RequestError("not connected")
        chain, server = self.servers[peer_id]
        if protocol == topics.status_protocol(DEV_CHAIN_ID):
            return sync.encode_status(status_of(chain))
        if protocol == topics.blocks_by_range_protocol(DEV_CHAIN_ID):
            return sync.handle_blocks_by_range(data, chain.store.canonical_range_bytes)
        if protocol == topics.state_chunk_protocol(DEV_CHAIN_ID):
            self.chunk_requests[peer_id] = self.chunk_requests.get(peer_id, 0) + 1
            response = await server.serve("joiner", data)
            assert len(response) <= max_response_bytes
            return response
        raise RequestError(f"unknown protocol {protocol}")


def joiner(tmp_path: Path, network: FakeNetwork, **kwargs: Any) -> CheckpointSync:
    chain = open_chain(tmp_path / "joiner.sqlite", GENESIS)
    config = CheckpointConfig(chunk_items=kwargs.pop("chunk_items", 7), peer_wait_s=1, settle_s=0)
    return CheckpointSync(store=chain.store, network=network, clock=FakeClock(), chain_id=DEV_CHAIN_ID,  # type: ignore[arg-type]
                          genesis_hash=chain.store.genesis_hash, local_status=status_of(chain),
                          trusted_stake=GENESIS_STAKE, config=config, **kwargs)


@pytest.fixture(scope="module")
def finalized_chain(tmp_path_factory: pytest.TempPathFactory) -> BlockTree:
    chain = open_chain(tmp_path_factory.mktemp("served") / "served.sqlite", GENESIS)
    run_chain(chain, 40)
    assert chain.finalized is not None and chain.finalized.height >= 16
    assert chain.head.height > chain.finalized.height + 2, "the head is ahead of the checkpoint"
    return chain


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


def test_requests_are_rate_limited_per_peer(finalized_chain: BlockTree) -> None:
    fin = finalized_chain.finalized
    assert fin is not None
    server = StateChunkServer(finalized_chain, FakeNetwork(), FakeClock(), DEV_CHAIN_ID, rate_per_s=0, burst=3)  # type: ignore[arg-type]
    req = sync.StateChunkRequest(block=fin.hash, after=b"", max_items=2)
    errors = [sync.decode_state_chunk(server.answer("greedy", req), b"", 2).error for _ in range(5)]
    assert errors == ["", "", "", "rate_limited", "rate_limited"]
    assert sync.decode_state_chunk(server.answer("other", req), b"", 2).error == ""


def test_out_of_order_keys_are_malformed() -> None:
    data = sync.encode_state_chunk([(b"b", b"1"), (b"a", b"2")], done=True)
    with pytest.raises(sync.codec.MalformedMessage):
        sync.decode_state_chunk(data, b"", 10)
    with pytest.raises(sync.codec.MalformedMessage):
        sync.decode_state_chunk(sync.encode_state_chunk([(b"a", b"1")], done=True), b"a", 10)


def test_a_fresh_store_joins_at_the_checkpoint_and_follows_the_head(finalized_chain: BlockTree, tmp_path: Path) -> None:
    network = FakeNetwork()
    network.add("honest", finalized_chain)
    join = joiner(tmp_path, network)
    report = trio.run(join.join)
    fin = finalized_chain.finalized
    assert fin is not None and report.checkpoint == fin
    assert report.penalised == [] and network.penalties == []
    chain = BlockTree(join.store)
    assert chain.head.hash == fin.hash and chain.finalized == fin
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


def test_a_corrupt_server_is_penalised_and_the_join_still_succeeds(finalized_chain: BlockTree, tmp_path: Path) -> None:
    network = FakeNetwork()
    # Sorted first, so the round-robin download takes chunks from both.
    network.add("a-corrupt", finalized_chain, corrupt=True)
    network.add("b-honest", finalized_chain)
    join = joiner(tmp_path, network)
    report = trio.run(join.join)
    assert network.chunk_requests["a-corrupt"] >= 1
    assert "a-corrupt" in report.penalised and "b-honest" not in report.penalised
    assert ("a-corrupt", "bad_state_snapshot") in network.penalties
    fin = finalized_chain.finalized
    assert fin is not None
    assert recompute_root(join.store.state_items()) == finalized_chain.store.header(fin.hash).state_root


def test_without_votes_of_two_thirds_of_the_trusted_stake_the_join_fails(finalized_chain: BlockTree, tmp_path: Path) -> None:
    network = FakeNetwork()
    network.add("honest", finalized_chain)
    # A validator set the node trusts in which the chain's voters hold under 2/3 of the stake.
    stranger = bytes(range(32))
    trusted = dict(GENESIS_STAKE)
    trusted[stranger] = 3 * sum(GENESIS_STAKE.values())
    join = joiner(tmp_path, network)
    join.trusted_stake = trusted
    with pytest.raises(CheckpointSyncError, match="no_finality_evidence"):
        trio.run(join.join)
    assert join.store.head_height == 0, "nothing installed"


def test_a_trusted_checkpoint_hash_skips_the_votes_and_other_checkpoints_are_ignored(
    finalized_chain: BlockTree, tmp_path: Path
) -> None:
    fin = finalized_chain.finalized
    assert fin is not None
    network = FakeNetwork()
    network.add("honest", finalized_chain)
    join = joiner(tmp_path, network, trusted_checkpoint=fin.hash)
    join.trusted_stake = {}
    assert trio.run(join.join).checkpoint == fin
    other = joiner(tmp_path / "other", network, trusted_checkpoint=bytes(32)) if (tmp_path / "other").mkdir() is None else None
    assert other is not None
    with pytest.raises(CheckpointSyncError, match="no_checkpoint_peers"):
        trio.run(other.join)
