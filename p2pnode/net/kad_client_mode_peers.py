"""Our own Kademlia DHT: a protocol id per network, and two fixes to py-libp2p 0.8.1's KadDHT.

1. **One DHT per network.** Upstream hard-codes `/ipfs/kad/1.0.0` (its `protocol_prefix` is
   stored and never used), so a p2pnode peer that meets an IPFS peer joins the public IPFS DHT and
   hands its peers out. Here the DHT speaks `/p2pnode/<network>/kad/1.0.0`: every protocol id the
   DHT registers or dials goes through `_ProtocolRenamingHost`, per instance, so two networks
   can run in one process.
2. **Client-mode peers in the routing table.** Upstream's stream handler adds whoever opens a
   DHT stream with `skip_server_mode_check=True`, so a peer that runs the DHT as a client (a
   NATed peer, which does not advertise the protocol and cannot be dialled) lands in the routing
   table and is handed out in lookups. Its server-mode check also compares against the hard-coded
   id. `ServerModeKadDHT` admits a peer only when identify says it serves our DHT protocol (or,
   for peers we only heard of in a lookup answer, when nothing says otherwise), and
   `evict_client_mode_peers` drops those that stop advertising it.
3. **FIND_NODE for the answering node itself.** Upstream answers with its own entry first but
   takes the addresses from its peerstore, which holds none for itself: the caller gets an entry
   it cannot dial. `ServerModeKadDHT` fills in the addresses we advertise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import PROTOCOL_ID as UPSTREAM_PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

_NETWORK_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def dht_protocol_id(network: str) -> str:
    """`/p2pnode/<network>/kad/1.0.0`; ValueError for a name that cannot be a path segment."""
    if not _NETWORK_NAME.match(network):
        raise ValueError(f"bad network name {network!r} for the DHT protocol id (want 1-64 of A-Z a-z 0-9 . _ -)")
    return f"/p2pnode/{network}/kad/1.0.0"


def dht_network_name(chain_id: str) -> str:
    """A chain id made safe for `dht_protocol_id` (other characters become `_`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", chain_id)[:64] or "_"


class _ProtocolRenamingHost:
    """The host as the DHT sees it: upstream's protocol id is swapped for ours on the way in and
    out; everything else is the real host."""

    def __init__(self, host: IHost, protocol: TProtocol) -> None:
        self._host = host
        self._protocol = protocol

    def _rename(self, protocol: Any) -> Any:
        return self._protocol if str(protocol) == str(UPSTREAM_PROTOCOL_ID) else protocol

    def set_stream_handler(self, protocol: TProtocol, handler: Any) -> None:
        self._host.set_stream_handler(self._rename(protocol), handler)

    def remove_stream_handler(self, protocol: TProtocol) -> None:
        self._host.remove_stream_handler(self._rename(protocol))

    async def new_stream(self, peer_id: ID, protocols: Sequence[TProtocol]) -> Any:
        return await self._host.new_stream(peer_id, [self._rename(p) for p in protocols])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


def serves_dht(host: IHost, peer: ID, protocol: str) -> bool | None:
    """True / False when identify told us whether `peer` serves `protocol`; None before that."""
    try:
        protocols = host.get_peerstore().get_protocols(peer)
    except Exception:
        return None
    if not protocols:
        return None
    return protocol in {str(p) for p in protocols}


class ServerModeKadDHT(KadDHT):
    """KadDHT on our protocol id, admitting only server-mode peers (see the module doc)."""

    def __init__(self, host: IHost, network: str, *, advertised_addrs: Any, **kwargs: Any) -> None:
        self.protocol_id = TProtocol(dht_protocol_id(network))
        self._real_host = host
        # Returns our advertised multiaddrs (without /p2p); see _add_closer_peers_to_response.
        self._advertised_addrs = advertised_addrs
        super().__init__(_ProtocolRenamingHost(host, self.protocol_id), DHTMode.SERVER, **kwargs)  # type: ignore[arg-type]
        self._upstream_add_peer = self.routing_table.add_peer
        self.routing_table.add_peer = self._admit  # type: ignore[method-assign]
        self.refused_client_mode = 0

    async def _admit(self, peer_obj: ID | PeerInfo, skip_server_mode_check: bool = False) -> bool:
        peer = peer_obj.peer_id if isinstance(peer_obj, PeerInfo) else peer_obj
        verdict = serves_dht(self._real_host, peer, self.protocol_id)
        if verdict is False:
            self.refused_client_mode += 1
            return False
        if verdict is None and self._real_host.get_network().connections.get(peer):
            # Connected but not identified yet (upstream's inbound-stream path): wait for
            # identify; `admit_identified_servers` adds it once it says "server".
            return False
        return bool(await self._upstream_add_peer(peer_obj, skip_server_mode_check=True))

    async def add_peer(self, peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        return await self._admit(peer_id)

    async def add_trusted_server(self, peer_id: ID) -> bool:
        """A peer we know serves the DHT (a bootstrap peer we dialled): add it before identify."""
        return bool(await self._upstream_add_peer(peer_id, skip_server_mode_check=True))

    async def admit_identified_servers(self) -> None:
        """Add connected peers identify has shown to be DHT servers (see `_admit`)."""
        for peer in list(self._real_host.get_connected_peers()):
            if not self.routing_table.peer_in_table(peer) and serves_dht(self._real_host, peer, self.protocol_id):
                await self._upstream_add_peer(peer, skip_server_mode_check=True)

    def evict_client_mode_peers(self) -> list[ID]:
        """Drop table entries identify shows do not serve our DHT (any more)."""
        evicted = [p for p in self.routing_table.get_peer_ids()
                   if serves_dht(self._real_host, p, self.protocol_id) is False]
        for peer in evicted:
            self.routing_table.remove_peer(peer)
        return evicted

    def _add_closer_peers_to_response(self, response: Any, closest_peers: Sequence[ID],
                                      exclude_peer_id: ID | None = None) -> None:
        super()._add_closer_peers_to_response(response, closest_peers, exclude_peer_id)
        own = self._real_host.get_id().to_bytes()
        for entry in response.closerPeers:
            if entry.id == own and not entry.addrs:
                entry.addrs.extend(addr.to_bytes() for addr in self._advertised_addrs())

    def set_server_mode(self, serve: bool) -> None:
        """Serve the DHT or only query it (a peer others cannot dial must not be handed out).

        Unlike upstream's `switch_mode`, the routing table is kept: a client still looks up.
        """
        if serve and self.mode != DHTMode.SERVER:
            self.host.set_stream_handler(self.protocol_id, self.handle_stream)
            self.mode = DHTMode.SERVER
        elif not serve and self.mode == DHTMode.SERVER:
            self.host.remove_stream_handler(self.protocol_id)
            self.mode = DHTMode.CLIENT
