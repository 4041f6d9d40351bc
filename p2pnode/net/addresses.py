"""Which addresses a peer listens on, and which it gives out (identify, the DHT, relay vouchers).

A volunteer's peer listens like a server: on every interface, IPv4 and (where the host has it)
IPv6, on one fixed port (`DEFAULT_P2P_PORT`) that a firewall or router rule can name.

What it *announces* is decided here, never by the listen sockets alone:

- `--announce` addresses, when given, replace the listen addresses (a host behind a port forward
  or a cloud NAT knows its public address better than its interfaces do);
- otherwise wildcard listen addresses (`0.0.0.0`, `::`) are expanded to the interfaces' own
  addresses: a wildcard is never given out, and neither are link-local IPv6 addresses, nor
  loopback when any other address of the family exists;
- addresses AutoNAT confirmed from outside (a dial-back succeeded) are added, and so are ports a
  UPnP router mapped for us (`--upnp`, off by default);
- when AutoNAT says the peer is private, its direct addresses are useless to others: it gives
  out only its relay (`/p2p-circuit`) addresses (and `--announce` ones, which the operator
  vouched for);
- observed addresses that py-libp2p adds from identify are dropped: behind a NAT they name the
  router's ephemeral port, which no one can dial.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import multiaddr
import psutil
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

DEFAULT_P2P_PORT = 30633


class Reachability(StrEnum):
    """What AutoNAT found out about us: dialable from outside, not, or not known yet."""

    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


class AddressError(ValueError):
    """A listen or announce address that cannot be used."""


def parse_multiaddr(text: str, what: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:
        raise AddressError(f"bad {what} {text!r}: {exc}") from exc


def ipv6_available() -> bool:
    """Whether this host can bind an IPv6 socket (containers often cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def default_listen_addrs(port: int = DEFAULT_P2P_PORT) -> list[str]:
    """Every interface on `port`: IPv4, plus IPv6 where the host can bind it."""
    if not 0 <= port <= 65535:
        raise AddressError(f"port {port} is outside 0..65535")
    addrs = [f"/ip4/0.0.0.0/tcp/{port}"]
    if ipv6_available():
        addrs.append(f"/ip6/::/tcp/{port}")
    return addrs


def parse_announce_addrs(texts: Sequence[str]) -> list[multiaddr.Multiaddr]:
    """`--announce` values: concrete `/ip4|ip6|dns*/.../tcp/PORT` addresses, without `/p2p`."""
    result = []
    for text in texts:
        addr = parse_multiaddr(text, "announce address")
        names = [p.name for p in addr.protocols()]
        if not names or names[0] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
            raise AddressError(f"bad announce address {text!r}: must start with /ip4, /ip6 or /dns")
        if "tcp" not in names:
            raise AddressError(f"bad announce address {text!r}: must name a /tcp/ port")
        if "p2p" in names or "p2p-circuit" in names:
            raise AddressError(f"bad announce address {text!r}: give the address without /p2p (it is added)")
        host = _ip_of(addr)
        if host is not None and host.is_unspecified:
            raise AddressError(f"bad announce address {text!r}: a wildcard address cannot be dialled")
        result.append(addr)
    return result


def _ip_of(addr: multiaddr.Multiaddr) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for proto in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(addr.value_for_protocol(proto))
        except Exception:
            continue
    return None


def interface_ips() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of this host's interfaces that are up."""
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    stats = psutil.net_if_stats()
    for name, entries in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ips.append(ipaddress.ip_address(entry.address.split("%", 1)[0]))
            except ValueError:
                continue
    return ips


def expand_wildcard(addr: multiaddr.Multiaddr, ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> list[multiaddr.Multiaddr]:
    """`/ip4/0.0.0.0/tcp/P` -> one address per interface IP of that family. Link-local addresses
    never; loopback only on a host with no other address at all (of any family): a server with
    only a link-local IPv6 must not tell others to dial `::1`, their own machine."""
    ip = _ip_of(addr)
    if ip is None or not ip.is_unspecified:
        return [addr]
    usable = [i for i in ips if not i.is_link_local and not i.is_unspecified]
    routable = [i for i in usable if not i.is_loopback]
    chosen = [i for i in (routable or usable) if i.version == ip.version]
    proto = "ip4" if ip.version == 4 else "ip6"
    rest = str(addr).split("/", 3)[3]  # what follows /ip4/0.0.0.0/
    return [multiaddr.Multiaddr(f"/{proto}/{i}/{rest}") for i in chosen]


def is_circuit(addr: multiaddr.Multiaddr) -> bool:
    return any(p.name == "p2p-circuit" for p in addr.protocols())


def strip_peer_id(addr: multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    """Drop a trailing `/p2p/<id>` (host.get_addrs adds our own)."""
    text = str(addr)
    if is_circuit(addr):
        head, _, tail = text.partition("/p2p-circuit")
        return multiaddr.Multiaddr(head + "/p2p-circuit")
    if "/p2p/" in text:
        return multiaddr.Multiaddr(text.split("/p2p/", 1)[0])
    return addr


class AddressBook:
    """The addresses we give out; py-libp2p calls `advertised` (its `addrs_factory`) every time
    it builds our identify record, DHT answer or relay voucher.

    `transport_addrs` returns what the listen sockets are bound to (ports resolved); py-libp2p's
    candidate list, which also holds observed addresses, is ignored (see the module doc).
    """

    def __init__(self, transport_addrs: Callable[[], Sequence[multiaddr.Multiaddr]],
                 announce: Sequence[multiaddr.Multiaddr] = ()) -> None:
        self._transport_addrs = transport_addrs
        self.announce = list(announce)
        self.reachability = Reachability.UNKNOWN
        self._confirmed: list[multiaddr.Multiaddr] = []
        self._circuits: list[multiaddr.Multiaddr] = []
        self._mapped: list[multiaddr.Multiaddr] = []

    def set_mapped(self, addrs: Sequence[multiaddr.Multiaddr]) -> None:
        """Addresses a UPnP router maps to us (`--upnp`); AutoNAT still has to confirm them."""
        self._mapped = [strip_peer_id(a) for a in addrs]

    def set_confirmed(self, addrs: Sequence[multiaddr.Multiaddr]) -> None:
        """Addresses AutoNAT servers reached us at."""
        self._confirmed = [strip_peer_id(a) for a in addrs if not is_circuit(a)]

    def set_circuits(self, addrs: Sequence[multiaddr.Multiaddr]) -> None:
        """`<relay addr>/p2p/<relay>/p2p-circuit` for each relay holding a reservation for us."""
        self._circuits = [strip_peer_id(a) for a in addrs]

    def circuits(self) -> list[multiaddr.Multiaddr]:
        return list(self._circuits)

    def direct(self) -> list[multiaddr.Multiaddr]:
        """Our direct addresses: --announce ones if given, else the listen sockets' (wildcards
        expanded), plus those AutoNAT confirmed."""
        if self.announce:
            return _unique([*self.announce, *self._mapped, *self._confirmed])
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
        own: list[multiaddr.Multiaddr] = []
        for addr in self._transport_addrs():
            ip = _ip_of(addr)
            if ip is not None and ip.is_unspecified:
                ips = interface_ips() if ips is None else ips
                own.extend(expand_wildcard(addr, ips))
            elif not is_circuit(addr):
                own.append(addr)
        return _unique([*own, *self._mapped, *self._confirmed])

    def advertised(self, candidates: Sequence[multiaddr.Multiaddr] = ()) -> list[multiaddr.Multiaddr]:
        if self.reachability is Reachability.PRIVATE:
            return _unique([*self.announce, *self._circuits])
        return _unique([*self.direct(), *self._circuits])


def _unique(addrs: Sequence[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    seen: dict[str, multiaddr.Multiaddr] = {}
    for addr in addrs:
        seen.setdefault(str(addr), addr)
    return list(seen.values())


def install_address_book(host: Any, book: AddressBook) -> None:
    """Make `host.get_addrs()` (identify, the DHT, relay vouchers) return `book.advertised()`.

    py-libp2p 0.8.1's `BasicHost.get_addrs` passes its `addrs_factory` output through a step
    that cuts every address at its first `/p2p/` component: `<relay>/p2p/<relay id>/p2p-circuit`
    would come out as the relay's own address with our PeerID on it, which dials the relay and
    fails the handshake. Here each address keeps its relay part and gets `/p2p/<our id>` once.
    """
    suffix = multiaddr.Multiaddr(f"/p2p/{host.get_id().to_base58()}")

    def get_addrs() -> list[multiaddr.Multiaddr]:
        return [addr.encapsulate(suffix) for addr in book.advertised()]

    host.get_addrs = get_addrs


def parse_peer_addr(addr: str, what: str) -> PeerInfo:
    """A `/.../p2p/<PeerID>` multiaddr; ValueError naming the address otherwise."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise ValueError(f"bad {what} {addr!r} (want /ip4/<ip>/tcp/<port>/p2p/<PeerID>): {exc}") from exc
