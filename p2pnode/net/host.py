"""`LibP2PNetwork`: the node's `NetworkAPI` over a py-libp2p 0.8.1 host on trio.

One host per node: TCP + Noise (nothing else) + Yamux (never mplex), GossipSub for topics,
Kademlia (server mode) for discovery and PeerID -> address lookups, and our own request/response
framing. The identity is the node's ed25519 hotkey seed, so the PeerID is derived from the hotkey.

Lifecycle (trio structured concurrency)::

    network = LibP2PNetwork(seed, bootstrap=[...])
    network.subscribe(topic, validator, handler)      # before or after start
    async with network:                               # or: await nursery.start(network.run)
        await network.publish(topic, b"...")

`run()` signals readiness with `task_status.started()` once the host listens, pubsub and the DHT
run, bootstrap peers were dialled, and topics registered before start are subscribed. It runs
until cancelled. A `LibP2PNetwork` runs once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.host.exceptions import StreamFailure
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol

from p2pnode.net import libp2p_workarounds as workarounds
from p2pnode.net.addresses import (
    AddressBook,
    Reachability,
    install_address_book,
    parse_announce_addrs,
    parse_multiaddr,
    parse_peer_addr,
    strip_peer_id,
)
from p2pnode.net.dcutr_relay_only_addrs import HolePunching
from p2pnode.net.gossip import GossipConfig, GossipTopics, max_rpc_bytes, message_id
from p2pnode.net.identity import key_pair_from_seed, parse_peer_id, peer_id_from_pubkey, peer_id_from_seed
from p2pnode.net.kad_client_mode_peers import ServerModeKadDHT
from p2pnode.net.libp2p_workarounds import supervised_trio_service as supervised
from p2pnode.net.loop_lag import LoopLagConfig, LoopLagMonitor
from p2pnode.net.peer_finding import PeerFinding
from p2pnode.net.reachability import (
    DialBackService,
    ReachabilityConfig,
    ReachabilityMonitor,
    RelayDialer,
    RelayedConnectionUpgrader,
    RelayReservations,
    UpnpPortMapping,
    relayed_only,
)
from p2pnode.net.relay_reservation_spoofing import LimitedRelay, RelayServiceLimits
from p2pnode.net.reqresp import ReqRespLimits, RequestResponseServer, send_request
from p2pnode.net.scoring import PeerScorer, PeerScoreView, ScoringConfig
from protocols.network import GossipHandler, GossipValidator, RequestError, RequestHandler

logger = logging.getLogger(__name__)

DEFAULT_LISTEN_ADDRS = ("/ip4/127.0.0.1/tcp/0",)

__all__ = ["LibP2PNetwork", "NetConfig", "peer_id_from_pubkey", "peer_id_from_seed"]


@dataclass(frozen=True, slots=True)
class NetConfig:
    gossip: GossipConfig = field(default_factory=GossipConfig)
    reqresp: ReqRespLimits = field(default_factory=ReqRespLimits)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    # Our own event loop's lateness: a request timeout is forgiven in proportion (loop_lag.py).
    loop_lag: LoopLagConfig = field(default_factory=LoopLagConfig)
    reachability: ReachabilityConfig = field(default_factory=ReachabilityConfig)
    # The DHT speaks /p2pnode/<network_id>/kad/1.0.0 (the chain id for a peer), so networks
    # never mix their routing tables (nor join the IPFS DHT).
    network_id: str = "p2pnode"
    # Offer Circuit Relay v2 (hop) to peers that cannot be dialled, within `relay_limits`.
    relay_service: bool = False
    relay_limits: RelayServiceLimits = field(default_factory=RelayServiceLimits)
    # Ask peers to dial us back (AutoNAT) and, when they cannot, reserve relay slots.
    autonat: bool = True
    # Ask a UPnP router (if the LAN has one) to forward our TCP port; the mapped address is then
    # announced, and AutoNAT tells whether it works.
    upnp: bool = False
    # DCUtR hole punching: a relayed connection between two peers is upgraded to a direct one
    # where their NATs allow it (see dcutr_relay_only_addrs.py). `p2pnode join` turns it on;
    # off here, so in-process tests and benchmarks keep their timing (see decisions.md).
    hole_punching: bool = False
    # Discovery keeps dialling peers found in the DHT until this many are connected.
    target_peer_count: int = 16
    dial_timeout_s: float = 10.0
    # Upstream refreshes the routing table only every 600 s (py-libp2p problem 12): look ourselves up early
    # (to meet peers that start after us) and then periodically.
    dht_refresh_after_start_s: tuple[float, ...] = (2.0, 6.0, 15.0)
    dht_refresh_interval_s: float = 60.0
    # Score upkeep (ban expiry, pruning) runs this often; with no connection left, bootstrap
    # peers are dialled again at most every `bootstrap_redial_interval_s`.
    maintenance_interval_s: float = 1.0
    bootstrap_redial_interval_s: float = 10.0


class _BanGate(INotifee):
    """Disconnects a banned peer as soon as it connects again (bans are by PeerID: on a shared
    address the connection gate, which filters by IP, cannot express them)."""

    def __init__(self, network: LibP2PNetwork) -> None:
        self._network = network

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self._network.scorer.is_banned(peer.to_base58()):
            self._network._schedule_disconnect(peer)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


class LibP2PNetwork(PeerFinding):
    """`protocols.network.NetworkAPI` over py-libp2p; see the module docstring."""

    def __init__(
        self,
        seed: bytes,
        *,
        listen_addrs: Sequence[str] = DEFAULT_LISTEN_ADDRS,
        bootstrap: Sequence[str] = (),
        announce: Sequence[str] = (),
        config: NetConfig | None = None,
    ) -> None:
        workarounds.configure_libp2p_logging()
        workarounds.install_cpu_fixes()
        workarounds.install_yamux_window_limits()
        self.config = config or NetConfig()
        self._listen_multiaddrs = [parse_multiaddr(a, "listen address") for a in listen_addrs]
        self._bootstrap = [parse_peer_addr(a, "bootstrap address") for a in bootstrap]
        key_pair = key_pair_from_seed(seed)
        # What identify, the DHT and relay vouchers give out: never a wildcard (see addresses.py).
        self.addresses = AddressBook(self._transport_addrs, parse_announce_addrs(announce))
        self.host: IHost = new_host(
            key_pair=key_pair,
            sec_opt=workarounds.noise_only_security(key_pair),
            muxer_opt=workarounds.yamux_only_muxer(),
            listen_addrs=self._listen_multiaddrs,
            enable_mDNS=False,
            addrs_factory=self.addresses.advertised,
        )
        install_address_book(self.host, self.addresses)
        self._local_id = self.host.get_id()
        self._peer_id = self._local_id.to_base58()
        self.scorer = PeerScorer(self.config.scoring)
        self.loop_lag = LoopLagMonitor(self.config.loop_lag)
        # Timeout points not charged because our own loop was late (statistics).
        self.timeout_points_forgiven = 0.0
        self.gossipsub = workarounds.HardenedGossipSub(
            degree=self.config.gossip.degree,
            degree_low=self.config.gossip.degree_low,
            degree_high=self.config.gossip.degree_high,
            heartbeat_interval=self.config.gossip.heartbeat_interval_s,
            prune_back_off=self.config.gossip.prune_back_off_s,
        )
        # Pubsub and the DHT register their stream handlers and notifees in __init__, so both
        # exist before any connection (py-libp2p problem 13).
        self.pubsub = Pubsub(
            self.host,
            self.gossipsub,
            msg_id_constructor=message_id,
            seen_ttl=self.config.gossip.seen_ttl_s,
            strict_signing=True,
        )
        self.pubsub.validation_cache = workarounds.SuccessOnlyValidationCache()
        workarounds.fix_pubsub_teardown_race(self.pubsub)
        workarounds.fix_pubsub_subscription_race(self.pubsub)
        workarounds.make_pubsub_restartable(self.pubsub)
        workarounds.enlarge_outbound_queues(self.pubsub, self.config.gossip.outbound_queue_size)
        workarounds.drop_seen_copies_early(self.pubsub)
        self.dht = ServerModeKadDHT(self.host, self.config.network_id, enable_random_walk=False,
                                    advertised_addrs=self._advertised_without_peer_id)
        self.topics = GossipTopics(self._local_id, self.config.gossip, self._penalise_quietly)
        workarounds.set_pubsub_rpc_limit(self.pubsub, max_rpc_bytes(self.topics.largest_limit()))
        self.reqresp = RequestResponseServer(self.config.reqresp, self._penalise_quietly, self.scorer.is_banned)
        # Outbound requests by (protocol, outcome); an observer (metrics) also gets each duration.
        self.request_outcomes: Counter[tuple[str, str]] = Counter()
        self.request_observer: Callable[[str, str, float], None] | None = None
        self.reqresp.attach(self.host)
        # Every peer accepts relayed connections (stop); relays also serve hop, within limits.
        self.relay: CircuitV2Protocol = (
            LimitedRelay(self.host, self.config.relay_limits) if self.config.relay_service
            else CircuitV2Protocol(self.host, allow_hop=False)
        )
        reach = self.config.reachability
        self.dialback = DialBackService(self.host, reach)
        self.reachability = ReachabilityMonitor(self.host, self.addresses, reach, self._on_reachability_change)
        self.relay_reservations = RelayReservations(self.host, self.addresses, reach, self._push_identify)
        self.relay_dialer = RelayDialer(self.host, self.relay, reach)
        self.relayed_upgrader = RelayedConnectionUpgrader(self.host, reach)
        self.port_mapping = UpnpPortMapping(self.host, self.addresses)
        # DCUtR (py-libp2p's, given our listen sockets), when `hole_punching`: the peer that
        # accepted a relayed connection asks the other to punch a direct one through their NATs.
        self.hole_punching = HolePunching(self.host, self.addresses)
        self.guard_stats = workarounds.install_stream_handler_guard(self.host)
        self.host.get_network().register_notifee(_BanGate(self))
        # Set while run() serves; None before start and after shutdown.
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._subscribed: dict[str, trio.Event] = {}
        self._lifecycle: AbstractAsyncContextManager[None] | None = None

    # -- identity and addresses ------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def listen_addrs(self) -> list[str]:
        """The multiaddrs we announce, each ending in `/p2p/<PeerID>` (usable as bootstrap
        strings): direct ones (wildcards expanded, or --announce), relay ones when private."""
        return [str(a) for a in self.host.get_addrs()]

    def is_relayed(self, peer_id: str) -> bool:
        """True when we are connected to `peer_id` only through relays."""
        try:
            peer = parse_peer_id(peer_id)
        except ValueError:
            return False
        return relayed_only(self.host, peer)

    def connection_addrs(self, peer_id: str) -> list[str]:
        """The remote address of each connection to `peer_id` (`.../p2p-circuit/...` when it runs
        through a relay); [] when not connected."""
        try:
            peer = parse_peer_id(peer_id)
        except ValueError:
            return []
        addrs: list[str] = []
        for conn in self.host.get_network().connections.get(peer, []) or []:
            try:
                addrs.extend(str(a) for a in conn.get_transport_addresses())
            except Exception:
                continue
        return addrs

    def _transport_addrs(self) -> list[multiaddr.Multiaddr]:
        # new_host asks for our addresses while it is being built, before self.host exists.
        host = getattr(self, "host", None)
        return [] if host is None else list(host.get_transport_addrs())

    def _advertised_without_peer_id(self) -> list[multiaddr.Multiaddr]:
        return [strip_peer_id(a) for a in self.addresses.advertised()]

    def reachability_view(self) -> dict[str, Any]:
        """For status displays: AutoNAT's verdict, what we announce, and relay state."""
        return {
            "reachability": self.addresses.reachability.value,
            "announced_addrs": self.listen_addrs(),
            "autonat_verdicts": dict(self.reachability.verdicts),
            "relay_reservations": self.relay_reservations.relays(),
            "relay_service": self.config.relay_service,
            "relayed_circuits": self.relay.open_circuits() if isinstance(self.relay, LimitedRelay) else 0,
            "dht_mode": "server" if self.dht.mode == DHTMode.SERVER else "client",
            "relayed_connections_made_direct": self.relayed_upgrader.upgraded,
            "hole_punches": {"succeeded": self.hole_punching.succeeded, "failed": self.hole_punching.failed}
            if self.config.hole_punching else None,
        }

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]

    def topic_peers(self, topic: str) -> list[str]:
        """Connected peers that told us they subscribe to `topic`."""
        return [p.to_base58() for p in self.pubsub.peer_topics.get(topic, ())]

    def mesh_peers(self, topic: str) -> list[str]:
        return [p.to_base58() for p in self.gossipsub.mesh.get(topic, ())]

    async def find_peer_addrs(self, peer_id: str) -> list[str]:
        """PeerID -> multiaddrs (with `/p2p/<PeerID>`), from the peerstore or a DHT lookup.

        Returns [] when the peer is not found; raises ValueError for a malformed PeerID.
        """
        target = parse_peer_id(peer_id)
        try:
            info = await self.dht.find_peer(target)
        except Exception as exc:  # a failed lookup is "not found", not a crash of the caller
            logger.debug("DHT lookup of %s failed: %r", peer_id, exc)
            return []
        if info is None:
            return []
        suffix = f"/p2p/{peer_id}"
        return [a if a.endswith(suffix) else a + suffix for a in (str(m) for m in info.addrs)]

    async def connect(self, addr: str) -> str:
        """Dial a `/.../p2p/<PeerID>` multiaddr; returns the PeerID. Raises on failure."""
        info = parse_peer_addr(addr, "peer address")
        with trio.fail_after(self.config.dial_timeout_s):
            await self.host.connect(info)
        return info.peer_id.to_base58()

    # -- NetworkAPI: gossip ----------------------------------------------------------------

    def subscribe(
        self,
        topic: str,
        validator: GossipValidator,
        handler: GossipHandler,
        *,
        max_message_bytes: int | None = None,
    ) -> None:
        """Receive `topic`; `max_message_bytes` overrides the default 512 KiB limit for it."""
        self.topics.add(topic, validator, handler, max_message_bytes)
        workarounds.set_pubsub_rpc_limit(self.pubsub, max_rpc_bytes(self.topics.largest_limit()))
        # The validator is in place before the subscription exists: nothing slips past it.
        self.pubsub.set_topic_validator(topic, self.topics.libp2p_validator(topic), False)
        self._subscribed[topic] = trio.Event()
        if self._nursery is not None:
            self._nursery.start_soon(self._join_topic, topic)

    async def wait_subscribed(self, topic: str) -> None:
        """Wait until a topic passed to `subscribe` is announced to peers and delivering."""
        await self._subscribed[topic].wait()

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` (best effort). Raises ValueError over the topic's size limit, which
        py-libp2p would otherwise drop silently."""
        self.topics.check_publish(topic, data)
        if self._nursery is None:
            raise RuntimeError("publish needs a running network (run() or `async with`)")
        await self._wait_for_outbound_room()
        await self.pubsub.publish(topic, data)

    def set_topic_max_bytes(self, topic: str, limit: int) -> None:
        """Change `topic`'s size limit (1 B .. 4 MiB), e.g. the blocks topic to `max_block_bytes`;
        py-libp2p's RPC caps follow the largest topic limit."""
        self.topics.set_max_message_bytes(topic, limit)
        workarounds.set_pubsub_rpc_limit(self.pubsub, max_rpc_bytes(self.topics.largest_limit()))

    async def _wait_for_outbound_room(self) -> None:
        # Back-pressure for bursts: let the per-peer send loops drain before queueing more, so
        # a tight publish loop does not overflow the outbound queues (drops there are silent).
        await trio.lowlevel.checkpoint()
        gossip = self.config.gossip
        if workarounds.outbound_backlog(self.pubsub) < gossip.publish_backlog_high_water:
            return
        with trio.move_on_after(gossip.publish_backlog_wait_s):
            # The queues signal nothing when they drain, so poll them.
            while workarounds.outbound_backlog(self.pubsub) >= gossip.publish_backlog_high_water // 2:  # noqa: ASYNC110
                await trio.sleep(0.005)

    async def _join_topic(self, topic: str) -> None:
        await self.pubsub.subscribe(topic)
        messages = workarounds.replace_subscription_queue(
            self.pubsub, topic, self.config.gossip.delivery_queue_size
        )
        self._subscribed[topic].set()
        await self.topics.deliver(topic, messages)

    # -- NetworkAPI: request/response ------------------------------------------------------

    def set_request_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        self.reqresp.set_handler(protocol_id, handler, max_request_bytes)

    # NetworkAPI fixes this signature, timeout included.
    async def request(
        self, peer_id: str, protocol_id: str, data: bytes, *, timeout: float, max_response_bytes: int  # noqa: ASYNC109
    ) -> bytes:
        if self._nursery is None:
            raise RequestError("the network is not running")
        started = trio.current_time()
        outcome = "error"

        def penalise(peer: str, reason: str) -> None:
            if reason == "timeout":
                self._penalise_timeout(peer, sent_at)
            else:
                self._penalise_quietly(peer, reason)

        try:
            await self._ensure_connected(peer_id)
            sent_at = trio.current_time()
            response = await send_request(
                self.host,
                peer_id,
                protocol_id,
                data,
                timeout=timeout,
                max_response_bytes=max_response_bytes,
                limits=self.config.reqresp,
                penalise=penalise,
            )
            outcome = "ok"
            return response
        except RequestError as exc:
            outcome = "timeout" if "timed out" in str(exc) else "error"
            # A timeout, or a stream that would not open: not an answer from the peer.
            no_exchange = outcome == "timeout" or isinstance(exc.__cause__, (SwarmException, StreamFailure))
            if no_exchange and self.is_relayed(peer_id) and self._nursery is not None:
                # The relay may be gone (a cut link looks alive for minutes; a relay that dropped
                # the circuit leaves a connection no stream opens on): drop the relayed
                # connection so the next request dials afresh, through another relay if need be.
                self._nursery.start_soon(self.relayed_upgrader.close_relayed, parse_peer_id(peer_id))
            raise
        finally:
            self._record_request(protocol_id, outcome, trio.current_time() - started)

    def _record_request(self, protocol_id: str, outcome: str, seconds: float) -> None:
        # Protocol ids are our own constants: the counter stays small.
        self.request_outcomes[(protocol_id, outcome)] += 1
        if self.request_observer is not None:
            self.request_observer(protocol_id, outcome, seconds)

    async def _on_reachability_change(self, status: Reachability) -> None:
        # A private peer cannot be dialled: it stops serving the DHT so nobody hands it out.
        self.dht.set_server_mode(status is not Reachability.PRIVATE)
        await self._push_identify()

    async def _push_identify(self) -> None:
        """Tell connected peers our new addresses and protocols (identify push)."""
        self.host.__dict__.pop("_p2pnode_spr", None)  # the cached signed record names old addresses
        push = getattr(self.host, "_push_identify_to_all_peers", None)
        if push is not None and self._nursery is not None:
            self._nursery.start_soon(push)

    # -- NetworkAPI: scores ----------------------------------------------------------------

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        """Lower a peer's score; once it crosses the ban threshold it is disconnected, its
        gossip dropped and its reconnects refused until the ban expires."""
        self._apply_penalty(peer_id, reason, amount)

    def _penalise_quietly(self, peer_id: str, reason: str) -> None:
        # Penalties the network layer finds itself: the reason's default amount, never raising.
        try:
            self._apply_penalty(peer_id, reason, None)
        except Exception:
            logger.exception("penalising %s for %s failed", peer_id, reason)

    def _penalise_timeout(self, peer_id: str, sent_at: float) -> None:
        # The share of the window our own loop kept time is the remote's fault; the rest was our
        # overload (many peers on few cores), which must not ban the peers we were slow to hear.
        full = self.config.scoring.penalty_for("timeout", None).amount
        charged = full * self.loop_lag.remote_share(sent_at, trio.current_time())
        self.timeout_points_forgiven += full - charged
        if charged > 0:
            try:
                self._apply_penalty(peer_id, "timeout", charged)
            except Exception:
                logger.exception("penalising %s for a timeout failed", peer_id)

    def _apply_penalty(self, peer_id: str, reason: str, amount: float | None) -> None:
        if peer_id == self._peer_id:
            return
        self.scorer.set_network_size(len(self.host.get_connected_peers()))
        if self.scorer.penalise(peer_id, reason, amount):
            logger.warning("banning peer %s (last penalty: %s)", peer_id, reason)
            self._enforce_ban(peer_id)

    def peer_score(self, peer_id: str) -> PeerScoreView:
        return self.scorer.view(peer_id)

    def is_banned(self, peer_id: str) -> bool:
        return self.scorer.is_banned(peer_id)

    def _enforce_ban(self, peer_id: str) -> None:
        try:
            peer = parse_peer_id(peer_id)
        except ValueError:
            return
        if self._nursery is not None:  # pubsub is running
            self.pubsub.add_to_blacklist(peer)
        self.dht.routing_table.remove_peer(peer)
        self._schedule_disconnect(peer)

    def _schedule_disconnect(self, peer: ID) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        try:
            with trio.move_on_after(5):
                await self.host.disconnect(peer)
        except Exception as exc:
            logger.debug("disconnecting %s failed: %r", peer, exc)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, signal readiness, then serve until cancelled."""
        if self._started:
            raise RuntimeError("a LibP2PNetwork runs once")
        self._started = True
        async with workarounds.supervised_host_run(self.host, self._listen_multiaddrs):
            async with supervised(self.pubsub), supervised(self.gossipsub), supervised(self.relay):
                await self.pubsub.wait_until_ready()
                await self._dial_bootstrap()
                async with supervised(self.dht), AsyncExitStack() as optional, trio.open_nursery() as nursery:
                    if self.config.hole_punching:
                        await optional.enter_async_context(supervised(self.hole_punching))
                    self._nursery = nursery
                    for topic in self.topics.topics():
                        nursery.start_soon(self._join_topic, topic)
                    for topic in self.topics.topics():
                        await self._subscribed[topic].wait()
                    nursery.start_soon(self._discovery_loop)
                    nursery.start_soon(self._maintenance_loop)
                    nursery.start_soon(self.loop_lag.run)
                    if self.config.autonat:
                        nursery.start_soon(self.reachability.run)
                        nursery.start_soon(self.relay_reservations.run)
                        nursery.start_soon(self.relayed_upgrader.run)
                    if self.config.upnp:
                        nursery.start_soon(self.port_mapping.run)
                    task_status.started()
                    try:
                        await trio.sleep_forever()
                    finally:
                        self._nursery = None

    async def __aenter__(self) -> LibP2PNetwork:
        self._lifecycle = self._running()
        await self._lifecycle.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._lifecycle is not None
        return await self._lifecycle.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    # -- upkeep ---------------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        next_bootstrap_dial = 0.0
        while True:
            await trio.sleep(self.config.maintenance_interval_s)
            connected = self.host.get_connected_peers()
            self.scorer.set_network_size(len(connected))
            for peer_id in self.scorer.expire_bans():
                logger.info("ban of %s expired", peer_id)
                self.pubsub.remove_from_blacklist(ID.from_base58(peer_id))
            self.scorer.prune()
            await self.dht.admit_identified_servers()
            self.dht.evict_client_mode_peers()
            if not connected and self._bootstrap and trio.current_time() >= next_bootstrap_dial:
                next_bootstrap_dial = trio.current_time() + self.config.bootstrap_redial_interval_s
                await self._dial_bootstrap()

    # -- introspection ---------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "peer_id": self._peer_id,
            "connected_peers": len(self.host.get_connected_peers()),
            "routing_table_size": self.dht.get_routing_table_size(),
            "heartbeat_interval_s": self.gossipsub.heartbeat_interval,
            "mesh": {topic: len(peers) for topic, peers in self.gossipsub.mesh.items()},
            "gossip_rejected": self.topics.rejected,
            "gossip_ignored": self.topics.ignored,
            "validator_errors": self.topics.validator_errors,
            "handler_errors_caught": self.guard_stats.total,
            "library_task_failures": workarounds.SERVICE_FAILURES.total,
            "banned_peers": self.scorer.banned_peers(),
            "loop_lag_s": {"total": round(self.loop_lag.total_lag_s, 3), "max": round(self.loop_lag.max_lag_s, 3),
                           "last_10s": round(self.loop_lag.recent_lag(10.0), 3)},
            "timeout_points_forgiven": round(self.timeout_points_forgiven, 1),
            "reqresp_inbound_in_flight": self.reqresp.inbound_in_flight(),
            **self.reachability_view(),
        }
