"""In-process checkpoint-sync fixtures for tests and benchmarks: a chain run by the development
validators until checkpoints finalize, and a loopback transport to `StateChunkServer`s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import trio

from p2pnode.chain import consensus
from p2pnode.chain.types import Block, SignedTx, SignedVote, Transfer
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.checkpoint import StateChunkServer
from p2pnode.testing.factories import DEV_CHAIN_ID, dev_hotkey, finality_votes, signed, user_keys
from protocols import sync, topics
from protocols.network import RequestError

GENESIS_CHAIN_ID = DEV_CHAIN_ID
_USERS = user_keys(4)


class FixedClock:
    def now_ms(self) -> int:
        return 0


def build(chain: BlockTree, slot: int, txs: Sequence[SignedTx] = (), votes: Sequence[SignedVote] = ()) -> Block:
    proposer = consensus.proposer_for_slot(chain.head_state(), slot)
    assert proposer is not None
    block = chain.build_block(dev_hotkey(proposer), slot, list(txs), list(votes))
    chain.import_block(block)
    return block


def run_chain(chain: BlockTree, slots: int, txs_at: Mapping[int, Sequence[SignedTx]] | None = None) -> None:
    """`slots` blocks on a genesis of development validators (`factories.make_genesis`, epoch_slots
    8), a transfer in each (plus `txs_at[slot]`), and the finality vote of every member of the
    target epoch's validator set in the middle of each epoch: checkpoints finalize."""
    pending: list[SignedVote] = []
    nonce = chain.head_state().nonce(_USERS[0].public_key)
    for slot in range(chain.head.slot + 1, chain.head.slot + 1 + slots):
        transfer = signed(_USERS[0], nonce, Transfer(to=_USERS[slot % 3 + 1].public_key, amount=slot))
        nonce += 1
        build(chain, slot, [transfer, *(txs_at or {}).get(slot, ())], pending)
        pending = []
        if slot % 8 == 4 and slot > 8:
            pending = finality_votes(chain, slot // 8)


def status_of(chain: BlockTree) -> sync.Status:
    head, fin = chain.head, chain.finalized
    genesis = chain.store.genesis_hash
    return sync.Status(
        chain=head.chain, genesis=genesis, head_height=head.height, head_slot=head.slot, head_hash=head.hash,
        justified_epoch=0, finalized_epoch=0 if fin is None else fin.epoch,
        finalized_height=0 if fin is None else fin.height, finalized_hash=genesis if fin is None else fin.hash)


class LoopbackNetwork:
    """Status, blocks_by_range and state_chunk answered by in-process chains (the wire encodings,
    no transport); penalties are recorded."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.servers: dict[str, tuple[BlockTree, StateChunkServer]] = {}
        self.penalties: list[tuple[str, str]] = []
        self.chunk_requests: dict[str, int] = {}
        # A peer's Status as it claims it (a liar's), instead of its chain's.
        self.claimed_status: dict[str, sync.Status] = {}
        # A peer's vset_walk handler instead of its chain's (a forger's).
        self.walk_servers: dict[str, Callable[[str, bytes], Awaitable[bytes]]] = {}

    def add(self, peer_id: str, chain: BlockTree, *, corrupt: bool = False) -> StateChunkServer:
        server = StateChunkServer(chain, self, self.clock, chain.head.chain, rate_per_s=0, burst=1_000_000,
                                  total_rate_per_s=1_000_000)  # type: ignore[arg-type]
        server.corrupt = corrupt
        self.servers[peer_id] = (chain, server)
        return server

    def connected_peers(self) -> list[str]:
        return sorted(self.servers)

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        self.penalties.append((peer_id, reason))

    async def request(self, peer_id: str, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int) -> bytes:  # noqa: ASYNC109 (the NetworkAPI signature)
        await trio.lowlevel.checkpoint()
        if peer_id not in self.servers:
            raise RequestError("not connected")
        chain, server = self.servers[peer_id]
        chain_id = chain.head.chain
        if protocol == topics.status_protocol(chain_id):
            response = sync.encode_status(self.claimed_status.get(peer_id) or status_of(chain))
        elif protocol == topics.blocks_by_range_protocol(chain_id):
            response = sync.handle_blocks_by_range(data, chain.store.canonical_range_bytes)
        elif protocol == topics.state_chunk_protocol(chain_id):
            self.chunk_requests[peer_id] = self.chunk_requests.get(peer_id, 0) + 1
            response = await server.serve("joiner", data)
        elif protocol == topics.vset_walk_protocol(chain_id):
            response = await (self.walk_servers.get(peer_id) or server.serve_walk)("joiner", data)
        else:
            raise RequestError(f"unknown protocol {protocol}")
        if len(response) > max_response_bytes:
            raise RequestError("response too large")
        return response
