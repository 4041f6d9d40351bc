"""The abstract network the chain services run on: gossip topics plus request/response.

The same services run over libp2p (`p2pnode.net`) and over the in-process simulator
(`p2pnode.testing`). Peers are named by their PeerID string. Payloads are bytes: encoding and
validation belong to the caller.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What gossip validation decided about one message (libp2p's accept / ignore / reject)."""

    ACCEPT = "accept"  # deliver and relay
    IGNORE = "ignore"  # drop silently, no penalty (duplicate, stale, not yet verifiable)
    REJECT = "reject"  # drop and penalise the forwarding peer (invalid)


class RequestError(Exception):
    """A request/response exchange failed: timeout, refused, stream reset, or oversized reply."""


class RequestTimeout(RequestError):
    """No answer within the timeout: the request may still have arrived (a slow or busy peer)."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A gossip guard's answer: the verdict, the decoded object to deliver (ACCEPT only), and a
    snake_case reason for a refusal."""

    verdict: Verdict
    value: Any = None
    reason: str = ""


# A gossip guard gets (forwarding peer id, payload) and returns a `Checked` (or a bare `Verdict`,
# in which case an accepted message is delivered as its payload bytes).
GossipValidator = Callable[[str, bytes], "Checked | Verdict"]
GossipGuard = GossipValidator
# A gossip handler is called for every accepted message: (forwarding peer id, the guard's value).
GossipHandler = Callable[[str, Any], Awaitable[None]]

GUARD_FAILED = "guard_failed"
_logged_failures: set[tuple[str, str]] = set()


def run_guard(guard: GossipGuard, peer_id: str, data: bytes) -> Checked:
    """Call a gossip guard under the one rule every network adapter applies: an exception is a
    REJECT (the forwarder is penalised like for any invalid message), logged with its traceback
    once per (guard, exception type) and counted by the reason `guard_failed`, never raised."""
    try:
        result = guard(peer_id, data)
    except Exception as exc:
        key = (getattr(guard, "__qualname__", repr(guard)), type(exc).__name__)
        if key not in _logged_failures and len(_logged_failures) < 1024:
            _logged_failures.add(key)
            log.exception("gossip guard %s raised; rejecting (logged once per exception type)", key[0])
        return Checked(Verdict.REJECT, reason=GUARD_FAILED)
    if isinstance(result, Checked):
        return result
    if result is Verdict.ACCEPT:
        return Checked(Verdict.ACCEPT, data)
    if isinstance(result, Verdict):
        return Checked(result)
    log.error("gossip guard %r returned %r, not a verdict; rejecting", guard, type(result).__name__)
    return Checked(Verdict.REJECT, reason=GUARD_FAILED)
# A request handler answers (requesting peer id, request bytes) with response bytes.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class NetworkAPI(Protocol):
    """What a node's services need from the network, and nothing more."""

    @property
    def peer_id(self) -> str: ...

    def connected_peers(self) -> list[str]: ...

    def subscribe(self, topic: str, validator: GossipValidator, handler: GossipHandler) -> None:
        """Receive messages on `topic`; `validator` runs (through `run_guard`) before delivery and
        relay, and `handler` gets the value of every accepted message."""

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` to the topic (best effort: callers must not depend on delivery)."""

    def set_topic_max_bytes(self, topic: str, limit: int) -> None:
        """Messages on `topic` may be up to `limit` bytes (the blocks topic follows `max_block_bytes`)."""

    def set_request_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        """Serve a request/response protocol; a handler that raises closes only its stream."""

    async def request(
        self, peer_id: str, protocol_id: str, data: bytes, *, timeout: float, max_response_bytes: int  # noqa: ASYNC109
    ) -> bytes:
        """Send one request and wait for its response; raises `RequestError`."""

    def penalise(self, peer_id: str, reason: str, amount: float) -> None:
        """Lower a peer's score for misbehaviour seen by the application (bad block, bad reply)."""
