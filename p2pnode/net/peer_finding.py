"""How a `LibP2PNetwork` finds and dials peers: bootstrap, the periodic DHT self-lookup and dials
up to `target_peer_count`, and on-demand dialling of a request's peer (direct, DHT lookup, relay).

`PeerFinding` is a part of `LibP2PNetwork` (its base class), kept apart so that the host's
wiring, gossip and request surface in `host` and the dialling here each read as one piece.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2pnode.net.addresses import is_circuit
from p2pnode.net.identity import parse_peer_id
from p2pnode.net.kad_client_mode_peers import ServerModeKadDHT, serves_dht

if TYPE_CHECKING:
    from p2pnode.net.host import NetConfig
    from p2pnode.net.reachability import RelayDialer
    from p2pnode.net.scoring import PeerScorer

# Logged under the host's name, as they were when they were written there.
logger = logging.getLogger("p2pnode.net.host")


class PeerFinding:
    """The peer-finding half of `LibP2PNetwork`; it reads the network's attributes declared below."""

    host: IHost
    dht: ServerModeKadDHT
    config: NetConfig
    scorer: PeerScorer
    relay_dialer: RelayDialer
    _local_id: ID
    _bootstrap: list[PeerInfo]

    # -- dialling a request's peer ---------------------------------------------------------

    async def _ensure_connected(self, peer_id: str) -> None:
        """Dial `peer_id` if we have no connection. Failures are left to the request.

        A peer that announces `/p2p-circuit` addresses is dialled through a relay first (py-libp2p's
        swarm skips such addresses, and the direct addresses we still hold for it are stale).
        Otherwise a direct dial and [DHT lookup, then a relayed dial] race: a NATed peer's old
        private address can take a full TCP timeout to fail, longer than a query may wait.
        """
        try:
            peer = parse_peer_id(peer_id)
        except ValueError:
            return  # send_request reports the malformed id
        if peer == self._local_id or self.host.get_network().connections.get(peer):
            return
        addrs = self._known_addrs(peer)
        if any(is_circuit(a) for a in addrs) and await self.relay_dialer.dial(peer, addrs):
            return
        direct = [a for a in addrs if not is_circuit(a)]

        async def dial_direct(done: trio.CancelScope) -> None:
            if not direct:
                return
            try:
                with trio.fail_after(self.config.dial_timeout_s):
                    await self.host.connect(PeerInfo(peer, direct))
                done.cancel()
            except Exception as exc:
                logger.debug("direct dial to %s failed: %r", peer_id, exc)

        async def dial_via_relay(done: trio.CancelScope) -> None:
            fresh = await self._look_up_addrs(peer)
            if await self.relay_dialer.dial(peer, fresh):
                done.cancel()

        async with trio.open_nursery() as race:
            race.start_soon(dial_direct, race.cancel_scope)
            race.start_soon(dial_via_relay, race.cancel_scope)

    def _known_addrs(self, peer: ID) -> list[multiaddr.Multiaddr]:
        try:
            return list(self.host.get_peerstore().addrs(peer))
        except Exception:
            return []

    async def _look_up_addrs(self, peer: ID) -> list[multiaddr.Multiaddr]:
        """Ask the DHT for `peer`'s addresses (they land in the peerstore).

        First one FIND_NODE to each connected DHT server at once (relays know the peers holding
        reservations on them), stopping at the first answer with new addresses; only when that
        brings nothing, an iterative lookup (upstream's find_peer answers from the peerstore when
        it knows anything, so `find_closest_peers_network` is called directly).
        """
        before = {str(a) for a in self._known_addrs(peer)}
        servers = [p for p in self.host.get_connected_peers()
                   if p != peer and serves_dht(self.host, p, self.dht.protocol_id)][:8]

        async def ask(server: ID, done: trio.CancelScope) -> None:
            try:
                await self.dht.peer_routing._query_peer_for_closest(server, peer.to_bytes())
            except Exception as exc:
                logger.debug("FIND_NODE %s at %s failed: %r", peer, server, exc)
            if {str(a) for a in self._known_addrs(peer)} - before:
                done.cancel()

        with trio.move_on_after(self.config.dial_timeout_s / 2):
            async with trio.open_nursery() as asking:
                for server in servers:
                    asking.start_soon(ask, server, asking.cancel_scope)
        if {str(a) for a in self._known_addrs(peer)} - before:
            return self._known_addrs(peer)
        with trio.move_on_after(self.config.dial_timeout_s):
            try:
                await self.dht.peer_routing.find_closest_peers_network(peer.to_bytes())
            except Exception as exc:
                logger.debug("DHT lookup of %s failed: %r", peer, exc)
        return self._known_addrs(peer)

    # -- bootstrap and discovery -----------------------------------------------------------

    async def _dial_bootstrap(self) -> None:
        async with trio.open_nursery() as nursery:
            for info in self._bootstrap:
                nursery.start_soon(self._dial_bootstrap_peer, info)

    async def _dial_bootstrap_peer(self, info: PeerInfo) -> None:
        if info.peer_id == self._local_id:
            return
        # py-libp2p refuses for 60 s to dial a peer whose addresses all failed; a bootstrap peer
        # that was not up yet is worth our own 10 s retry.
        unblock = getattr(self.host.get_network(), "unblock_peer", None)
        if unblock is not None:
            unblock(info.peer_id)
        try:
            with trio.fail_after(self.config.dial_timeout_s):
                await self.host.connect(info)
            # We know bootstrap peers run the DHT in server mode; identify may not have finished.
            await self.dht.add_trusted_server(info.peer_id)
        except Exception as exc:
            logger.warning("bootstrap peer %s unreachable: %r", info.peer_id, exc)

    async def _discovery_loop(self) -> None:
        delays = list(self.config.dht_refresh_after_start_s)
        while True:
            await trio.sleep(delays.pop(0) if delays else self.config.dht_refresh_interval_s)
            try:
                with trio.move_on_after(max(30.0, self.config.dial_timeout_s)):
                    await self._self_lookup()
            except Exception as exc:
                logger.debug("DHT self-lookup failed: %r", exc)
            await self._connect_discovered()

    async def _self_lookup(self) -> None:
        """Look up our own id and keep what we meet: Kademlia's bootstrap step.

        Cheaper than upstream's `refresh_routing_table` (which adds a random lookup per bucket:
        ~5x the CPU in an 8-node network); KadDHT still runs that full refresh itself at start
        and every 600 s.
        """
        closest = await self.dht.peer_routing.find_closest_peers_network(self._local_id.to_bytes())
        peerstore = self.host.get_peerstore()
        for peer in closest:
            if peer == self._local_id or self.scorer.is_banned(peer.to_base58()):
                continue
            try:
                addrs = peerstore.addrs(peer)
            except Exception:
                continue
            if addrs:
                await self.dht.routing_table.add_peer(PeerInfo(peer, addrs))

    async def _connect_discovered(self) -> None:
        """Dial peers from the routing table and peerstore until `target_peer_count`."""
        connected = set(self.host.get_connected_peers())
        peerstore = self.host.get_peerstore()
        candidates = [
            p
            for p in dict.fromkeys([*self.dht.routing_table.get_peer_ids(), *peerstore.peers_with_addrs()])
            if p != self._local_id and p not in connected and not self.scorer.is_banned(p.to_base58())
        ]
        budget = self.config.target_peer_count - len(connected)
        async with trio.open_nursery() as nursery:
            for peer in candidates[: max(budget, 0)]:
                nursery.start_soon(self._dial_discovered, PeerInfo(peer, peerstore.addrs(peer)))

    async def _dial_discovered(self, info: PeerInfo) -> None:
        try:
            with trio.fail_after(self.config.dial_timeout_s):
                await self.host.connect(info)
        except Exception as exc:
            logger.debug("could not dial discovered peer %s: %r", info.peer_id, exc)
