"""Circuit Relay v2 hop service with the limits py-libp2p 0.8.1's `CircuitV2Protocol` lacks.

Upstream problems (read in its `protocol.py` / `resources.py`, attacked in
tests/adversarial/test_relay_abuse.py):

1. **Reservations for someone else.** A RESERVE message's optional `peer` field is honoured, so
   any connected peer can take reservations in the name of arbitrary PeerIDs: one peer fills every
   slot. Here the field is ignored; a reservation is always for the peer on the connection.
2. **Slots held by peers long gone.** The slot count includes reservations of peers that
   disconnected (until their TTL, an hour), so churn or a sybil burst exhausts the relay. Here
   reservations of disconnected peers are dropped before counting.
3. **No per-address cap.** Here at most `max_reservations_per_ip` live reservations share one IP.
4. **No rate limit on relayed bytes** (only a total per circuit, and a duration). Here each
   direction of a circuit is paced to `max_circuit_bytes_per_s`; the total (`max_circuit_bytes`)
   and duration caps are upstream's, which reset the circuit when exceeded.
6. **A circuit half-ended stays open.** When one direction stops (a limit hit, a reset), the
   other stays blocked on a read of the stream just reset: the slot stays taken and both ends
   keep a dead connection. Here the end of either direction ends the circuit.
5. **Unbounded circuits per source.** A peer may open circuits through us without a reservation
   (that is how dialers reach NATed peers); here each source has at most
   `max_circuits_per_source` open, and the relay `max_circuits_total`. CONNECT to a peer without
   a reservation is refused upstream (NO_RESERVATION), so circuits to arbitrary peers are not
   possible.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.utils import write_delimited_msg

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayServiceLimits:
    max_reservations: int = 64
    max_reservations_per_ip: int = 4
    reservation_ttl_s: int = 3600
    # Per circuit: open at most this long, carry at most this many bytes (both directions), and
    # at most this many bytes per second in each direction.
    max_circuit_duration_s: int = 600
    max_circuit_bytes: int = 64 * 1024 * 1024
    max_circuit_bytes_per_s: int = 1024 * 1024
    # Circuits that may end at one reserved peer, start at one source, and in all.
    max_circuits_per_destination: int = 8
    max_circuits_per_source: int = 4
    max_circuits_total: int = 64

    def upstream(self) -> RelayLimits:
        return RelayLimits(duration=self.max_circuit_duration_s, data=self.max_circuit_bytes,
                           max_circuit_conns=self.max_circuits_per_destination,
                           max_reservations=self.max_reservations, reservation_ttl=self.reservation_ttl_s)


class _PacedStream:
    """Writes through to `stream` no faster than `bytes_per_s` (a token bucket of one second)."""

    def __init__(self, stream: INetStream, bytes_per_s: int) -> None:
        self._stream = stream
        self._rate = bytes_per_s
        self._allowance = float(bytes_per_s)
        self._last = trio.current_time()

    async def write(self, data: bytes) -> None:
        now = trio.current_time()
        self._allowance = min(float(self._rate), self._allowance + (now - self._last) * self._rate)
        self._last = now
        self._allowance -= len(data)
        if self._allowance < 0:
            await trio.sleep(-self._allowance / self._rate)
        await self._stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _remote_ip(host: IHost, peer: ID) -> str | None:
    for conn in host.get_network().connections.get(peer, []) or []:
        try:
            for addr in conn.get_transport_addresses():
                for proto in ("ip4", "ip6"):
                    try:
                        return str(ipaddress.ip_address(addr.value_for_protocol(proto)))
                    except Exception:
                        continue
        except Exception:
            continue
    return None


class LimitedRelay(CircuitV2Protocol):
    """A relay (hop + stop) with the fixes listed in the module doc."""

    def __init__(self, host: IHost, limits: RelayServiceLimits) -> None:
        super().__init__(host, limits=limits.upstream(), allow_hop=True)
        self.service_limits = limits
        self._circuits_by_source: dict[ID, int] = {}
        # The cancel scopes of the two relaying directions of each open circuit.
        self._directions: dict[frozenset[int], list[trio.CancelScope]] = {}
        self.refused_reservations = 0
        self.refused_circuits = 0

    # -- reservations --------------------------------------------------------------------------

    def live_reservations(self) -> dict[ID, Any]:
        """Reservations of peers still connected (others are dropped: problem 2)."""
        manager = self.resource_manager
        manager._clean_expired()
        connected = self.host.get_network().connections
        for peer in [p for p in manager._reservations if not connected.get(p)]:
            del manager._reservations[peer]
        return dict(manager._reservations)

    async def _handle_reserve(self, stream: INetStream, msg: HopMessage) -> None:
        msg.ClearField("peer")  # problem 1: always the connection's own peer
        peer = stream.muxed_conn.peer_id
        live = self.live_reservations()
        if peer not in live:
            ip = _remote_ip(self.host, peer)
            same_ip = sum(1 for p in live if ip is not None and _remote_ip(self.host, p) == ip)
            if len(live) >= self.service_limits.max_reservations or same_ip >= self.service_limits.max_reservations_per_ip:
                self.refused_reservations += 1
                await write_delimited_msg(stream, HopMessage(
                    type=HopMessage.STATUS, status=to_proto_status(StatusCode.RESOURCE_LIMIT_EXCEEDED)))
                return
        await super()._handle_reserve(stream, msg)

    # -- circuits ------------------------------------------------------------------------------

    async def _handle_connect(self, stream: INetStream, msg: HopMessage) -> None:
        source = stream.muxed_conn.peer_id
        open_here = self._circuits_by_source.get(source, 0)
        if (open_here >= self.service_limits.max_circuits_per_source
                or sum(self._circuits_by_source.values()) >= self.service_limits.max_circuits_total):
            self.refused_circuits += 1
            await self._send_status(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, "too many circuits")
            # As upstream does for its refusals: a moment to read the status before the reset.
            await trio.sleep(0.5)
            await stream.reset()
            return
        self._circuits_by_source[source] = open_here + 1
        try:
            await super()._handle_connect(stream, msg)
        finally:
            left = self._circuits_by_source.get(source, 1) - 1
            if left > 0:
                self._circuits_by_source[source] = left
            else:
                self._circuits_by_source.pop(source, None)

    async def _relay_data(self, src_stream: INetStream, dst_stream: INetStream, peer_id: ID,
                          deadline: float | None = None, circuit_data_limit: list[int] | None = None) -> None:
        # Problem 6: when one direction stops (a limit hit, a reset), upstream leaves the other
        # blocked on a read of the stream it just reset, so the circuit and its slot stay held
        # and both ends keep a dead connection. Here the end of either direction ends both.
        circuit = frozenset((id(src_stream), id(dst_stream)))
        directions = self._directions.setdefault(circuit, [])
        with trio.CancelScope() as scope:
            directions.append(scope)
            try:
                paced = _PacedStream(dst_stream, self.service_limits.max_circuit_bytes_per_s)
                await super()._relay_data(src_stream, paced, peer_id, deadline, circuit_data_limit)  # type: ignore[arg-type]
            finally:
                directions.remove(scope)
        for other in directions:
            other.cancel()
        if not directions:
            self._directions.pop(circuit, None)
        with trio.CancelScope(deadline=trio.current_time() + 2, shield=True):
            for stream in (src_stream, dst_stream):
                try:
                    await stream.reset()
                except Exception:
                    pass

    def open_circuits(self) -> int:
        return sum(self._circuits_by_source.values())
