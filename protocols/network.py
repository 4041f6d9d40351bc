"""The abstract network the chain services run on: gossip topics plus request/response.

The same services run over libp2p (`p2pnode.net`) and over the in-process simulator
(`p2pnode.testing`). Peers are named by their PeerID string. Payloads are bytes: encoding and
validation belong to the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Protocol


class Verdict(enum.Enum):
    """What gossip validation decided about one message (libp2p's accept / ignore / reject)."""

    ACCEPT = "accept"  # deliver and relay
    IGNORE = "ignore"  # drop silently, no penalty (duplicate, stale, not yet verifiable)
    REJECT = "reject"  # drop and penalise the forwarding peer (invalid)


class RequestError(Exception):
    """A request/response exchange failed: timeout, refused, stream reset, or oversized reply."""


# A gossip validator gets (forwarding peer id, payload) and returns a verdict; it must not raise.
GossipValidator = Callable[[str, bytes], Verdict]
# A gossip handler is called for every accepted message: (forwarding peer id, payload).
GossipHandler = Callable[[str, bytes], Awaitable[None]]
# A request handler answers (requesting peer id, request bytes) with response bytes.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class NetworkAPI(Protocol):
    """What a node's services need from the network, and nothing more."""

    @property
    def peer_id(self) -> str: ...

    def connected_peers(self) -> list[str]: ...

    def subscribe(self, topic: str, validator: GossipValidator, handler: GossipHandler) -> None:
        """Receive messages on `topic`; `validator` runs before delivery and relay."""

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` to the topic (best effort: callers must not depend on delivery)."""

    def set_request_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        """Serve a request/response protocol; a handler that raises closes only its stream."""

    async def request(
        self, peer_id: str, protocol_id: str, data: bytes, *, timeout: float, max_response_bytes: int
    ) -> bytes:
        """Send one request and wait for its response; raises `RequestError`."""

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        """Lower a peer's score for misbehaviour seen by the application (bad block, bad reply)."""
