"""DCUtR hole punching (py-libp2p 0.8.1's `DCUtRProtocol`) for peers that give out relay
addresses only (py-libp2p problem 24).

Upstream takes everything it needs from `host.get_addrs()`: the TCP listen port it binds its
hole-punch dials to, and the port it pairs with the external IP identify observed to predict our
NAT mapping (`<router IP>/tcp/<listen port>`). A private peer gives out only `/p2p-circuit`
addresses, so upstream found no TCP address: the CONNECT message carried nothing ("No addresses
to try for hole punch") and the dials left from ephemeral ports no NAT mapping matched.
`HolePunching` gives DCUtR the listen sockets instead (IPv4 first: upstream binds to the first
one), builds the CONNECT addresses itself (the predictions first, then our direct addresses), and
fixes three more things:

- Upstream learns our external IP only from identify, which it runs once per peer: after a
  reconnect (the peer's protocols are cached) nothing is observed again, and observations die with
  the connection that carried them. A peer whose relay connections had dropped once knew no
  external IP. When none is known at hole-punch time we run identify again with up to
  `REIDENTIFY_PEERS` directly connected peers (within `REIDENTIFY_TIMEOUT_S`).
- Only the peer that *accepted* the relayed connection starts DCUtR, as the spec says (the lower
  PeerID when each dialled the other through a relay). Upstream starts it from both ends; two
  sessions at once dial the same address pair twice, and whichever socket wins may run the
  security handshake in the wrong role on both ends.
- A CONNECT message from the other peer is a list of addresses we will dial (three rounds):
  at most `MAX_PEER_ADDRS` TCP addresses with a concrete IP are kept.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

from p2pnode.net.addresses import AddressBook, is_circuit, strip_peer_id

logger = logging.getLogger(__name__)

# Addresses kept from a peer's CONNECT message (upstream: 20), and sent in ours.
MAX_PEER_ADDRS = 4
MAX_OWN_ADDRS = 8
REIDENTIFY_PEERS = 2
REIDENTIFY_TIMEOUT_S = 5.0


def _tcp_endpoint(addr: multiaddr.Multiaddr) -> tuple[int, str, int] | None:
    """(IP version, IP, TCP port) of a plain `/ip4|ip6/.../tcp/...` address, else None."""
    text = str(addr)
    if is_circuit(addr):
        return None
    parts = text.split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    try:
        ip = ipaddress.ip_address(parts[2])
        port = int(parts[4])
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return ip.version, str(ip), port


def _is_relayed_conn(conn: Any) -> bool:
    try:
        return any(is_circuit(a) for a in conn.get_transport_addresses())
    except Exception:
        return False


class _ListenSocketsHost:
    """The host as DCUtR should see it: `get_addrs()` gives the TCP listen sockets (IPv4 first),
    everything else is the real host."""

    def __init__(self, host: IHost) -> None:
        object.__setattr__(self, "_host", host)

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        sockets = [a for a in self._host.get_transport_addrs() if _tcp_endpoint(a) is not None]  # type: ignore[attr-defined]
        return sorted(sockets, key=lambda a: _tcp_endpoint(a)[0])  # type: ignore[index]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._host, name, value)


class HolePunching(DCUtRProtocol):
    """py-libp2p's DCUtR with our addresses; see the module doc."""

    def __init__(self, host: IHost, book: AddressBook) -> None:
        super().__init__(host)
        self.host = _ListenSocketsHost(host)  # type: ignore[assignment]
        self._book = book
        self.succeeded = 0
        self.failed = 0

    def listen_ports(self) -> dict[int, list[int]]:
        """IP version -> our TCP listen ports."""
        ports: dict[int, list[int]] = {}
        for addr in self.host.get_addrs():
            endpoint = _tcp_endpoint(addr)
            if endpoint is not None and endpoint[2] not in ports.setdefault(endpoint[0], []):
                ports[endpoint[0]].append(endpoint[2])
        return ports

    def external_ips(self) -> list[tuple[int, str]]:
        """Our IPs as peers see them over direct connections (identify's observed addresses;
        py-libp2p ignores those made over relayed connections)."""
        manager = getattr(self.host, "_observed_addr_manager", None)
        if manager is None:
            return []
        ips: list[tuple[int, str]] = []
        try:
            observed = manager.addrs(min_observers=1)
        except Exception:
            logger.debug("reading observed addresses failed", exc_info=True)
            return []
        for addr in observed:
            endpoint = _tcp_endpoint(strip_peer_id(addr))
            if endpoint is not None and (endpoint[0], endpoint[1]) not in ips:
                ips.append((endpoint[0], endpoint[1]))
        return ips

    def connect_addrs(self) -> list[multiaddr.Multiaddr]:
        """What our CONNECT message offers: each observed external IP with each listen port of
        its IP version (a NAT that keeps source ports maps our listen port there, and hole-punch
        dials leave from it), then our direct addresses (announced, or the interfaces')."""
        ports = self.listen_ports()
        addrs = [multiaddr.Multiaddr(f"/ip{version}/{ip}/tcp/{port}")
                 for version, ip in self.external_ips() for port in ports.get(version, [])]
        addrs += [strip_peer_id(a) for a in self._book.direct()]
        unique: dict[str, multiaddr.Multiaddr] = {}
        for addr in addrs:
            endpoint = _tcp_endpoint(addr)
            if endpoint is not None and not ipaddress.ip_address(endpoint[1]).is_unspecified:
                unique.setdefault(str(addr), addr)
        return list(unique.values())[:MAX_OWN_ADDRS]

    async def refresh_external_ips(self) -> None:
        """Ask directly connected peers how they see us (identify) when no observation is left."""
        if self.external_ips():
            return
        network = self.host.get_network()
        direct = [p for p in sorted(network.connections, key=lambda p: p.to_bytes())
                  if not all(_is_relayed_conn(c) for c in network.connections.get(p, []) or [])]
        with trio.move_on_after(REIDENTIFY_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                for peer in direct[:REIDENTIFY_PEERS]:
                    nursery.start_soon(self._identify_quietly, peer)

    async def _identify_quietly(self, peer: ID) -> None:
        try:
            # Upstream's own identify exchange, which records the observed address.
            await self.host._identify_peer(peer, reason="dcutr")  # type: ignore[attr-defined]
        except Exception:
            logger.debug("identify with %s for hole punching failed", peer, exc_info=True)

    async def _get_observed_addrs(self) -> list[bytes]:
        await self.refresh_external_ips()
        return [a.to_bytes() for a in self.connect_addrs()]

    def _decode_observed_addrs(self, addr_bytes: list[bytes]) -> list[multiaddr.Multiaddr]:
        kept: list[multiaddr.Multiaddr] = []
        for raw in addr_bytes:
            try:
                addr = multiaddr.Multiaddr(raw)
                endpoint = _tcp_endpoint(addr)
            except Exception:  # parsing is lazy: malformed bytes fail on first use
                continue
            if endpoint is None or ipaddress.ip_address(endpoint[1]).is_unspecified:
                continue
            kept.append(addr)
            if len(kept) >= MAX_PEER_ADDRS:
                break
        return kept

    def starts_hole_punch(self, peer: ID) -> bool:
        """Whether we start DCUtR with `peer`: connected only through relays, and it dialled us.
        When each of us also dialled the other through a relay, the lower PeerID starts (both
        ends see the same two connections, so exactly one of them does)."""
        conns = self.host.get_network().connections.get(peer, []) or []
        if not conns or not all(_is_relayed_conn(c) for c in conns):
            return False
        dialled = [bool(getattr(c.muxed_conn, "is_initiator_value", True)) for c in conns]
        if all(dialled):
            return False
        return not any(dialled) or self.host.get_id().to_bytes() < peer.to_bytes()

    async def initiate_hole_punch(self, peer_id: ID) -> bool:
        if not self.starts_hole_punch(peer_id):
            return False
        return await super().initiate_hole_punch(peer_id)

    async def _perform_hole_punch(self, peer_id: ID, addrs: list[multiaddr.Multiaddr],
                                  as_responder: bool = False) -> bool:
        punched = await super()._perform_hole_punch(peer_id, addrs, as_responder)
        if punched:
            self.succeeded += 1
        else:
            self.failed += 1
        logger.info("hole punch with %s (%s): %s", peer_id, "initiator" if as_responder else "responder",
                    "direct connection" if punched else "failed")
        return punched
