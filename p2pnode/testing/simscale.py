"""Large simulated networks: block validators (full `ChainService` nodes) plus relay followers.

A full node costs a SQLite store, a block import per block (about 8 ms of CPU) and status polling
of its peers; a thousand of them do not fit in one process on a small machine. Virtual time does
not charge CPU, so what followers add to the measured network is their place in the gossip mesh:
a `RelayFollower` subscribes to the chain's topics, checks what it relays the way a node's guard
would on an honest network (a block must decode, come from a genesis validator and carry a good
header signature; a vote must decode and be signed by a genesis validator) and forwards it. It
does not execute blocks, serve sync requests or vote. Nodes [0, validators) are the validators;
`full_followers` more nodes run a full non-validating `ChainService`; the rest are relay followers.

`run_scale` runs one configuration on the link model and returns the measurements.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pnode.chain.genesis import Genesis
from p2pnode.chain.params import GLOBAL_PARAMS
from p2pnode.chain.types import Block, SignedVote
from p2pnode.testing.netmodel import GossipRecorder, LinkModel, mesh_topology
from p2pnode.testing.sim import SimEndpoint, SimNetwork, Simulation, run_deterministic
from protocols import topics
from protocols.network import Checked, Verdict
from protocols.validation import (
    block_chain,
    decode_on_chain,
    header_signature_ok,
    vote_chain,
    vote_signature_ok,
)


class RelayFollower:
    """A non-validating node that checks and relays gossip and keeps no chain (see the module docstring)."""

    def __init__(self, endpoint: SimEndpoint, genesis: Genesis) -> None:
        self.endpoint = endpoint
        self.chain_id = genesis.chain_id
        self.validators = frozenset(v.hotkey for v in genesis.validators)
        self.blocks_relayed = 0
        self.votes_relayed = 0
        endpoint.subscribe(topics.topic(self.chain_id, "blocks"), self._guard_block, self._on_block)
        endpoint.subscribe(topics.topic(self.chain_id, "votes"), self._guard_vote, self._on_vote)

    def _guard_block(self, peer_id: str, data: bytes) -> Checked:
        block = decode_on_chain(Block, data, self.chain_id, block_chain)
        if isinstance(block, Checked):
            return block
        header = block.header
        if header.proposer not in self.validators:
            return Checked(Verdict.REJECT, reason="not_a_validator_block")
        if not header_signature_ok(block.signed_header):
            return Checked(Verdict.REJECT, reason="bad_signature")
        return Checked(Verdict.ACCEPT, value=block)

    def _guard_vote(self, peer_id: str, data: bytes) -> Checked:
        signed = decode_on_chain(SignedVote, data, self.chain_id, vote_chain)
        if isinstance(signed, Checked):
            return signed
        if signed.vote.validator not in self.validators:
            return Checked(Verdict.REJECT, reason="not_a_validator_vote")
        if not vote_signature_ok(signed):
            return Checked(Verdict.REJECT, reason="bad_signature")
        return Checked(Verdict.ACCEPT, value=signed)

    async def _on_block(self, peer_id: str, block: object) -> None:
        self.blocks_relayed += 1

    async def _on_vote(self, peer_id: str, vote: object) -> None:
        self.votes_relayed += 1


@dataclass
class ScaleResult:
    nodes: int
    validators: int  # genesis validators, each a full node with its key
    active_validators: int  # those in the block-validator set (propose and vote)
    full_followers: int
    slots: int  # slots run (fewer than asked when the wall-clock budget ran out)
    wall_s: float
    cpu_s: float  # this process's CPU time for the run (the machine may be shared)
    blocks: int  # canonical blocks at node 0 at the end
    finalized_height: int  # node 0's finalized height at the end
    finality_delay_slots: float  # median over finalized blocks: first slot observed finalized - block slot
    block_p50_ms: float  # publication → first delivery, over every (block, node)
    block_p95_ms: float
    block_max_ms: float
    reached_all: bool  # every published block reached every node
    bytes_per_node_per_block: float  # all gossip (blocks, votes) sent, per node, per block
    block_bytes_per_node_per_block: float
    mean_degree: float
    agree: bool  # every full node has node 0's finalized checkpoint

    def row(self) -> dict[str, object]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_scale(
    directory: Path,
    *,
    nodes: int,
    validators: int,
    slots: int,
    seed: int = 1,
    degree: int = 8,
    full_followers: int = 0,
    links: LinkModel | None = None,
    wall_budget_s: float | None = None,
    genesis_params: dict[str, int] | None = None,
) -> ScaleResult:
    """Run `nodes` nodes on the link model for `slots` slots, or until `wall_budget_s` of real
    time has passed (checked after every slot), and measure (see `ScaleResult`). Only the top
    `max_block_validators` (genesis parameter, 16 by default) of the validators propose and vote;
    the others run as full nodes with keys."""
    if not 1 <= validators <= nodes or not 0 <= full_followers <= nodes - validators:
        raise ValueError("need 1 <= validators <= nodes and 0 <= full_followers <= nodes - validators")
    full = validators + full_followers
    peer_ids = [f"node-{i:02d}" for i in range(nodes)]
    recorder = GossipRecorder()
    net = SimNetwork(
        seed,
        links=links or LinkModel(seed),
        topology=mesh_topology(peer_ids, degree, seed),
        observer=recorder,
    )
    sim = Simulation(
        directory, nodes=full, validators=validators, seed=seed, network=net, genesis_params=genesis_params
    )
    followers = [RelayFollower(net.endpoint(p), sim.genesis) for p in peer_ids[full:]]
    finalized_at_slot: list[int] = []  # node 0's finalized height after each slot

    def observe(slot: int) -> None:
        cp = sim.nodes[0].chain.finalized
        finalized_at_slot.append(-1 if cp is None else cp.height)

    async def scenario(sim: Simulation) -> tuple[list[tuple[int, int]], int, bool]:
        for slot in range(1, slots + 1):
            await sim.run_until_slot(slot, every_slot=observe)
            if wall_budget_s is not None and time.perf_counter() - started > wall_budget_s:
                break
        chain = sim.nodes[0].chain
        canonical = []
        for height in range(1, chain.head.height + 1):
            block = chain.store.canonical_block(height)
            if block is not None:
                canonical.append((height, block.header.slot))
        cp = chain.finalized
        agree = all(n.chain.finalized == cp for n in sim.up())
        return canonical, (-1 if cp is None else cp.height), agree

    started = time.perf_counter()
    cpu_started = time.process_time()
    canonical, finalized_height, agree = sim.run(scenario)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    delays = []
    for height, block_slot in canonical:
        for slot_index, fin in enumerate(finalized_at_slot):
            if fin >= height:
                delays.append(slot_index + 1 - block_slot)
                break
    block_delays = recorder.delays_s("/blocks/1")
    block_ids = [m for m, t in recorder.published_topic.items() if t.endswith("/blocks/1")]
    reached_all = all(len(recorder.first_delivery.get(m, {})) == nodes - 1 for m in block_ids)
    published_blocks = max(1, len(block_ids))
    total_bytes = sum(recorder.bytes_by_topic.values())
    block_bytes = sum(b for t, b in recorder.bytes_by_topic.items() if t.endswith("/blocks/1"))
    topology = net.topology or {}
    assert all(f.endpoint.peer_id in topology for f in followers)
    return ScaleResult(
        nodes=nodes,
        validators=validators,
        active_validators=min(
            validators,
            (genesis_params or {}).get("max_block_validators", GLOBAL_PARAMS["max_block_validators"].default),
        ),
        full_followers=full_followers,
        slots=len(finalized_at_slot),
        wall_s=wall,
        cpu_s=cpu,
        blocks=len(canonical),
        finalized_height=finalized_height,
        finality_delay_slots=float(percentile([float(d) for d in delays], 0.5)),
        block_p50_ms=percentile(block_delays, 0.5) * 1000,
        block_p95_ms=percentile(block_delays, 0.95) * 1000,
        block_max_ms=max(block_delays, default=math.nan) * 1000,
        reached_all=reached_all,
        bytes_per_node_per_block=total_bytes / nodes / published_blocks,
        block_bytes_per_node_per_block=block_bytes / nodes / published_blocks,
        mean_degree=sum(len(v) for v in topology.values()) / max(1, len(topology)),
        agree=agree,
    )


@dataclass
class GossipOnlyResult:
    nodes: int
    payload_bytes: int
    p50_ms: float  # publication → first delivery, over every receiving node
    p95_ms: float
    max_ms: float
    reached: int  # nodes that received it (of nodes - 1)
    bytes_per_node: float  # sent, duplicates included


def run_gossip_only(nodes: int, payload_bytes: int, *, seed: int = 1, degree: int = 8) -> GossipOnlyResult:
    """One message of `payload_bytes` gossiped from node 0 over the mesh and link model, with no
    chain at all: how long a block of that size takes to reach everyone when uplinks are the limit."""
    peer_ids = [f"node-{i:02d}" for i in range(nodes)]
    recorder = GossipRecorder()
    net = SimNetwork(
        seed, links=LinkModel(seed), topology=mesh_topology(peer_ids, degree, seed), observer=recorder
    )
    endpoints = [net.endpoint(p) for p in peer_ids]
    topic = "/sim/payload/1"

    everyone_has_it = trio.Event()
    received = 0

    async def count(peer_id: str, value: object) -> None:
        nonlocal received
        received += 1
        if received == nodes - 1:
            everyone_has_it.set()  # its endpoint forwards (and pays the bytes) before yielding

    for endpoint in endpoints:
        endpoint.subscribe(topic, lambda peer_id, data: Checked(Verdict.ACCEPT, value=data), count)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for endpoint in endpoints:
                nursery.start_soon(endpoint.run)
            await endpoints[0].publish(topic, bytes(payload_bytes))
            with trio.move_on_after(600):  # virtual seconds
                await everyone_has_it.wait()
            nursery.cancel_scope.cancel()

    run_deterministic(main, seed)
    delays = recorder.delays_s("/payload/1")
    return GossipOnlyResult(
        nodes=nodes,
        payload_bytes=payload_bytes,
        p50_ms=percentile(delays, 0.5) * 1000,
        p95_ms=percentile(delays, 0.95) * 1000,
        max_ms=max(delays, default=math.nan) * 1000,
        reached=len(delays),
        bytes_per_node=sum(recorder.bytes_by_topic.values()) / nodes,
    )
