"""A deterministic network simulator: N full `ChainService`s in one trio run on virtual time.

`SimNetwork` implements `protocols.network.NetworkAPI` in process. Every random choice (latency,
loss) is a hash of the seed and the message, never a shared random stream, so it does not depend
on the order in which tasks happen to run; each endpoint delivers its inbox in (time, message hash)
order; and trio's own scheduler is seeded for the run. Same seed, same run.

Faults: per-message latency in [min, max] ms and loss, partitions into groups, crashes (the node's
tasks are cancelled and its store closed) and restarts from the node's own SQLite files, bans by
peer score (`penalise`), and byzantine helpers (equivocating proposer, double voter, junk flood).

Usage (sync; each call is one trio run under MockClock(autojump_threshold=0)):

    sim = Simulation(tmp_path, nodes=4, seed=7)
    async def scenario(sim):
        await sim.run_until_slot(40)
    sim.run(scenario)
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from p2pnode.chain import consensus, finality
from p2pnode.chain.encoding import sha256
from p2pnode.chain.genesis import Genesis
from p2pnode.chain.types import (
    Block,
    Checkpoint,
    FinalityVote,
    Header,
    SignedTx,
    SignedVote,
    Transfer,
    body_root,
    make_tx,
    randao_message,
)
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain.block_tree import BlockTree, sign_block
from p2pnode.services.chain.chain_service import ChainService, NodeConfig
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.services.clock import TrioClock
from p2pnode.store.slashing_protection import SlashingProtection
from p2pnode.testing.factories import make_genesis, open_chain, validator_keys
from protocols import codec
from protocols.crypto import Keypair
from protocols.network import (
    GossipHandler,
    GossipValidator,
    RequestError,
    RequestHandler,
    RequestTimeout,
    Verdict,
    run_guard,
)

if TYPE_CHECKING:
    from p2pnode.testing.netmodel import LinkModel, NetObserver

log = logging.getLogger(__name__)

BAN_SCORE = -100.0
SEEN_TTL_S = 120.0


# ---------------------------------------------------------------- the in-process network


class SimNetwork:
    """The shared medium: endpoints, reachability, and seeded latency and loss."""

    def __init__(
        self,
        seed: int,
        min_latency_ms: int = 10,
        max_latency_ms: int = 100,
        loss_permille: int = 0,
        *,
        links: LinkModel | None = None,
        topology: dict[str, frozenset[str]] | None = None,
        observer: NetObserver | None = None,
    ) -> None:
        """`links` (opt-in): per-pair latency and per-node uplink queueing replace the uniform
        latency, and a node forwards gossip to every neighbour (duplicates cost bytes, the earliest
        copy wins). `topology`: who is connected to whom (all-to-all when None). `observer`: told
        of every publication, gossip send and first delivery (for measurements)."""
        self.links = links
        self.topology = topology
        self.observer = observer
        self.seed = seed.to_bytes(8, "big")
        self.min_latency_us = min_latency_ms * 1000
        self.span_us = max(1, (max_latency_ms - min_latency_ms) * 1000)
        self.loss_permille = loss_permille
        self.endpoints: dict[str, SimEndpoint] = {}
        self.groups: dict[str, int] | None = None  # partition: peer -> group
        self.messages_delivered = 0

    def endpoint(self, peer_id: str) -> SimEndpoint:
        if peer_id not in self.endpoints:
            self.endpoints[peer_id] = SimEndpoint(self, peer_id)
        return self.endpoints[peer_id]

    def partition(self, *groups: list[str]) -> None:
        self.groups = {peer: index for index, group in enumerate(groups) for peer in group}

    def heal(self) -> None:
        self.groups = None

    def can_reach(self, src: str, dst: str) -> bool:
        a, b = self.endpoints.get(src), self.endpoints.get(dst)
        if a is None or b is None or not a.up or not b.up or src == dst:
            return False
        if self.topology is not None and dst not in self.topology.get(src, ()):
            return False
        if dst in a.banned or src in b.banned:
            return False
        if self.groups is not None and self.groups.get(src, -1) != self.groups.get(dst, -2):
            return False
        return True

    def _draw(self, kind: bytes, src: str, dst: str, key: bytes) -> int:
        digest = sha256(self.seed + kind + src.encode() + b"\x00" + dst.encode() + b"\x00" + key)
        return int.from_bytes(digest[:8], "big")

    def latency_s(self, src: str, dst: str, key: bytes) -> float:
        if self.links is not None:
            return self.links.latency_s(src, dst, key)
        return (self.min_latency_us + self._draw(b"lat", src, dst, key) % self.span_us) / 1_000_000

    def lost(self, src: str, dst: str, key: bytes) -> bool:
        return self.loss_permille > 0 and self._draw(b"loss", src, dst, key) % 1000 < self.loss_permille


@dataclass(order=True)
class _Delivery:
    at: float
    msg_id: bytes
    src: str = field(compare=False)
    topic: str = field(compare=False)
    data: bytes = field(compare=False)


class SimEndpoint:
    """One peer's `NetworkAPI` on a `SimNetwork`."""

    def __init__(self, net: SimNetwork, peer_id: str) -> None:
        self.net = net
        self._peer_id = peer_id
        self.up = True
        self.banned: set[str] = set()
        self.scores: dict[str, float] = {}
        self.penalties: list[tuple[str, str, float]] = []
        self._subs: dict[str, tuple[GossipValidator, GossipHandler]] = {}
        self.topic_limits: dict[str, int] = {}  # as set by the node (not enforced in process)
        self._handlers: dict[str, tuple[RequestHandler, int]] = {}
        self._inbox: list[_Delivery] = []
        self._known: dict[bytes, float] = {}  # message ids seen or on their way here
        self._delivered: dict[bytes, float] = {}  # with a link model: ids already handled here
        self.bytes_sent = 0
        self._wakeup = trio.Event()

    # -- NetworkAPI

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def connected_peers(self) -> list[str]:
        net = self.net
        candidates = net.endpoints if net.topology is None else net.topology.get(self._peer_id, ())
        return sorted(p for p in candidates if net.can_reach(self._peer_id, p))

    def subscribe(self, topic: str, validator: GossipValidator, handler: GossipHandler) -> None:
        self._subs[topic] = (validator, handler)

    def set_topic_max_bytes(self, topic: str, limit: int) -> None:
        self.topic_limits[topic] = limit

    async def publish(self, topic: str, data: bytes) -> None:
        msg_id = sha256(topic.encode() + b"\x00" + data)
        self._mark_known(msg_id)
        if self.net.observer is not None:
            self.net.observer.published(self._peer_id, topic, msg_id, trio.current_time(), len(data))
        if self.net.links is not None:
            self._delivered[msg_id] = trio.current_time()
        self._forward(topic, data, msg_id, exclude=None)
        await trio.lowlevel.checkpoint()

    def set_request_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        self._handlers[protocol_id] = (handler, max_request_bytes)

    async def request(
        self, peer_id: str, protocol_id: str, data: bytes, *, timeout: float, max_response_bytes: int  # noqa: ASYNC109
    ) -> bytes:
        key = sha256(protocol_id.encode() + b"\x00" + data)
        net = self.net
        if not net.can_reach(self._peer_id, peer_id) or net.lost(self._peer_id, peer_id, key):
            await trio.sleep(timeout)
            raise RequestTimeout("timeout")
        remote = net.endpoints[peer_id]
        with trio.move_on_after(timeout) as scope:
            await trio.sleep(net.latency_s(self._peer_id, peer_id, key))
            served = remote._handlers.get(protocol_id)
            if served is None or not net.can_reach(self._peer_id, peer_id):
                raise RequestError("protocol not served or peer gone")
            handler, max_request = served
            if len(data) > max_request:
                raise RequestError("request too large")
            try:
                response = await handler(self._peer_id, data)
            except Exception as exc:  # a handler that raises closes only its stream
                raise RequestError(f"remote handler failed: {type(exc).__name__}") from None
            await trio.sleep(net.latency_s(peer_id, self._peer_id, key))
        if scope.cancelled_caught:
            raise RequestTimeout("timeout")
        if len(response) > max_response_bytes:
            raise RequestError("response too large")
        if not net.can_reach(self._peer_id, peer_id):
            raise RequestError("peer gone")
        return response

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        self.penalties.append((peer_id, reason, amount))
        score = self.scores.get(peer_id, 0.0) - amount
        self.scores[peer_id] = score
        if score <= BAN_SCORE and peer_id not in self.banned:
            log.info("%s bans %s (%s)", self._peer_id, peer_id, reason)
            self.banned.add(peer_id)

    # -- delivery

    def _mark_known(self, msg_id: bytes) -> None:
        now = trio.current_time()
        self._known[msg_id] = now
        if len(self._known) > 20_000:
            self._known = {k: t for k, t in self._known.items() if now - t < SEEN_TTL_S}

    def _mark_delivered(self, msg_id: bytes, at: float) -> None:
        self._delivered[msg_id] = at
        if len(self._delivered) > 20_000:
            self._delivered = {k: t for k, t in self._delivered.items() if at - t < SEEN_TTL_S}

    def _forward(self, topic: str, data: bytes, msg_id: bytes, exclude: str | None) -> None:
        net = self.net
        now = trio.current_time()
        if net.links is not None:
            self._forward_over_links(net.links, topic, data, msg_id, exclude, now)
            return
        for dst in self.connected_peers():
            if dst == exclude:
                continue
            remote = net.endpoints[dst]
            if msg_id in remote._known or net.lost(self._peer_id, dst, msg_id):
                continue
            remote._mark_known(msg_id)
            heapq.heappush(remote._inbox, _Delivery(now + net.latency_s(self._peer_id, dst, msg_id), msg_id, self._peer_id, topic, data))
            remote._wakeup.set()

    def _forward_over_links(
        self, links: LinkModel, topic: str, data: bytes, msg_id: bytes, exclude: str | None, now: float
    ) -> None:
        """Send to every neighbour but the one it came from, each copy queued on our uplink; a
        neighbour that already handled the message drops the copy (its bytes are still spent)."""
        net = self.net
        for dst in self.connected_peers():
            if dst == exclude or net.lost(self._peer_id, dst, msg_id):
                continue
            remote = net.endpoints[dst]
            departs = links.depart(self._peer_id, len(data), now)
            self.bytes_sent += len(data)
            if net.observer is not None:
                net.observer.sent(self._peer_id, topic, len(data))
            if msg_id in remote._delivered:
                continue
            arrives = departs + links.latency_s(self._peer_id, dst, msg_id)
            scheduled = remote._known.get(msg_id)
            if scheduled is not None and scheduled <= arrives:
                continue
            remote._known[msg_id] = arrives
            heapq.heappush(remote._inbox, _Delivery(arrives, msg_id, self._peer_id, topic, data))
            remote._wakeup.set()

    def go_down(self) -> None:
        self.up = False
        self._subs.clear()
        self._handlers.clear()
        self._inbox.clear()
        self._known.clear()
        self._delivered.clear()

    def come_up(self) -> None:
        self.up = True

    async def run(self) -> None:
        """Deliver the inbox in (time, message id) order, forever."""
        while True:
            if not self._inbox:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            first = self._inbox[0]
            if first.at > trio.current_time():
                with trio.move_on_at(first.at):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            delivery = heapq.heappop(self._inbox)
            if not self.up or delivery.src in self.banned:
                continue
            if self.net.links is not None:
                if delivery.msg_id in self._delivered:
                    continue  # a later copy of a message an earlier copy already brought
                self._mark_delivered(delivery.msg_id, delivery.at)
            if self.net.observer is not None:
                self.net.observer.delivered(self._peer_id, delivery.topic, delivery.msg_id, delivery.at)
            sub = self._subs.get(delivery.topic)
            if sub is None:
                continue
            validator, handler = sub
            checked = run_guard(validator, delivery.src, delivery.data)
            self.net.messages_delivered += 1
            if checked.verdict is Verdict.REJECT:
                self.penalise(delivery.src, checked.reason or "gossip_reject", 10.0)
                continue
            if checked.verdict is Verdict.IGNORE:
                continue
            try:
                await handler(delivery.src, checked.value)
            except Exception:
                log.exception("gossip handler failed at %s", self._peer_id)
            self._forward(delivery.topic, delivery.data, delivery.msg_id, exclude=delivery.src)


# ---------------------------------------------------------------- nodes


@dataclass
class SimNode:
    index: int
    peer_id: str
    store_path: Path
    record_path: Path
    key: Keypair | None
    endpoint: SimEndpoint
    node: ChainService | None = None
    scope: trio.CancelScope | None = None
    finalized_log: list[tuple[int, bytes]] = field(default_factory=list)  # (height, hash) as seen

    @property
    def chain(self) -> BlockTree:
        assert self.node is not None, f"node {self.index} is down"
        return self.node.chain


class Simulation:
    """N nodes, validator i on node i for i < validators; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 4,
        validators: int | None = None,
        seed: int = 0,
        genesis: Genesis | None = None,
        min_latency_ms: int = 10,
        max_latency_ms: int = 100,
        loss_permille: int = 0,
        config: NodeConfig | None = None,
        genesis_params: dict[str, int] | None = None,
        passive: frozenset[int] = frozenset(),
        network: SimNetwork | None = None,
        direct_votes: bool = False,
    ) -> None:
        """`passive`: nodes whose validator key signs only what the test makes it sign (byzantine
        helpers below); their ChainService runs without a signer. `direct_votes`: the nodes know
        which peer each validator runs on and hand their votes to the coming proposers
        (`vote_delivery`), as libp2p peers do; by default votes are gossiped."""
        self.direct_votes = direct_votes
        validators = nodes if validators is None else validators
        self.passive = passive
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.genesis = genesis or make_genesis(validators, 4, params=genesis_params)
        self.config = config or NodeConfig()
        self.net = network or SimNetwork(seed, min_latency_ms, max_latency_ms, loss_permille)
        self.validator_hotkeys = [hot for _, hot in validator_keys(validators)]
        self.clock = TrioClock(self.genesis.genesis_time_ms)
        self.nodes: list[SimNode] = []
        for i in range(nodes):
            peer_id = f"node-{i:02d}"
            self.nodes.append(
                SimNode(
                    index=i,
                    peer_id=peer_id,
                    store_path=self.directory / f"{peer_id}.sqlite",
                    record_path=self.directory / f"{peer_id}.signing.sqlite",
                    key=self.validator_hotkeys[i] if i < validators else None,
                    endpoint=self.net.endpoint(peer_id),
                )
            )
        self._nursery: trio.Nursery | None = None
        self._nodes_down: set[int] = set()

    # -- running

    def run(self, scenario: Callable[[Simulation], Awaitable[Any]], *, start: list[int] | None = None) -> Any:
        """One trio run on virtual time: start nodes (all, or `start`), run `scenario`, stop."""

        async def main() -> Any:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for endpoint in list(self.net.endpoints.values()):  # nodes and any extra endpoints
                    nursery.start_soon(endpoint.run)
                for i in range(len(self.nodes)) if start is None else start:
                    await self.start_node(i)
                result = await scenario(self)
                for i in range(len(self.nodes)):
                    if self.nodes[i].node is not None:
                        self.crash(i)
                nursery.cancel_scope.cancel()
            return result

        return run_deterministic(main, self.seed)

    def validator_peer(self, hotkey: bytes) -> str | None:
        """The peer a validator's hotkey runs on (libp2p derives it from the hotkey)."""
        return next((n.peer_id for n in self.nodes if n.key is not None and n.key.public_key == hotkey), None)

    async def start_node(self, i: int) -> ChainService:
        """Start (or restart) node i from its own store and signing record."""
        assert self._nursery is not None
        sim_node = self.nodes[i]
        assert sim_node.node is None, f"node {i} is already up"
        chain = open_chain(sim_node.store_path, self.genesis)
        signer = None
        if sim_node.key is not None and i not in self.passive:
            signer = GuardedSigner(sim_node.key, SlashingProtection(sim_node.record_path, sim_node.key.public_key))
        sim_node.endpoint.come_up()
        node = ChainService(chain, sim_node.endpoint, self.clock, signer, self.config,
                            validator_peer=self.validator_peer if self.direct_votes else None)
        sim_node.node = node
        scope = trio.CancelScope()
        sim_node.scope = scope

        async def run_node(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self._nursery.start(run_node)
        self._nodes_down.discard(i)
        return node

    def crash(self, i: int) -> None:
        """Stop node i at once: its tasks are cancelled, its store and record closed, its endpoint down."""
        sim_node = self.nodes[i]
        assert sim_node.node is not None and sim_node.scope is not None
        sim_node.scope.cancel()
        sim_node.endpoint.go_down()
        sim_node.node.chain.store.close()
        if sim_node.node.signer is not None:
            sim_node.node.signer.record.close()
        sim_node.node = None
        self._nodes_down.add(i)

    async def run_until_slot(self, slot: int, *, every_slot: Callable[[int], None] | None = None) -> None:
        """Advance virtual time to the end of `slot`, recording finality after every slot."""
        genesis_ms = self.genesis.genesis_time_ms
        slot_ms = self.genesis.params.get("slot_ms", 1000)
        current = max(0, (self.clock.now_ms() - genesis_ms) // slot_ms)
        for s in range(current + 1, slot + 1):
            # Observe just before the next slot starts (after the slot's block and votes arrived).
            await self.clock.sleep_until_ms(genesis_ms + s * slot_ms + slot_ms - 1)
            self.record_finality()
            if every_slot is not None:
                every_slot(s)

    def record_finality(self) -> None:
        for sim_node in self.nodes:
            if sim_node.node is None:
                continue
            cp = sim_node.node.finalized
            if cp is not None and (not sim_node.finalized_log or sim_node.finalized_log[-1] != (cp.height, cp.hash)):
                sim_node.finalized_log.append((cp.height, cp.hash))

    # -- views

    def up(self) -> list[SimNode]:
        return [n for n in self.nodes if n.node is not None]

    def heads(self) -> list[tuple[int, bytes]]:
        return [(n.chain.head.height, n.chain.head.hash) for n in self.up()]

    def finalized(self) -> list[tuple[int, int, bytes]]:
        out = []
        for n in self.up():
            cp = n.chain.finalized
            out.append((-1, -1, b"") if cp is None else (cp.epoch, cp.height, cp.hash))
        return out

    def canonical_hash(self, i: int, height: int) -> bytes | None:
        return self.nodes[i].chain.store.canonical_hash(height)

    # -- byzantine behaviour (bypasses the signing record on purpose)

    async def equivocate_proposal(self, i: int, slot: int) -> tuple[bytes, bytes]:
        """Node i (a validator) signs two different blocks for `slot` and gossips both."""
        sim_node = self.nodes[i]
        assert sim_node.key is not None and sim_node.node is not None
        chain = sim_node.chain
        key = sim_node.key
        if consensus.proposer_for_slot(chain.head_state(), slot) != key.public_key:
            raise ValueError(f"node {i} is not the proposer of slot {slot}")
        # Timestamp and reveal are fixed by the slot: the two blocks differ in their transactions.
        state = chain.head_state()
        chain_id = state.chain_id
        fee = state.param("min_fee")
        transfer = make_tx(chain_id, key.public_key, state.nonce(key.public_key), fee, Transfer(to=key.public_key, amount=1))
        reveal = key.sign(randao_message(chain_id, slot))
        blocks = []
        for txs in ((), (SignedTx(tx=transfer, sig=key.sign(transfer.signing_bytes())),)):
            draft = chain.prepare_block(key.public_key, slot, txs, randao_reveal=reveal)
            blocks.append(sign_block(draft, key.sign(draft.header.signing_bytes())))
        for block in blocks:
            await sim_node.endpoint.publish(sim_node.node.topics["blocks"], codec.encode(block))
        return blocks[0].hash, blocks[1].hash

    async def double_vote(self, i: int) -> None:
        """Node i gossips two different votes for the current epoch's target."""
        sim_node = self.nodes[i]
        assert sim_node.key is not None and sim_node.node is not None
        node = sim_node.node
        state = node.chain.head_state()
        source = finality.justified_checkpoint(state)
        epoch = node.current_slot() // node.epoch_slots
        assert source is not None
        for fake in (b"\x01" * 32, b"\x02" * 32):
            target = Checkpoint(epoch=epoch, height=node.head.height, hash=fake)
            vote = FinalityVote(chain=node.chain_id, validator=sim_node.key.public_key, source=source, target=target)
            signed_vote = SignedVote(vote=vote, sig=sim_node.key.sign(vote.signing_bytes()))
            await sim_node.endpoint.publish(node.topics["votes"], codec.encode(signed_vote))

    async def flood_blocks(self, i: int, count: int) -> None:
        """Node i gossips `count` well-formed blocks signed by a key that is not the proposer: half
        on its head (wrong proposer), half on unknown parents (orphans)."""
        sim_node = self.nodes[i]
        assert sim_node.node is not None
        node = sim_node.node
        key = dev_keypair(f"flooder-{i}")
        head = node.head
        for n in range(count):
            parent = head.hash if n % 2 == 0 else sha256(b"nowhere" + n.to_bytes(4, "big"))
            header = Header(
                chain=node.chain_id,
                version=head.version,
                height=head.height + 1,
                slot=node.current_slot(),
                parent=parent,
                proposer=key.public_key,
                state_root=sha256(n.to_bytes(4, "big")),
                tx_root=body_root((), ()),
                timestamp_ms=self.clock.now_ms(),
                randao_reveal=key.sign(randao_message(node.chain_id, node.current_slot())),
            )
            block = Block(header=header, sig=key.sign(header.signing_bytes()), txs=(), votes=())
            await sim_node.endpoint.publish(node.topics["blocks"], codec.encode(block))

    async def flood(self, i: int, count: int) -> None:
        """Node i gossips `count` junk messages on every topic (undecodable and badly signed)."""
        sim_node = self.nodes[i]
        assert sim_node.node is not None
        topics_by_kind = sim_node.node.topics
        for n in range(count):
            junk = sha256(b"junk" + n.to_bytes(4, "big")) * (1 + n % 4)
            for topic in topics_by_kind.values():
                await sim_node.endpoint.publish(topic, junk)


def run_deterministic(main: Callable[[], Awaitable[Any]], seed: int) -> Any:
    """`trio.run(main)` on MockClock(autojump_threshold=0) with trio's scheduler seeded.

    trio shuffles each batch of runnable tasks with a module-level random.Random; seeding it (the
    technique trio's own determinism test uses) makes task interleaving repeatable. The simulator is
    built to need little of it (hash-derived latencies, ordered inboxes), but ties at one virtual
    instant would otherwise still vary between runs.
    """
    import trio._core._run as trio_run  # noqa: PLC0415 (private: the one place that needs it)

    rng = getattr(trio_run, "_r", None)
    saved = rng.getstate() if rng is not None else None
    if rng is not None:
        rng.seed(seed)
    try:
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        if rng is not None and saved is not None:
            rng.setstate(saved)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
