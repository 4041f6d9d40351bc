"""GossipSub topics for the application: naming, message ids, validation, size and rate limits.

- Topics are named `/p2pnode/<chain_id>/<name>/<version>`, so two chains never
  share a mesh and a message format change gets a new topic.
- The message id is sha256 of the payload (`message_id`): the same bytes published by two peers
  are one message, and ids do not depend on who signed or relayed.
- Each topic has a size limit (default 512 KiB, at most `MAX_TOPIC_MESSAGE_BYTES`, the largest
  block governance may allow). Larger messages are rejected and penalised. py-libp2p's own RPC
  caps (1 MiB in and out, over which it resets the stream or drops silently) follow the largest
  topic limit plus `RPC_ENVELOPE_BYTES` (`max_rpc_bytes`), so a legal block always fits.
- Each (topic, origin) pair gets a token bucket; over it, messages are ignored (not penalised: the
  forwarder is not necessarily the origin). This replaces py-libp2p's spam protection, which
  throttled per *forwarder* at 10 msg/s, the local publisher included.
- The application's guard is pure and synchronous and runs through `protocols.network.run_guard`
  (the rule every adapter shares: an exception is a REJECT, logged once). Its verdict maps to
  libp2p's boolean (ACCEPT -> deliver and relay; IGNORE -> drop; REJECT -> drop and penalise the
  forwarder).
- Our own publishes skip the guard (the publishing service already trusts what it built) and are
  not delivered back to our own handler.
- An accepted message's decoded value goes, with its forwarder, straight from the guard into one
  bounded channel per topic (nothing is cached between validation and delivery), consumed by one
  task that calls the handler in order; a handler exception is logged and the next message is
  handled. A full channel drops the message unrelayed (a later copy is validated again).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2pnode.services.ratelimit import TokenBuckets
from protocols.network import GUARD_FAILED, GossipHandler, GossipValidator, Verdict, run_guard

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024
# The largest message any topic may carry: a block at the largest `max_block_bytes` governance may
# set (4 MiB, `protocols.sync.MAX_BLOCK_BYTES`; a test checks the two agree).
MAX_TOPIC_MESSAGE_BYTES = 4 * 1024 * 1024
# Room around a payload in a pubsub RPC: signature, key, seqno, topic, sender record, framing.
RPC_ENVELOPE_BYTES = 16 * 1024


def max_rpc_bytes(largest_topic_limit: int) -> int:
    """The pubsub RPC size (inbound cap and outbound split size) that carries a message of
    `largest_topic_limit` bytes; never below py-libp2p's 1 MiB default (py-libp2p problem 8)."""
    return max(1024 * 1024, largest_topic_limit + RPC_ENVELOPE_BYTES)

def message_id(msg: rpc_pb2.Message) -> bytes:
    """GossipSub message id: sha256 of the payload (content addressed)."""
    return hashlib.sha256(msg.data).digest()


@dataclass(frozen=True, slots=True)
class GossipConfig:
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval_s: int = 1
    prune_back_off_s: int = 2
    default_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Per (topic, origin) token bucket: sustained rate and burst.
    origin_rate_per_s: float = 50.0
    origin_burst: int = 200
    # Accepted messages waiting for the application handler, per topic.
    delivery_queue_size: int = 1024
    # Per-peer outbound RPC queue (upstream: 32) and when a publisher waits for it to drain.
    outbound_queue_size: int = 512
    publish_backlog_high_water: int = 256
    publish_backlog_wait_s: float = 2.0
    seen_ttl_s: int = 120

    def __post_init__(self) -> None:
        if not 0 < self.default_max_message_bytes <= MAX_TOPIC_MESSAGE_BYTES:
            raise ValueError(f"default_max_message_bytes must be in 1..{MAX_TOPIC_MESSAGE_BYTES}")


@dataclass(slots=True)
class _Topic:
    validator: GossipValidator
    handler: GossipHandler
    max_message_bytes: int
    # (forwarder, guard value) of accepted messages, waiting for the handler.
    accepted_send: trio.MemorySendChannel[tuple[str, object]]
    accepted_receive: trio.MemoryReceiveChannel[tuple[str, object]]


Penaliser = Callable[[str, str], None]


class GossipTopics:
    """The application's topics: turns `GossipValidator`s into libp2p validators and delivers.

    Independent of the host's lifecycle: `libp2p_validator` and `deliver` are wired in by
    `LibP2PNetwork`, which owns the Pubsub instance.
    """

    def __init__(self, local_peer: ID, config: GossipConfig, penalise: Penaliser) -> None:
        self.config = config
        self._local_peer = local_peer
        self._penalise = penalise
        self._topics: dict[str, _Topic] = {}
        self._limits: dict[str, int] = {}
        # Per (topic, origin): the tree's one token-bucket limiter, least recently used evicted.
        self._rate_limiter: TokenBuckets[tuple[str, bytes]] = TokenBuckets(
            config.origin_rate_per_s, config.origin_burst, max_entries=10_000
        )
        self.rejected = 0
        self.delivery_overflows = 0
        self.ignored = 0
        self.validator_errors = 0
        # (topic, verdict) -> messages, for metrics; bounded by the subscribed topics.
        self.verdicts: Counter[tuple[str, str]] = Counter()

    # -- registration ----------------------------------------------------------------------

    def add(
        self, topic: str, validator: GossipValidator, handler: GossipHandler, max_message_bytes: int | None
    ) -> None:
        if topic in self._topics:
            raise ValueError(f"already subscribed to {topic}")
        if max_message_bytes is not None:
            self.set_max_message_bytes(topic, max_message_bytes)
        send, receive = trio.open_memory_channel[tuple[str, object]](self.config.delivery_queue_size)
        self._topics[topic] = _Topic(validator, handler, self.max_message_bytes(topic), send, receive)

    def set_max_message_bytes(self, topic: str, limit: int) -> None:
        if not 0 < limit <= MAX_TOPIC_MESSAGE_BYTES:
            raise ValueError(f"max_message_bytes must be in 1..{MAX_TOPIC_MESSAGE_BYTES}")
        self._limits[topic] = limit
        if topic in self._topics:
            self._topics[topic].max_message_bytes = limit

    def max_message_bytes(self, topic: str) -> int:
        return self._limits.get(topic, self.config.default_max_message_bytes)

    def largest_limit(self) -> int:
        """The largest size limit of any topic (the pubsub RPC caps follow it)."""
        return max([self.config.default_max_message_bytes, *self._limits.values()])

    def topics(self) -> list[str]:
        return list(self._topics)

    def check_publish(self, topic: str, data: bytes) -> None:
        limit = self.max_message_bytes(topic)
        if len(data) > limit:
            raise ValueError(f"{len(data)} byte message is over the {limit} byte limit of {topic}")

    # -- validation ------------------------------------------------------------------------

    def libp2p_validator(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                verdict = self._validate(topic, forwarder, msg)
            except Exception:
                # Our own code failing must not reach libp2p either: ignore, no penalty.
                self.validator_errors += 1
                logger.exception("gossip validation of %s failed", topic)
                verdict = "error"
            if verdict != "own" and topic in self._topics:
                self.verdicts[(topic, verdict)] += 1
            return verdict in ("accept", "own")

        return validate

    def _validate(self, topic_name: str, forwarder: ID, msg: rpc_pb2.Message) -> str:
        """The verdict's name: own, accept, reject, ignore, oversized, rate_limited, overflow, error."""
        if forwarder == self._local_peer:
            return "own"  # our own publish, size-checked in `check_publish`
        topic = self._topics.get(topic_name)
        if topic is None:
            return "ignore"
        forwarder_id = forwarder.to_base58()
        if len(msg.data) > topic.max_message_bytes:
            self.rejected += 1
            self._penalise(forwarder_id, "oversized_message")
            return "oversized"
        if not self._rate_limiter.allow((topic_name, msg.from_id), time.monotonic_ns() // 1_000_000):
            self.ignored += 1
            return "rate_limited"
        checked = run_guard(topic.validator, forwarder_id, msg.data)
        if checked.verdict is Verdict.ACCEPT:
            try:
                topic.accepted_send.send_nowait((forwarder_id, checked.value))
            except trio.WouldBlock:
                self.delivery_overflows += 1
                logger.warning("delivery queue of %s is full; dropping an accepted message", topic_name)
                return "overflow"
            return "accept"
        if checked.verdict is Verdict.REJECT:
            self.rejected += 1
            if checked.reason == GUARD_FAILED:
                self.validator_errors += 1
            self._penalise(forwarder_id, "invalid_message")
            return "reject"
        self.ignored += 1
        return "ignore"

    # -- delivery --------------------------------------------------------------------------

    async def deliver(self, topic_name: str, messages: trio.MemoryReceiveChannel[rpc_pb2.Message]) -> None:
        """Feed the topic's handler with what its guard accepted, until cancelled.

        libp2p's own subscription channel (`messages`) carries the same messages again, raw; it is
        only drained: the guard already handed each accepted value over with its forwarder."""
        topic = self._topics[topic_name]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, messages)
            async for forwarder, value in topic.accepted_receive:
                try:
                    await topic.handler(forwarder, value)
                except Exception:
                    logger.exception("gossip handler for %s raised", topic_name)
            nursery.cancel_scope.cancel()


async def _drain(messages: trio.MemoryReceiveChannel[rpc_pb2.Message]) -> None:
    async for _ in messages:
        pass
