"""Hardening for py-libp2p 0.8.1: one place for every setting and patch its defaults need.

Each item names the upstream problem it addresses (numbers refer to the list "py-libp2p 0.8.1: what
we work around" in docs/networking.md, where each is described). Everything here is either a construction
option or a change scoped to one host / pubsub instance, except `install_signed_record_caches`,
which swaps module-level helpers in libp2p for faster ones with the same results (idempotent,
process-wide).

| problem (0.8.1)                                                      | fix here                               |
| -------------------------------------------------------------------- | -------------------------------------- |
| #1-2 an exception in any stream handler kills the host, or           | `install_stream_handler_guard`         |
|   (StreamEOF & co.) silently ends the connection's accept loop        |                                        |
| #10 default security accepts /plaintext/2.0.0 (and secio, TLS)       | `noise_only_security`                  |
| #9 mplex breaks on 1 MB payloads                                     | `yamux_only_muxer`                     |
| #4 adaptive gossip turns a 1 s heartbeat into 60 s                   | `HardenedGossipSub` (adaptive off)     |
| #5 IHAVE never sent to peers in PRUNE back-off (60 s)                | `HardenedGossipSub` (2 s back-off)     |
| #6 GRAFT-flood detector fires on the remote's own PRUNE              | `HardenedGossipSub` (detector off)     |
| #7 spam protection caps every peer incl. ourselves at 10 msg/s       | off; per-origin limit in `gossip.py`   |
| mcache keys messages by from+seqno while the seen-cache uses the      | `HardenedGossipSub` (mcache keyed by   |
|   configured message id, so every IHAVE is answered with IWANT        |   the pubsub message id)               |
| IDONTWANT sent to every mesh peer for every message (doubles RPCs)    | only for messages >= 16 KiB            |
| validation cache remembers failures: an IGNOREd message is dropped    | `SuccessOnlyValidationCache`           |
|   for 5 min even once it becomes valid, and re-forwarders go unscored |                                        |
| #8 per-peer outbound queue of 32 RPCs drops bursts silently          | `enlarge_outbound_queues`              |
| #25 every copy of a message (D-1 per message) gets its own task before| `drop_seen_copies_early`               |
|   the seen-cache check that discards it                               |                                        |
| #8 subscription queue of 32 drops with a warning                     | `replace_subscription_queue`           |
| #11 `host.get_addrs()` + a fresh signed record check per RPC,        | `install_cpu_fixes` (process-wide)     |
|   varint prefixes read one byte per await, one yamux WINDOW_UPDATE    |                                        |
|   frame per read                                                      |                                        |
| #12 one spurious kad WARNING per DHT query                           | `configure_libp2p_logging`             |
| #14 pubsub `_teardown_if_connected` raises KeyError at `del self.peers`| `fix_pubsub_teardown_race`             |
|   when the peer is torn down twice (ban racing a disconnect)          |                                        |
| #15 a topic joined while a new peer's pubsub stream opens is announced| `fix_pubsub_subscription_race`         |
|   to that peer neither in the hello packet nor afterwards             |                                        |
| #16 any exception in a library service task (pubsub, gossipsub, DHT, | `supervised_trio_service`,             |
|   swarm/muxer) cancels the whole service and so ends `host.run()`    |   `supervised_host_run`                |
| #22 opportunistic grafting every heartbeat (scores all 0): mesh churn | `HardenedGossipSub` (never)            |
| #23 a service scans all its tasks to find a new task's parent        | `install_cpu_fixes` (task index)       |
| #26 yamux credits the receive window on every other read (a WINDOW_  | `install_cpu_fixes` (half-window       |
|   UPDATE frame per 2 messages received), not at half-window          |   credit, go-yamux's rule)             |
| #27 Noise reads a frame's 2-byte length and its body with a `recv`    | `install_cpu_fixes` (TCP read-ahead)   |
|   each (plus a lock and usually a wait for the socket)               |                                        |
| #29 yamux takes two locks that exclude nothing and a checkpoint more | `install_cpu_fixes` (lean yamux write, |
|   per frame written, and formats debug lines with DEBUG off           |   `_write_frame`, `read_stream`)       |
| yamux buffers what a peer sends past a stream's receive window (a   | `install_yamux_window_limits`          |
|   warning only): a stream not being read grows without bound        |   (process-wide)                       |
"""

from __future__ import annotations

import logging
import struct
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TMuxerOptions, TProtocol, TSecurityOptions
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError, MessageTooLarge
from libp2p.io.trio import TrioTCPStream
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub as gossipsub_module
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub, ValidationCache, ValidationResult
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamError, MuxedStreamReset
from libp2p.stream_muxer.yamux import yamux as yamux_module
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service import TrioManager
from libp2p.tools.anyio_service.trio_tasks import FunctionTask

from p2pnode.net import libp2p_supervision

logger = logging.getLogger(__name__)

StreamHandler = Callable[[INetStream], Awaitable[None]]

# Supervision of the library's service tasks (#16) has its own module; its entry points are named
# here too, so that this module stays the one place every workaround is found.
SERVICE_FAILURES = libp2p_supervision.SERVICE_FAILURES
make_pubsub_restartable = libp2p_supervision.make_pubsub_restartable
supervised_trio_service = libp2p_supervision.supervised_trio_service
supervised_host_run = libp2p_supervision.supervised_host_run

# Exceptions that mean "the remote went away mid-stream": normal churn, logged at DEBUG.
_REMOTE_CLOSED_ERRORS = (StreamError, IncompleteReadError, EOFError, ConnectionError)


# -- logging -----------------------------------------------------------------------------------


def configure_libp2p_logging() -> None:
    """libp2p at WARNING and its DHT at ERROR (one spurious warning per DHT query, py-libp2p problem 12).

    Only loggers nobody configured yet are touched, so an operator's explicit choice wins.
    """
    for name, level in (("libp2p", logging.WARNING), ("libp2p.kad_dht", logging.ERROR)):
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(level)


# -- security and muxing -----------------------------------------------------------------------


def noise_only_security(key_pair: KeyPair) -> TSecurityOptions:
    """Noise and nothing else: the default set also offers plaintext, secio and TLS (py-libp2p problem 10)."""
    noise_static_key = create_x25519_key_pair()
    return {NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_static_key.private_key)}


def yamux_only_muxer() -> TMuxerOptions:
    """Yamux only: mplex, the default fallback, failed a 1 MB response (py-libp2p problem 9)."""
    return {TProtocol(YAMUX_PROTOCOL_ID): Yamux}


# -- stream handler guard ----------------------------------------------------------------------


class HandlerGuardStats:
    """Counts what the guard caught, per protocol (exposed for status APIs and tests)."""

    def __init__(self) -> None:
        self.caught: dict[str, int] = {}

    def record(self, protocol: str) -> None:
        self.caught[protocol] = self.caught.get(protocol, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.caught.values())


def _guard(protocol: str, handler: StreamHandler, stats: HandlerGuardStats) -> StreamHandler:
    if getattr(handler, "_p2pnode_guarded", False):
        return handler

    async def guarded(stream: INetStream) -> None:
        try:
            await handler(stream)
        # Exception, not BaseException: trio.Cancelled must keep unwinding the nursery.
        except Exception as exc:
            stats.record(protocol)
            peer = _remote_peer(stream)
            if isinstance(exc, _REMOTE_CLOSED_ERRORS):
                logger.debug("stream handler %s: remote %s closed early: %r", protocol, peer, exc)
            else:
                logger.warning("stream handler %s failed for peer %s: %r", protocol, peer, exc)
                logger.debug("stream handler failure detail", exc_info=True)
            try:
                await stream.reset()
            except Exception:
                logger.debug("reset after handler failure failed", exc_info=True)

    guarded._p2pnode_guarded = True  # type: ignore[attr-defined]
    return guarded


def _remote_peer(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)
    except Exception:
        return "?"


def install_stream_handler_guard(host: IHost) -> HandlerGuardStats:
    """Guard every stream handler of `host`, now and whenever one is registered later (py-libp2p problems 1-2).

    Without it, any exception escaping a handler (one malformed gossipsub frame raises protobuf's
    DecodeError) propagates into the swarm and ends `host.run()`; an exception that looks like a
    connection shutdown instead ends that connection's stream-accept loop and leaves a zombie
    connection. The guard catches `Exception`, logs it, and resets only that stream.

    Three layers: existing handlers are wrapped; `add_handler` on this host's multiselect is
    wrapped so later registrations are guarded too (re-applied automatically); and the swarm's
    common handler (protocol negotiation plus dispatch) gets the same guard as a backstop.
    Idempotent.
    """
    existing = getattr(host, "_p2pnode_guard_stats", None)
    if isinstance(existing, HandlerGuardStats):
        return existing
    stats = HandlerGuardStats()
    mux = host.get_mux()
    for protocol, handler in list(mux.handlers.items()):
        if handler is not None:
            mux.handlers[protocol] = _guard(str(protocol), handler, stats)
    original_add_handler = mux.add_handler

    def add_guarded_handler(protocol: TProtocol | None, handler: StreamHandler | None) -> None:
        original_add_handler(protocol, None if handler is None else _guard(str(protocol), handler, stats))

    mux.add_handler = add_guarded_handler  # type: ignore[method-assign]
    network = host.get_network()
    swarm_handler = getattr(network, "common_stream_handler", None)
    if swarm_handler is not None:
        network.set_stream_handler(_guard("<negotiation>", swarm_handler, stats))
    host._p2pnode_guard_stats = stats  # type: ignore[attr-defined]
    return stats


# -- library service supervision ---------------------------------------------------------------


def fix_pubsub_teardown_race(pubsub: Pubsub) -> None:
    """Make `Pubsub._teardown_if_connected` safe when the peer is torn down twice.

    Upstream reads `self.peers[peer_id]`, awaits `stream.reset()`, then `del self.peers[peer_id]`.
    Banning a peer (`add_to_blacklist`) while its connection closes lets `_handle_dead_peer` remove
    the entry during that await; the `del` then raises KeyError, which cancels the whole Pubsub
    service and with it `host.run()`. Here the entry is dropped only if it is still the stream we
    reset, and a missing entry is what we wanted anyway.
    """

    async def teardown_if_connected(peer_id: ID) -> None:
        stream = pubsub.peers.get(peer_id)
        if stream is not None:
            try:
                await stream.reset()
            except Exception:
                logger.debug("resetting the pubsub stream of %s failed", peer_id, exc_info=True)
            if pubsub.peers.get(peer_id) is stream:
                del pubsub.peers[peer_id]
        pubsub._forget_all_subscriptions(peer_id)

    pubsub._teardown_if_connected = teardown_if_connected  # type: ignore[method-assign]


def fix_pubsub_subscription_race(pubsub: Pubsub) -> None:
    """Re-announce our subscriptions to a new peer if they changed while its stream opened.

    `_handle_new_peer` builds the hello packet (our topics), awaits the write, and only then adds
    the peer to `peers`; `subscribe` announces a new topic only to peers already in `peers`. A
    topic joined in between reaches the new peer neither way, so it never learns we subscribe
    and never sends us that topic (seen when a node dials its bootstrap peer while joining topics).
    """
    original = pubsub._handle_new_peer

    async def handle_new_peer(peer_id: ID) -> None:
        topics_before = set(pubsub.topic_ids)
        await original(peer_id)
        queue = pubsub.peer_queues.get(peer_id)
        topics_now = set(pubsub.topic_ids)
        if queue is None or topics_now == topics_before:
            return
        packet = rpc_pb2.RPC()
        for topic in sorted(topics_now):
            packet.subscriptions.append(rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic))
        for topic in sorted(topics_before - topics_now):
            packet.subscriptions.append(rpc_pb2.RPC.SubOpts(subscribe=False, topicid=topic))
        queue.push(packet, priority=True)

    pubsub._handle_new_peer = handle_new_peer  # type: ignore[method-assign]


# -- GossipSub ---------------------------------------------------------------------------------


class _PubsubIdMessageCache(MessageCache):
    """The gossip message cache keyed by the pubsub's message id (sha256 of the payload).

    Upstream keys it by from_id+seqno while the seen-cache and IWANT lookups use the configured
    message id, so with content ids a peer never recognises an IHAVE id as seen and asks for
    every advertised message again.
    """

    def __init__(self, router: GossipSub, window_size: int, history_size: int) -> None:
        super().__init__(window_size, history_size)
        self._router = router

    def put(self, msg: rpc_pb2.Message) -> None:
        pubsub = self._router.pubsub
        mid = pubsub.get_message_id(msg) if pubsub is not None else msg.from_id + msg.seqno
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class HardenedGossipSub(GossipSub):
    """GossipSub with the settings and fixes the notes validated (py-libp2p problems 4-7), see the module table."""

    def __init__(
        self,
        *,
        degree: int = 6,
        degree_low: int = 4,
        degree_high: int = 12,
        heartbeat_interval: int = 1,
        prune_back_off: int = 2,
        gossip_window: int = 3,
        gossip_history: int = 5,
        idontwant_min_bytes: int = 16 * 1024,
    ) -> None:
        super().__init__(
            # meshsub 1.2 (IDONTWANT) then 1.1; 1.3+ add extension machinery we do not use.
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=degree,
            degree_low=degree_low,
            degree_high=degree_high,
            heartbeat_interval=heartbeat_interval,
            prune_back_off=prune_back_off,
            unsubscribe_back_off=prune_back_off,
            gossip_window=gossip_window,
            gossip_history=gossip_history,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
        )
        # Upstream compares the GRAFT time with when the *remote* pruned us (py-libp2p problem 6).
        self.graft_flood_threshold = 0.0
        self.idontwant_min_bytes = idontwant_min_bytes
        self.mcache = _PubsubIdMessageCache(self, gossip_window, gossip_history)

    def _adapt_heartbeat_parameters(self, health: float) -> None:
        # Never stretch the heartbeat (py-libp2p problem 4), even if adaptive gossip gets switched back on.
        self.heartbeat_interval = self.heartbeat_interval_base

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: Any) -> int:
        # py-libp2p problem 22. Upstream grafts 2 more peers every heartbeat whenever their score reaches the mesh's
        # median; with the router's scores all 0 (we score peers ourselves) that is every peer,
        # every second. Above D_hi peers the next heartbeat prunes them again, the pruned peers
        # GRAFT back inside their back-off and are refused: constant churn, and a mesh of every
        # peer below D_hi (more duplicates per message). go-libp2p grafts opportunistically only
        # once a minute and only when the mesh's median score is low; without scores, never.
        return 0

    async def _maintain_mesh_quality(self, topic: str) -> None:
        # py-libp2p problem 22 again: every heartbeat and topic, upstream scores every mesh and
        # candidate peer to swap the worst for a better one. Our peers are scored by the
        # application, not by GossipSub, so this only costs CPU (and churns on colocation noise).
        return

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Iterable[str]) -> None:
        # IDONTWANT saves bandwidth for big messages only; for small ones it doubles the RPCs.
        msg = self.mcache.get(msg_id)
        if msg is None or len(msg.data) < self.idontwant_min_bytes:
            return
        await super()._emit_idontwant_for_message(msg_id, topic_ids)


class SuccessOnlyValidationCache(ValidationCache):
    """Remember only successful validations.

    Upstream caches failures for 5 minutes: a message our validator IGNOREd (not yet verifiable,
    rate limited) would be dropped even once valid, and every further forwarder of an invalid
    message would skip our validator and so escape our penalty.
    """

    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        if result.is_valid:
            super().put(msg_id, result)


class _SizedQueueDict(dict[ID, RpcQueue]):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.max_rpc_bytes: int | None = None

    def __setitem__(self, peer_id: ID, queue: RpcQueue) -> None:
        queue._queue.max_size = self.capacity
        if self.max_rpc_bytes is not None:
            queue.max_message_size = self.max_rpc_bytes
        super().__setitem__(peer_id, queue)


def enlarge_outbound_queues(pubsub: Pubsub, capacity: int) -> None:
    """Per-peer outbound RPC queues of `capacity` instead of 32 (drops are silent, py-libp2p problem 8)."""
    queues = _SizedQueueDict(capacity)
    for peer_id, queue in pubsub.peer_queues.items():
        queues[peer_id] = queue
    pubsub.peer_queues = queues


def drop_seen_copies_early(pubsub: Pubsub) -> None:
    """Discard a copy of an already-seen message in the stream reader, before a task is started for it.

    Upstream starts a `push_msg` task for every message of every incoming RPC (py-libp2p problem
    25); with a mesh of D peers each message arrives about D times, and every copy after the first
    only reaches `push_msg`'s seen-cache check and returns. The reader asks `_is_subscribed_to_msg`
    synchronously just before starting the task (its only caller), so the seen check is added
    there: the same outcome (a seen copy is dropped, unscored, whoever sent it), without the task.
    A copy that arrives while the first is still being validated is not seen yet and goes through
    as before.
    """
    is_subscribed = pubsub._is_subscribed_to_msg

    def subscribed_and_unseen(msg: rpc_pb2.Message) -> bool:
        return is_subscribed(msg) and not pubsub._is_msg_seen(msg)

    pubsub._is_subscribed_to_msg = subscribed_and_unseen  # type: ignore[method-assign]


def set_pubsub_rpc_limit(pubsub: Pubsub, max_rpc_bytes: int) -> None:
    """Pubsub RPCs of up to `max_rpc_bytes`, both ways (upstream: 1 MiB).

    Upstream resets the stream of a peer whose RPC frame is over `max_inbound_rpc_size`, and
    silently drops an outgoing message that does not fit one RPC of the queue's
    `max_message_size`: a legal block over 1 MiB would never leave its builder. Both are read per
    frame / per send, so raising them on a running pubsub takes effect at once. Call after
    `enlarge_outbound_queues` so queues of peers that connect later get the limit too.
    """
    pubsub.max_inbound_rpc_size = max_rpc_bytes
    queues = pubsub.peer_queues
    if isinstance(queues, _SizedQueueDict):
        queues.max_rpc_bytes = max_rpc_bytes
    for queue in queues.values():
        queue.max_message_size = max_rpc_bytes


def outbound_backlog(pubsub: Pubsub) -> int:
    """The longest per-peer outbound queue, in RPCs (for publisher back-pressure)."""
    return max((len(q) for q in pubsub.peer_queues.values()), default=0)


def replace_subscription_queue(
    pubsub: Pubsub, topic: str, capacity: int
) -> trio.MemoryReceiveChannel[rpc_pb2.Message]:
    """Swap the 32-slot channel `Pubsub.subscribe` made for `topic` for one of `capacity`.

    Call right after `await pubsub.subscribe(topic)`, with no await in between: messages already
    queued are moved over, and `notify_subscriptions` (synchronous) sends into the new channel
    from then on. Overflow is still dropped with upstream's warning, but at `capacity`.
    """
    send, receive = trio.open_memory_channel[rpc_pb2.Message](capacity)
    old_receive = pubsub.subscribed_topics_receive[topic].receive_channel
    while True:
        try:
            send.send_nowait(old_receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            break
    old_send = pubsub.subscribed_topics_send[topic]
    pubsub.subscribed_topics_send[topic] = send
    pubsub.subscribed_topics_receive[topic].receive_channel = receive
    old_send.close()
    return receive


# -- process-wide CPU fixes (py-libp2p problem 11) -------------------------------------------------------------
#
# These swap module-level helpers in libp2p for faster ones with the same results. They are
# process-wide, idempotent, and recorded in `_ORIGINALS` so a benchmark can undo them for a
# before/after comparison (`restore_cpu_fixes`).

_SPR_TTL_S = 5.0  # our addresses are fixed after listen; re-read them at most every 5 s
_VERIFIED_TTL_S = 60.0  # re-verify (and so refresh the peerstore TTL) a peer's record each minute
_VERIFIED_MAX = 4096
_FRAME_READ_CHUNK = 64 * 1024

_original_env_to_send = pubsub_module.env_to_send_in_RPC
_original_consume = pubsub_module.maybe_consume_signed_record
_ORIGINALS: dict[tuple[Any, str], Any] = {}


def _cached_env_to_send_in_RPC(host: IHost) -> tuple[bytes, bool]:
    # Upstream rebuilds `host.get_addrs()` (multiaddr work, ~0.7 ms) for every outgoing RPC.
    now = time.monotonic()
    cached = getattr(host, "_p2pnode_spr", None)
    if cached is not None and cached[0] > now:
        return cached[1], False
    envelope, created = _original_env_to_send(host)
    host._p2pnode_spr = (now + _SPR_TTL_S, envelope)  # type: ignore[attr-defined]
    return envelope, created


def _cached_maybe_consume_signed_record(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    # Upstream verifies the sender's Ed25519 envelope on every RPC (twice for control RPCs),
    # although a peer sends the same bytes each time. Skip bytes already verified for this peer.
    if not msg.HasField("senderRecord"):
        return True
    verified: dict[ID, tuple[bytes, float]] | None = getattr(host, "_p2pnode_verified_spr", None)
    if verified is None:
        verified = {}
        host._p2pnode_verified_spr = verified  # type: ignore[attr-defined]
    now = time.monotonic()
    known = verified.get(peer_id)
    if known is not None and known[0] == msg.senderRecord and known[1] > now:
        return True
    ok = _original_consume(msg, host, peer_id)
    if ok:
        if len(verified) >= _VERIFIED_MAX:
            verified.clear()
        verified[peer_id] = (msg.senderRecord, now + _VERIFIED_TTL_S)
    return ok


async def _buffered_read_varint_prefixed_bytes_limited(stream: INetStream, max_length: int) -> bytes:
    """One pubsub RPC frame from a long-lived pubsub stream, read in chunks.

    Upstream reads the length prefix one byte per `stream.read(1)` (each a lock, a muxer call
    and a task switch). This keeps a per-stream buffer instead; pubsub's read loop is the only
    reader of its inbound streams, so bytes read ahead are never lost. Same exceptions.
    """
    buffer: bytearray | None = getattr(stream, "_p2pnode_frame_buffer", None)
    if buffer is None:
        buffer = bytearray()
        stream._p2pnode_frame_buffer = buffer  # type: ignore[attr-defined]
    length = shift = 0
    prefix = 0
    while True:
        while prefix >= len(buffer):
            chunk = await stream.read(_FRAME_READ_CHUNK)
            if not chunk:
                raise IncompleteReadError("stream ended in a length prefix", expected_bytes=1)
            buffer += chunk
        byte = buffer[prefix]
        prefix += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if prefix >= 10:
            raise ParseError("varint length prefix longer than 10 bytes")
    if length > max_length:
        raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {max_length}")
    end = prefix + length
    while len(buffer) < end:
        chunk = await stream.read(max(end - len(buffer), _FRAME_READ_CHUNK))
        if not chunk:
            raise IncompleteReadError(
                "stream ended in a frame", expected_bytes=length, received_bytes=len(buffer) - prefix
            )
        buffer += chunk
    frame = bytes(buffer[prefix:end])
    del buffer[:end]
    return frame


_TCP_READ_AHEAD = 64 * 1024


def _take_read_ahead(buffer: bytearray, n: int | None) -> bytes:
    size = len(buffer) if n is None or n < 0 else min(n, len(buffer))
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


async def _read_ahead_tcp_read(self: TrioTCPStream, n: int | None = None) -> bytes:
    """`TrioTCPStream.read` with a read-ahead buffer: one `recv` of up to 64 KiB serves the small
    reads above it (py-libp2p problem 27).

    Noise reads each frame as a 2-byte length and then its body, each a `read` here: a lock, a
    `recv` and often a wait for the socket, so two to three of each per frame. Reading ahead serves
    both from one `recv`, and frames that arrived together from one. Every reader of a TCP
    connection (multistream negotiation, the Noise handshake, then Noise) goes through this one
    object, so bytes read ahead are never lost; buffered bytes are served without the lock, which
    upstream holds only to keep two readers off the socket at once. Same results and exceptions.
    """
    if n == 0:
        return b""
    buffer: bytearray | None = getattr(self, "_p2pnode_read_ahead", None)
    if buffer:
        return _take_read_ahead(buffer, n)
    async with self.read_lock:
        if buffer is None:
            buffer = bytearray()
            self._p2pnode_read_ahead = buffer  # type: ignore[attr-defined]
        if buffer:  # filled by another reader while we waited for the lock
            return _take_read_ahead(buffer, n)
        try:
            chunk = await self.stream.receive_some(max(n or 0, _TCP_READ_AHEAD))
        except trio.BrokenResourceError as error:
            raise ConnectionClosedError(
                f"TCP connection reset by remote peer: {error}", transport="tcp"
            ) from error
        except trio.ClosedResourceError:
            return b""  # closed locally: EOF, as upstream
        if n is None or n < 0 or len(chunk) <= n:
            return chunk
        buffer += memoryview(chunk)[n:]
        return chunk[:n]


async def _credit_at_half_window(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Send a WINDOW_UPDATE only once half the receive window has been read (go-yamux's GrowTo).

    Upstream adds a "partial slack" rule that credits any read smaller than the threshold
    straight away (and twice over), so a stream of small pubsub RPCs sends one WINDOW_UPDATE frame
    (a Noise frame and a socket write on each side) for every two messages received: a third of
    all frames in a gossip mesh (py-libp2p problem 26). The sender always uses its whole window
    before it waits, so once it waits we have read at least half of it and credit: no deadlock.
    Everything here is synchronous, so upstream's window lock (never held across an await) is not
    needed; the auto-tuning of the window size is upstream's.
    """
    buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
    consumed = self.target_recv_window - (self.recv_window + buffered)
    if consumed <= 0 or consumed < self._grow_threshold():
        return
    increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
    await self.send_window_update(increment, skip_lock=True)


class YamuxWindowExceeded(trio.TooSlowError):
    """A peer sent a stream more than its receive window allows. A `trio.TooSlowError` because
    upstream's frame reader closes the connection on that error alone (its DATA body timeout);
    every other error there only marks one stream closed and reads on."""


# Unread bytes a stream may hold beyond the window we offered before its peer is cut off: an
# honest sender never exceeds the window, so this only absorbs accounting races.
_WINDOW_SLACK = yamux_module.DEFAULT_WINDOW_SIZE


def _recv_window(self: YamuxStream) -> int:
    # A stream made before the limits were installed keeps its window under upstream's name.
    return self.__dict__.get("_p2pnode_recv_window", self.__dict__.get("recv_window", 0))  # type: ignore[no-any-return]


def _set_recv_window(self: YamuxStream, value: int) -> None:
    """Upstream takes each DATA frame's length off the window after buffering it and, when that
    goes below zero, only logs it: a peer could make a stream that is not being read buffer
    without bound. Past the window we offered plus `_WINDOW_SLACK`, the connection is closed."""
    if value < 0:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        if buffered > self.target_recv_window + _WINDOW_SLACK:
            raise YamuxWindowExceeded(f"stream {self.stream_id} of {self.conn.peer_id}: {buffered} bytes unread, "
                                      f"window {self.target_recv_window}")
    self.__dict__["_p2pnode_recv_window"] = value


def install_yamux_window_limits() -> None:
    """Enforce yamux flow control on what peers send us (process-wide, idempotent): a stream
    holding more unread bytes than its window allows (plus slack) closes the connection, as
    go-yamux does. Upstream logged the overrun and kept the bytes. Not undone by
    `restore_cpu_fixes`: it is no speed-up."""
    if not isinstance(YamuxStream.__dict__.get("recv_window"), property):
        YamuxStream.recv_window = property(_recv_window, _set_recv_window)  # type: ignore[assignment]


# The library task run by each trio task, so that a service finds a new task's parent in O(1).
_FUNCTION_TASK_OF: weakref.WeakKeyDictionary[trio.lowlevel.Task, FunctionTask] = weakref.WeakKeyDictionary()
_original_trio_task: property = FunctionTask.__dict__["trio_task"]


def _set_trio_task_indexed(task: FunctionTask, value: trio.lowlevel.Task) -> None:
    assert _original_trio_task.fset is not None
    _original_trio_task.fset(task, value)
    _FUNCTION_TASK_OF[value] = task


def _find_parent_task_indexed(manager: TrioManager, trio_task: trio.lowlevel.Task) -> FunctionTask | None:
    """Upstream's `_find_parent_task` without its scan of every task of the service (problem 23).

    Upstream walks the whole task tree on every `run_task` (pubsub starts one per incoming RPC):
    O(tasks) each time, so O(peers) per message. Same answer: the library task running in
    `trio_task`, if it is still in this manager's tree (linked from a root through children).
    """
    task = _FUNCTION_TASK_OF.get(trio_task)
    if task is None:
        return None
    node: Any = task
    while node.parent is not None:
        if node not in node.parent.children:
            return None
        node = node.parent
    return task if node in manager._root_tasks else None


# -- yamux frame path (problem 29) --------------------------------------------------------------

_YAMUX_LOG = yamux_module.logger
_YAMUX_FRAME_PAYLOAD = yamux_module.MAX_MESSAGE_SIZE - yamux_module.HEADER_SIZE


def _yamux_debugging() -> bool:
    """With DEBUG on for libp2p's yamux logger, upstream's own code (and its log lines) runs."""
    return _YAMUX_LOG.isEnabledFor(logging.DEBUG)


async def _lean_yamux_write(self: YamuxStream, data: bytes) -> None:
    """Upstream's `YamuxStream.write` without its two locks around the framing, and no f-string
    log line formatted per write with DEBUG off (problem 29).

    Framing a chunk (check the stream, take from `send_window`, build the header) has no await in
    it, so under trio nothing can interleave with it: the per-stream write lock and the window
    lock upstream takes there exclude nothing, yet each acquisition is a pass through the
    scheduler. The frame goes to `_write_frame` straight after, in the order framed, as upstream.
    Only once the window is empty does this wait as upstream does (under `window_lock`, 5 s).
    """
    if _yamux_debugging():
        await _ORIGINALS[(YamuxStream, "write")](self, data)
        return
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    total_len = len(data)
    sent = 0
    while sent < total_len:
        if self.send_closed:
            raise MuxedStreamError("Stream is closed for sending")
        if self.closed:
            raise MuxedStreamError("Stream is closed")
        if self.send_window <= 0:
            await _wait_for_send_window(self)
            continue
        to_send = min(self.send_window, _YAMUX_FRAME_PAYLOAD, total_len - sent)
        self.send_window -= to_send
        header = struct.pack(yamux_module.YAMUX_HEADER_FORMAT, 0, yamux_module.TYPE_DATA, 0, self.stream_id, to_send)
        await self.conn._write_frame(header + data[sent:sent + to_send])
        sent += to_send


async def _wait_for_send_window(stream: YamuxStream) -> None:
    """Upstream's wait for a WINDOW_UPDATE: poll under `window_lock` for 5 s, then fail the write."""
    stream._zero_window_waits += 1
    with trio.move_on_after(5.0) as cancel_scope:
        while True:
            async with stream.window_lock:
                if stream.send_window > 0 or stream.closed:
                    return
            await trio.sleep(0.01)
    if cancel_scope.cancelled_caught:
        raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")


async def _lean_write_frame(self: Yamux, data: bytes) -> None:
    """Upstream's `Yamux._write_frame` without decoding and formatting a log line for every frame
    with DEBUG off, and without its extra checkpoint after the write (the socket write already
    is one). Writes stay serialised by the connection's write lock."""
    if _yamux_debugging():
        await _ORIGINALS[(Yamux, "_write_frame")](self, data)
        return
    async with self._write_lock:
        await self.secured_conn.write(data)


async def _lean_read_stream(self: Yamux, stream_id: int, n: int = -1) -> bytes:
    """Upstream's `Yamux.read_stream` (same states, errors and order) without the three to four
    f-string log lines it formats per read with DEBUG off."""
    if _yamux_debugging():
        return await _ORIGINALS[(Yamux, "read_stream")](self, stream_id, n)  # type: ignore[no-any-return]
    if n is None:
        n = -1
    while True:
        async with self.streams_lock:
            if stream_id not in self.streams:
                raise MuxedStreamEOF("Stream closed")
            if self.event_shutting_down.is_set():
                raise MuxedStreamEOF("Connection shut down")
            stream = self.streams[stream_id]
            buffer = self.stream_buffers.get(stream_id)
            if buffer is None:
                if stream.reset_received:
                    raise MuxedStreamReset("Stream was reset")
                raise MuxedStreamEOF("Stream buffer closed")
            # Bytes buffered before a FIN are still returned after a reset; otherwise a reset wins.
            if stream.reset_received and not (stream.recv_closed and buffer):
                raise MuxedStreamReset("Stream was reset")
            if buffer:
                if n == -1 or n >= len(buffer):
                    data = bytes(buffer)
                    buffer.clear()
                else:
                    data = bytes(buffer[:n])
                    del buffer[:n]
                if stream.closed:
                    # Drained on a fully closed stream: reclaim it now (we hold streams_lock).
                    self._finalize_stream_locked(stream, fully_closed=True)
                return data
            if stream.recv_closed:
                raise MuxedStreamEOF("Stream is closed for receiving")
            if stream.closed:
                raise MuxedStreamReset("Stream is reset or closed")
        try:
            await self.stream_events[stream_id].wait()
            self.stream_events[stream_id] = trio.Event()
        except KeyError:
            raise MuxedStreamEOF("Stream was removed") from None


def _patch(module: Any, name: str, replacement: Any) -> None:
    _ORIGINALS.setdefault((module, name), getattr(module, name))
    setattr(module, name, replacement)


def install_cpu_fixes() -> None:
    """Swap in the cheaper helpers (same results); see the module table. Idempotent.

    - signed peer records: cache ours, verify each peer's once (not per RPC);
    - pubsub frames: read in chunks, not one byte per await;
    - yamux: credit the receive window at half-window hysteresis like go-yamux, instead of one
      WINDOW_UPDATE frame per read or two (py-libp2p's RELEASE_ON_READ default and its "partial
      slack" rule, problem 26), and stop re-reading its PY_YAMUX_* tuning environment variables
      on every read;
    - TCP: read ahead up to 64 KiB per `recv`, not one `recv` per Noise length prefix and body
      (problem 27);
    - yamux frame path: frame without the stream's write and window locks (no await inside, so
      they exclude nothing under trio), no extra checkpoint per frame, no debug line formatted
      with DEBUG off (problem 29);
    - services: find a new task's parent through an index, not a scan of every task.
    """
    for module in (pubsub_module, gossipsub_module):
        _patch(module, "env_to_send_in_RPC", _cached_env_to_send_in_RPC)
        _patch(module, "maybe_consume_signed_record", _cached_maybe_consume_signed_record)
    _patch(pubsub_module, "read_varint_prefixed_bytes_limited", _buffered_read_varint_prefixed_bytes_limited)
    release_on_read = yamux_module._py_yamux_env("RELEASE_ON_READ", "0").upper() not in ("0", "FALSE", "NO")
    hysteresis_off = yamux_module._yamux_disable_hysteresis()
    divisor = yamux_module._yamux_batch_threshold_divisor()
    _patch(yamux_module, "_yamux_release_on_read", lambda: release_on_read)
    _patch(yamux_module, "_yamux_disable_hysteresis", lambda: hysteresis_off)
    _patch(yamux_module, "_yamux_batch_threshold_divisor", lambda: divisor)
    _patch(yamux_module, "_perf_yamux_debug_enabled", lambda: False)
    _patch(YamuxStream, "_auto_tune_and_send_window_update", _credit_at_half_window)
    _patch(TrioTCPStream, "read", _read_ahead_tcp_read)
    _patch(YamuxStream, "write", _lean_yamux_write)
    _patch(Yamux, "_write_frame", _lean_write_frame)
    _patch(Yamux, "read_stream", _lean_read_stream)
    _patch(FunctionTask, "trio_task", property(_original_trio_task.fget, _set_trio_task_indexed))
    _patch(TrioManager, "_find_parent_task", _find_parent_task_indexed)


def restore_cpu_fixes() -> None:
    """Put libp2p's own helpers back (for before/after benchmarks only)."""
    for (module, name), original in _ORIGINALS.items():
        setattr(module, name, original)
    _ORIGINALS.clear()
