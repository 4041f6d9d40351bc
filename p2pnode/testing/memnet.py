"""An in-memory `NetworkAPI` for tests and simulations: peers in one trio process, no sockets.

    hub = MemoryHub()
    miner_net = hub.add_peer("miner-peer-id")
    caller_net = hub.add_peer("caller-peer-id")
    miner_net.set_request_handler(PROTO, handler, max_request_bytes=1024)
    reply = await caller_net.request("miner-peer-id", PROTO, b"...", timeout=1, max_response_bytes=1024)

Request/response follows the libp2p implementation's contract: a refused, failed, timed-out or
oversized exchange raises `RequestError`. The handler runs in the caller's task, inside the
caller's timeout, so a caller giving up cancels the handler (as a reset stream would). Gossip is
delivered to every other live subscriber, through its guard (`run_guard`), inside `publish`; a
REJECT is recorded as a penalty by the receiver.
`kill(peer_id)` takes a peer off the hub: requests to it fail, as to a crashed process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import trio

from protocols.network import (
    GossipHandler,
    GossipValidator,
    RequestError,
    RequestHandler,
    RequestTimeout,
    Verdict,
    run_guard,
)

REJECT_PENALTY = 10.0


@dataclass
class _Served:
    handler: RequestHandler
    max_request_bytes: int


class MemoryHub:
    """The shared medium: peers by id."""

    def __init__(self) -> None:
        self.peers: dict[str, MemoryNetwork] = {}

    def add_peer(self, peer_id: str) -> MemoryNetwork:
        if peer_id in self.peers:
            raise ValueError(f"peer {peer_id!r} is already on the hub")
        network = MemoryNetwork(self, peer_id)
        self.peers[peer_id] = network
        return network

    def kill(self, peer_id: str) -> None:
        """Take a peer off the hub: it answers nothing and receives no gossip from now on."""
        self.peers.pop(peer_id, None)


@dataclass
class MemoryNetwork:
    """One peer's view of a `MemoryHub` (implements `protocols.network.NetworkAPI`)."""

    hub: MemoryHub
    _peer_id: str
    handlers: dict[str, _Served] = field(default_factory=dict)
    topics: dict[str, tuple[GossipValidator, GossipHandler]] = field(default_factory=dict)
    penalties: list[tuple[str, str, float]] = field(default_factory=list)
    requests_sent: Counter[str] = field(default_factory=Counter)  # by protocol id
    requests_served: Counter[str] = field(default_factory=Counter)

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def connected_peers(self) -> list[str]:
        return sorted(p for p in self.hub.peers if p != self._peer_id)

    def subscribe(self, topic: str, validator: GossipValidator, handler: GossipHandler) -> None:
        self.topics[topic] = (validator, handler)

    def set_topic_max_bytes(self, topic: str, limit: int) -> None:
        pass  # in-process delivery has no transport limit

    async def publish(self, topic: str, data: bytes) -> None:
        for peer_id in self.connected_peers():
            peer = self.hub.peers.get(peer_id)
            if peer is None or topic not in peer.topics:
                continue
            validator, handler = peer.topics[topic]
            checked = run_guard(validator, self._peer_id, data)
            if checked.verdict is Verdict.ACCEPT:
                await handler(self._peer_id, checked.value)
            elif checked.verdict is Verdict.REJECT:
                peer.penalise(self._peer_id, checked.reason or "invalid_message", REJECT_PENALTY)

    def set_request_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        self.handlers[protocol_id] = _Served(handler, max_request_bytes)

    async def request(
        self,
        peer_id: str,
        protocol_id: str,
        data: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (the NetworkAPI signature)
        max_response_bytes: int,
    ) -> bytes:
        self.requests_sent[protocol_id] += 1
        target = self.hub.peers.get(peer_id)
        if target is None:
            raise RequestError(f"cannot reach {peer_id}")
        served = target.handlers.get(protocol_id)
        if served is None:
            raise RequestError(f"{peer_id} does not serve {protocol_id}")
        if len(data) > served.max_request_bytes:
            raise RequestError(f"INVALID_REQUEST: request of {len(data)} bytes over the peer's limit")
        target.requests_served[protocol_id] += 1
        with trio.move_on_after(timeout):
            try:
                reply = await served.handler(self._peer_id, data)
            except Exception as exc:  # a failing handler closes only its own exchange
                raise RequestError(f"SERVER_ERROR: handler failed ({type(exc).__name__})") from None
            if self.hub.peers.get(peer_id) is not target:
                raise RequestError(f"{peer_id} went away mid-request")
            if len(reply) > max_response_bytes:
                raise RequestError(f"response of {len(reply)} bytes over the {max_response_bytes} byte limit")
            return reply
        raise RequestTimeout(f"request to {peer_id} timed out after {timeout} s")

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        self.penalties.append((peer_id, reason, amount))
