"""Reachability: AutoNAT (am I dialable?), relay reservations when not, and dialling through relays.

- `DialBackService` answers AutoNAT dial-back requests (py-libp2p's `AutoNATService`, whose
  observed-IP gate and refusal over relayed connections are kept). Upstream dials back with
  `host.connect`, which returns at once because the requester is already connected: every peer,
  NATed or not, would be told "public". Here the dial-back is a fresh TCP connection to the
  address, closed straight away; at most `max_dialbacks_in_flight` run at once and at most
  `max_dialback_addrs` addresses of one request are tried.
- `ReachabilityMonitor` asks connected peers (over direct connections only) to dial us back and
  decides PUBLIC / PRIVATE from their verdicts (see `decide`). A PRIVATE peer stops serving the
  DHT (others could not dial it) and gives out only relay addresses; see `addresses.AddressBook`.
- `RelayReservations`, while PRIVATE, holds reservations on up to `relays_wanted` connected peers
  that offer the relay (hop) protocol, renews them, replaces a relay whose connection dropped,
  and publishes `<relay>/p2p-circuit` addresses (pushed to peers with identify push).
- `RelayedConnectionUpgrader` dials directly a peer we are connected to only through a relay
  (a public peer that reached us, a private one, through a relay), and drops the relayed one.
- `RelayDialer` reaches a peer that has only `/p2p-circuit` addresses (py-libp2p's swarm skips
  those) through the relay named in the address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID, AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message as AutoNATMessage
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from p2pnode.net.addresses import AddressBook, Reachability, is_circuit

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReachabilityConfig:
    # AutoNAT client: first check soon after start, again every `recheck_s` once decided,
    # every `retry_s` while unknown (doubling, up to `recheck_s`, while servers were asked and
    # none answered: each query makes a server dial us back, and unanswered queries mean busy
    # servers); ask up to `servers` peers, each within `query_timeout_s`.
    first_check_s: float = 2.0
    retry_s: float = 5.0
    recheck_s: float = 120.0
    servers: int = 4
    query_timeout_s: float = 15.0
    # AutoNAT server.
    dialback_timeout_s: float = 5.0
    max_dialbacks_in_flight: int = 4
    max_dialback_addrs: int = 8
    # Relay client (while PRIVATE).
    relays_wanted: int = 2
    relay_check_s: float = 2.0
    reservation_renew_margin_s: float = 300.0
    # A relay is asked again (a RESERVE refreshes) this often; no answer within the timeout
    # means it is gone: a cut link leaves a TCP connection that looks alive for many minutes.
    relay_probe_s: float = 10.0
    relay_probe_timeout_s: float = 5.0
    relay_dial_timeout_s: float = 15.0
    # A peer reached only through a relay is dialled directly at most this often.
    direct_retry_s: float = 30.0
    direct_dial_timeout_s: float = 5.0


def _is_relayed(host: IHost, peer: ID) -> bool:
    """True when every connection to `peer` runs through a relay."""
    conns = host.get_network().connections.get(peer, []) or []
    if not conns:
        return False
    for conn in conns:
        try:
            addrs = conn.get_transport_addresses()
        except Exception:
            addrs = []
        if not any(is_circuit(a) for a in addrs):
            return False
    return True


def relayed_only(host: IHost, peer: ID) -> bool:
    """Connected to `peer`, and only through relays."""
    return _is_relayed(host, peer)


def _supports(host: IHost, peer: ID, protocol: str) -> bool:
    try:
        return protocol in {str(p) for p in host.get_peerstore().get_protocols(peer)}
    except Exception:
        return False


# -- AutoNAT server ------------------------------------------------------------------------------


class DialBackService(AutoNATService):
    """AutoNAT server answering with a *fresh* dial (see the module doc)."""

    def __init__(self, host: IHost, config: ReachabilityConfig) -> None:
        super().__init__(host, serve=True)  # type: ignore[arg-type]
        self._config = config
        self._in_flight = 0
        self.dialbacks = 0

    async def _handle_dial(self, message: AutoNATMessage, observed_ip: str | None, is_relayed: bool) -> AutoNATMessage:
        # Busy is a refusal, not a failed dial: the requester must not read it as "unreachable".
        if self._in_flight >= self._config.max_dialbacks_in_flight:
            response = AutoNATMessage()
            response.type = AutoNATMessage.DIAL_RESPONSE
            response.dialResponse.status = AutoNATMessage.E_DIAL_REFUSED
            response.dialResponse.statusText = "busy: too many dial-backs in flight"
            return response
        return await super()._handle_dial(message, observed_ip, is_relayed)  # type: ignore[no-any-return]

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        self._in_flight += 1
        try:
            for raw in addrs[: self._config.max_dialback_addrs]:
                self.dialbacks += 1
                if await self._dial_once(multiaddr.Multiaddr(raw)):
                    return raw
            return None
        finally:
            self._in_flight -= 1

    async def _dial_once(self, addr: multiaddr.Multiaddr) -> bool:
        try:
            transport = self.host.get_network().transport_manager.transport_for_dialing(addr)  # type: ignore[attr-defined]
            if transport is None:
                return False
            with trio.fail_after(self._config.dialback_timeout_s):
                conn = await transport.dial(addr)
            with trio.move_on_after(2):
                await conn.close()
            return True
        except Exception as exc:
            logger.debug("dial-back to %s failed: %r", addr, exc)
            return False


# -- AutoNAT client ------------------------------------------------------------------------------


def decide(verdicts: dict[str, bool], current: Reachability) -> Reachability:
    """PUBLIC when at least two servers (one, if only one answered) reached us, and more reached
    us than did not; PRIVATE the other way round; otherwise the status stays."""
    if not verdicts:
        return current
    reached = sum(1 for v in verdicts.values() if v)
    missed = len(verdicts) - reached
    needed = min(2, len(verdicts))
    if reached >= needed and reached > missed:
        return Reachability.PUBLIC
    if missed >= needed and missed > reached:
        return Reachability.PRIVATE
    return current


class ReachabilityMonitor:
    """Runs AutoNAT queries and keeps `book.reachability` up to date."""

    def __init__(self, host: IHost, book: AddressBook, config: ReachabilityConfig,
                 on_change: Callable[[Reachability], Awaitable[None]]) -> None:
        self.host = host
        self.book = book
        self.config = config
        self._on_change = on_change
        self.verdicts: dict[str, bool] = {}
        self.checks = 0
        self.last_check_asked = 0
        self.last_check_unix: float | None = None

    @property
    def status(self) -> Reachability:
        return self.book.reachability

    def servers(self) -> list[ID]:
        peers = sorted(self.host.get_connected_peers(), key=lambda p: p.to_bytes())
        return [p for p in peers
                if _supports(self.host, p, AUTONAT_PROTOCOL_ID) and not _is_relayed(self.host, p)][: self.config.servers]

    async def query(self, server: ID) -> bool | None:
        """True: the server reached us; False: it could not (or none of our addresses is on the
        IP it sees us come from, i.e. we are behind address translation); None: no verdict."""
        addrs = [a.to_bytes() for a in self.book.direct()]
        if not addrs:
            return False
        request = AutoNATMessage()
        request.type = AutoNATMessage.DIAL
        request.dial.peer.id = self.host.get_id().to_bytes()
        request.dial.peer.addrs.extend(addrs)

        async def ask(stream: INetStream) -> AutoNATMessage:
            await stream.write(encode_varint_prefixed(request.SerializeToString()))
            response = AutoNATMessage()
            response.ParseFromString(await read_varint_prefixed_bytes_limited(stream, 64 * 1024))
            return response

        response = await _exchange(self.host, server, AUTONAT_PROTOCOL_ID, self.config.query_timeout_s, ask,
                                   "AutoNAT query")
        if response is None:
            return None
        status = response.dialResponse.status
        if status == AutoNATMessage.OK:
            return True
        if status == AutoNATMessage.E_DIAL_ERROR:
            return False
        if status == AutoNATMessage.E_DIAL_REFUSED and "observed" in response.dialResponse.statusText:
            return False
        return None

    async def check(self) -> Reachability:
        servers = self.servers()
        self.last_check_asked = len(servers)
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(self._query_into, server)
        # Forget servers we no longer talk to (bounded by the connected set).
        connected = {p.to_base58() for p in self.host.get_connected_peers()}
        for key in [k for k in self.verdicts if k not in connected]:
            del self.verdicts[key]
        self.checks += 1
        self.last_check_unix = time.time()
        before = self.book.reachability
        after = decide(self.verdicts, before)
        if after is not before:
            logger.info("reachability: %s -> %s (verdicts %s)", before.value, after.value, self.verdicts)
            self.book.reachability = after
            await self._on_change(after)
        return after

    async def _query_into(self, server: ID) -> None:
        verdict = await self.query(server)
        if verdict is not None:
            self.verdicts[server.to_base58()] = verdict

    async def run(self) -> None:
        await trio.sleep(self.config.first_check_s)
        unanswered_checks = 0
        while True:
            try:
                status = await self.check()
            except Exception:
                logger.exception("reachability check failed")
                status = self.book.reachability
            unanswered_checks = unanswered_checks + 1 if status is Reachability.UNKNOWN and self.last_check_asked else 0
            await trio.sleep(self.retry_delay(status, unanswered_checks))

    def retry_delay(self, status: Reachability, unanswered_checks: int) -> float:
        """Seconds to the next check: `recheck_s` once decided; while unknown `retry_s`, doubled
        for each consecutive check whose servers did not settle it, at most `recheck_s`."""
        if status is not Reachability.UNKNOWN:
            return self.config.recheck_s
        return min(self.config.retry_s * 2 ** min(unanswered_checks, 16), self.config.recheck_s)


# -- relay client ------------------------------------------------------------------------------


class RelayReservations:
    """Holds relay reservations while we are PRIVATE (see the module doc)."""

    def __init__(self, host: IHost, book: AddressBook, config: ReachabilityConfig,
                 on_change: Callable[[], Awaitable[None]]) -> None:
        self.host = host
        self.book = book
        self.config = config
        self._on_change = on_change
        # relay -> unix expiry of our reservation there
        self.reservations: dict[ID, int] = {}
        self.reserved_at: dict[ID, float] = {}
        # relay -> trio time of its last answer
        self.answered_at: dict[ID, float] = {}
        self.failures = 0
        self.relays_lost = 0

    def relays(self) -> list[str]:
        return [p.to_base58() for p in self.reservations]

    async def reserve(self, relay: ID, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """One RESERVE exchange; the expiry (unix seconds) or None when refused or failed."""

        async def ask(stream: INetStream) -> HopMessage:
            await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
            return await read_delimited_msg(stream, HopMessage)

        response = await _exchange(self.host, relay, HOP_PROTOCOL_ID, timeout or self.config.relay_dial_timeout_s,
                                   ask, "reservation")
        if response is None:
            return None
        if response.type != HopMessage.STATUS or response.status != StatusCode.OK or not response.HasField("reservation"):
            logger.info("relay %s refused a reservation (status %s)", relay, response.status)
            return None
        return int(response.reservation.expire)

    async def tick(self) -> None:
        """Drop reservations on relays we lost, renew those near expiry, add new ones."""
        changed = False
        connected = set(self.host.get_connected_peers())
        now = time.time()
        for relay in list(self.reservations):
            if relay not in connected or _is_relayed(self.host, relay) or self.reservations[relay] <= now:
                self._forget(relay)
                changed = True
        if self.book.reachability is not Reachability.PRIVATE:
            if self.reservations:
                for relay in list(self.reservations):
                    self._forget(relay)
                changed = True
        else:
            for relay in list(self.reservations):
                due = trio.current_time() - self.answered_at.get(relay, 0.0) >= self.config.relay_probe_s
                if due or self.reservations[relay] - now < self.config.reservation_renew_margin_s:
                    expiry = await self.reserve(relay, self.config.relay_probe_timeout_s)
                    if expiry is None:
                        logger.info("relay %s stopped answering: dropping it", relay)
                        self._forget(relay)
                        self.relays_lost += 1
                        changed = True
                        # Its connection (and the circuits through it) is dead: close it so
                        # peers reached through it are dialled afresh.
                        with trio.move_on_after(5):
                            try:
                                await self.host.disconnect(relay)
                            except Exception:
                                logger.debug("disconnecting lost relay %s failed", relay, exc_info=True)
                    else:
                        self.reservations[relay] = expiry
                        self.answered_at[relay] = trio.current_time()
            candidates = sorted((p for p in connected if p not in self.reservations
                                 and _supports(self.host, p, HOP_PROTOCOL_ID) and not _is_relayed(self.host, p)),
                                key=lambda p: p.to_bytes())
            for relay in candidates:
                if len(self.reservations) >= self.config.relays_wanted:
                    break
                expiry = await self.reserve(relay)
                if expiry is None:
                    self.failures += 1
                    continue
                self.reservations[relay] = expiry
                self.reserved_at[relay] = time.time()
                self.answered_at[relay] = trio.current_time()
                logger.info("relay reservation on %s (expires in %d s)", relay, expiry - int(now))
                changed = True
        if changed:
            self.book.set_circuits(self._circuit_addrs())
            await self._on_change()

    def _forget(self, relay: ID) -> None:
        self.reservations.pop(relay, None)
        self.reserved_at.pop(relay, None)
        self.answered_at.pop(relay, None)

    def _circuit_addrs(self) -> list[multiaddr.Multiaddr]:
        addrs: list[multiaddr.Multiaddr] = []
        peerstore = self.host.get_peerstore()
        for relay in self.reservations:
            try:
                relay_addrs = [a for a in peerstore.addrs(relay) if not is_circuit(a)]
            except Exception:
                relay_addrs = []
            for addr in relay_addrs[:2]:
                base = str(addr).split("/p2p/", 1)[0]
                addrs.append(multiaddr.Multiaddr(f"{base}/p2p/{relay.to_base58()}/p2p-circuit"))
        return addrs

    async def run(self) -> None:
        await _tick_forever(self.tick, self.config.relay_check_s, "relay reservation upkeep")


async def _exchange(host: IHost, peer: ID, protocol: TProtocol, timeout_s: float,
                    ask: Callable[[INetStream], Awaitable[T]], what: str) -> T | None:
    """One request/response exchange with `peer` on a new stream: `ask`'s answer, or None (logged
    at debug level) when the stream, the exchange or the deadline failed. The stream is closed
    either way."""
    stream = None
    try:
        with trio.fail_after(timeout_s):
            stream = await host.new_stream(peer, [protocol])
            return await ask(stream)
    except Exception as exc:
        logger.debug("%s with %s failed: %r", what, peer, exc)
        return None
    finally:
        if stream is not None:
            await _close_quietly(stream)


async def _close_quietly(stream: INetStream) -> None:
    """Close a finished exchange's stream; the answer is in hand, so a slow or failed close only
    costs the stream (at most 2 s)."""
    with trio.move_on_after(2):
        try:
            await stream.close()
        except Exception:
            pass


async def _tick_forever(tick: Callable[[], Awaitable[None]], interval_s: float, what: str) -> None:
    """Run `tick` every `interval_s` for as long as the task lives; a failed tick is logged and the
    next one runs on time."""
    while True:
        try:
            await tick()
        except Exception:
            logger.exception("%s failed", what)
        await trio.sleep(interval_s)


# -- UPnP ----------------------------------------------------------------------------------------


class UpnpPortMapping:
    """`--upnp`: ask a UPnP router on the LAN to forward our TCP listen ports, announce the mapped
    address (AutoNAT then says whether it works), and remove the mapping on the way out.

    py-libp2p's `UpnpManager` does the talking (miniupnpc, blocking calls in threads). Its own
    `enable_upnp` host option is not used: the host's start is supervised by our own code.
    """

    def __init__(self, host: IHost, book: AddressBook) -> None:
        self.host = host
        self.book = book
        self.mapped: list[multiaddr.Multiaddr] = []
        self.router_found: bool | None = None

    def _ports(self) -> list[int]:
        ports = set()
        for addr in self.host.get_transport_addrs():  # type: ignore[attr-defined]
            try:
                ports.add(int(addr.value_for_protocol("tcp")))
            except Exception:
                continue
        return sorted(ports)

    async def run(self) -> None:
        from libp2p.discovery.upnp.upnp import UpnpManager

        manager = UpnpManager()
        self.router_found = await manager.discover()
        external = manager.get_external_ip() if self.router_found else None
        if not external:
            logger.info("UPnP: no router answered; nothing mapped")
            return
        ports = [p for p in self._ports() if await manager.add_port_mapping(p, "TCP")]
        proto = "ip6" if ":" in external else "ip4"
        self.mapped = [multiaddr.Multiaddr(f"/{proto}/{external}/tcp/{p}") for p in ports]
        logger.info("UPnP: the router forwards %s", ", ".join(str(a) for a in self.mapped) or "nothing")
        self.book.set_mapped(self.mapped)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(deadline=trio.current_time() + 5, shield=True):
                for port in ports:
                    try:
                        await manager.remove_port_mapping(port, "TCP")
                    except Exception:
                        logger.debug("UPnP: removing the mapping of %d failed", port, exc_info=True)


# -- from relayed to direct ---------------------------------------------------------------------


class RelayedConnectionUpgrader:
    """Replaces a relayed connection by a direct one where a direct dial works.

    A public peer that wants us while we are private comes through a relay, and we then count as
    connected to it, so discovery never dials it directly, and a relayed connection cannot carry
    a relay reservation. Dialling it ourselves (outbound, which NAT allows) fixes both; the relayed
    connection is closed once the direct one is up. Peers are retried every `direct_retry_s`.
    """

    def __init__(self, host: IHost, config: ReachabilityConfig) -> None:
        self.host = host
        self.config = config
        self._next_try: dict[ID, float] = {}
        self.upgraded = 0

    async def tick(self) -> None:
        now = trio.current_time()
        connected = set(self.host.get_connected_peers())
        for peer in [p for p in self._next_try if p not in connected]:
            del self._next_try[peer]
        for peer in connected:
            if not _is_relayed(self.host, peer) or self._next_try.get(peer, 0.0) > now:
                continue
            self._next_try[peer] = now + self.config.direct_retry_s
            if await self._dial_direct(peer):
                self.upgraded += 1
                await self.close_relayed(peer)

    async def _dial_direct(self, peer: ID) -> bool:
        try:
            addrs = [a for a in self.host.get_peerstore().addrs(peer) if not is_circuit(a)]
        except Exception:
            return False
        network = self.host.get_network()
        for addr in addrs:
            try:
                with trio.fail_after(self.config.direct_dial_timeout_s):
                    await network.dial_addr(addr, peer)  # type: ignore[attr-defined]
                return True
            except Exception as exc:
                logger.debug("direct dial to relayed peer %s at %s failed: %r", peer, addr, exc)
        return False

    async def close_relayed(self, peer: ID) -> None:
        for conn in list(self.host.get_network().connections.get(peer, []) or []):
            try:
                relayed = any(is_circuit(a) for a in conn.get_transport_addresses())
            except Exception:
                relayed = False
            if relayed:
                with trio.move_on_after(5):
                    try:
                        await conn.close()
                    except Exception:
                        logger.debug("closing a relayed connection to %s failed", peer, exc_info=True)

    async def run(self) -> None:
        await _tick_forever(self.tick, self.config.relay_check_s, "relayed connection upkeep")


# -- dialling through a relay ------------------------------------------------------------------


class RelayDialer:
    """Opens a connection to a peer through one of its `/p2p-circuit` addresses."""

    def __init__(self, host: IHost, stop_protocol: CircuitV2Protocol, config: ReachabilityConfig) -> None:
        self.host = host
        self.config = config
        # STOP only: a dialer must not take a reservation on the relay it passes through.
        self._transport = CircuitV2Transport(host, stop_protocol, RelayConfig(roles=RelayRole.STOP))
        self.dials = 0
        self.failures = 0

    async def dial(self, peer: ID, addrs: Sequence[multiaddr.Multiaddr]) -> bool:
        """Try `addrs`' circuit addresses, through relays we are connected to first; True once
        a relayed connection to `peer` is up."""
        suffix = f"/p2p/{peer.to_base58()}"
        connected = {p.to_base58() for p in self.host.get_connected_peers()}

        def relay_of(addr: multiaddr.Multiaddr) -> str:
            return str(addr).split("/p2p-circuit", 1)[0].rsplit("/p2p/", 1)[-1]

        circuits = sorted((a for a in addrs if is_circuit(a)), key=lambda a: relay_of(a) not in connected)
        for addr in circuits:
            text = str(addr)
            target = multiaddr.Multiaddr(text if text.endswith(suffix) else text + suffix)
            self.dials += 1
            try:
                with trio.fail_after(self.config.relay_dial_timeout_s):
                    await self._transport.dial(target)
                return True
            except Exception as exc:
                self.failures += 1
                logger.debug("relayed dial to %s via %s failed: %r", peer, addr, exc)
        return False
