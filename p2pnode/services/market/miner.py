"""The miner server: answers signed inference requests with a model, one forward pass per batch.

    server = MinerServer(hotkey, chain_id, netuid, model, task, stake_of, clock)
    await nursery.start(server.run, network)        # registers /p2pnode/<chain>/inference/1

Per request, cheapest checks first (see docs/market.md): size, strict decoding, chain, miner id,
subnet, caller signature, timestamp window, caller key == sending peer, then the caller's class
(staked or not) and its rate limit, and only then the nonce, recorded in that class's own replay
cache, and the task request schema. Nothing is recorded for a request over its rate, and callers
without stake cannot fill the cache (or the queue share) that staked callers use. Each accepted request waits in a priority queue
ordered by the caller's stake (then arrival); one batching task takes up to `max_batch_size` of
them, waiting `batch_window_s` after the first arrival for others to join, and runs ONE
`model.answer_batch` in a worker thread under `forward_timeout_s`. Every request, accepted or not,
is answered with a signed, coded `SignedInferenceResponse`: nothing is answered by dropping the
stream.

Time: everything (the caller's timestamp window, rate limits, deadlines, elapsed times) is read
from one injected `Clock` in integer milliseconds, so tests can run the server under `MockClock`.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from models.base import Task
from models.errors import InvalidRequest
from p2pnode.net.identity import peer_id_from_pubkey
from p2pnode.services.clock import Clock
from p2pnode.services.metrics import NodeMetrics
from p2pnode.services.ratelimit import TokenBuckets
from protocols.codec import MalformedMessage, encode
from protocols.crypto import Keypair
from protocols.inference import (
    DEFAULT_TIMESTAMP_WINDOW_MS,
    MAX_PAYLOAD_BYTES,
    MAX_REQUEST_BYTES,
    Code,
    InferenceRejected,
    ReplayCache,
    build_response,
    check_request,
    decode_json_payload,
    decode_request,
    encode_json_payload,
    inference_protocol_id,
    request_id_of,
)
from protocols.network import NetworkAPI

logger = logging.getLogger(__name__)

__all__ = ["BatchModel", "MinerConfig", "MinerServer"]


class BatchModel(Protocol):
    """What the server needs from a model (`models.base.Model` is one)."""

    max_batch_size: int

    def answer_batch(self, requests: Sequence[object]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class MinerConfig:
    timestamp_window_ms: int = DEFAULT_TIMESTAMP_WINDOW_MS
    # Nonces are kept for twice the window (a request is valid from -window to +window), in one
    # cache per caller class: staked callers' nonces, and (smaller) those of callers without stake,
    # whose admitted rate the shared bucket below bounds (20/s x 60 s = 1 200 live entries).
    replay_cache_entries: int = 200_000
    unstaked_replay_cache_entries: int = 8_192
    max_batch_size: int | None = None  # None: the model's own `max_batch_size`
    # After the first request arrives at an idle server, wait this long for others to join its
    # batch: a few ms of latency for much higher throughput under concurrency.
    batch_window_s: float = 0.005
    max_queue: int = 256  # requests waiting for a forward pass, beyond which callers get OVERLOADED
    # Of which callers without stake may hold at most this many: the rest is reserved for stake.
    max_unstaked_queue: int = 64
    request_timeout_s: float = 10.0  # receipt to answer; must stay under the transport's handler timeout
    forward_timeout_s: float = 5.0  # one forward pass
    # Callers with no stake: a token bucket each, and one shared bucket for all of them (new keys
    # are free, so per-key buckets alone would not bound the load).
    unstaked_rate_per_s: float = 1.0
    unstaked_burst: float = 5.0
    unstaked_total_rate_per_s: float = 20.0
    unstaked_total_burst: float = 40.0
    rate_table_entries: int = 10_000
    # Staked callers: a generous bucket each, so one key cannot flood its class's replay cache.
    staked_rate_per_s: float = 50.0
    staked_burst: float = 100.0
    # The caller key must be the key of the peer that sent the request (a node's PeerID is its
    # hotkey), so a signed request cannot be relayed by a third party.
    bind_caller_to_peer: bool = True


class _Pending:
    """One accepted request waiting for (or inside) a forward pass."""

    __slots__ = ("request", "stake", "seq", "done", "response", "error", "queued")

    def __init__(self, request: dict[str, Any], stake: int, seq: int) -> None:
        self.request = request
        self.stake = stake
        self.seq = seq
        self.done = trio.Event()
        self.response: dict[str, Any] | None = None
        self.error: InferenceRejected | None = None
        self.queued = True  # in the queue and still wanted (False once taken, abandoned or displaced)

    def finish(self, response: dict[str, Any] | None, error: InferenceRejected | None) -> None:
        if not self.done.is_set():
            self.response, self.error = response, error
            self.done.set()


class MinerServer:
    """Serves one model for one subnet on the inference protocol; see the module docstring."""

    def __init__(
        self,
        keypair: Keypair,
        chain_id: str,
        netuid: int,
        model: BatchModel,
        task: Task,
        stake_of: Callable[[bytes], int],
        clock: Clock,
        config: MinerConfig | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.keypair = keypair
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.chain_id = chain_id
        self.netuid = netuid
        self.model = model
        self.task = task
        self.stake_of = stake_of
        self.clock = clock
        self.config = config or MinerConfig()
        self.protocol_id = inference_protocol_id(chain_id)
        self.max_batch_size = max(1, self.config.max_batch_size or getattr(model, "max_batch_size", 64))
        window = self.config.timestamp_window_ms
        self._replays = ReplayCache(ttl_ms=2 * window, max_entries=self.config.replay_cache_entries)
        self._unstaked_replays = ReplayCache(
            ttl_ms=2 * window, max_entries=self.config.unstaked_replay_cache_entries
        )
        self._per_staked_caller: TokenBuckets[bytes] = TokenBuckets(
            self.config.staked_rate_per_s, self.config.staked_burst, self.config.rate_table_entries
        )
        self._per_caller: TokenBuckets[bytes] = TokenBuckets(
            self.config.unstaked_rate_per_s, self.config.unstaked_burst, self.config.rate_table_entries
        )
        self._all_unstaked: TokenBuckets[bytes] = TokenBuckets(
            self.config.unstaked_total_rate_per_s, self.config.unstaked_total_burst, 1
        )
        self._heap: list[tuple[int, int, _Pending]] = []  # (-stake, seq, pending): highest stake first
        self._queued = 0  # live entries in the heap
        self._queued_unstaked = 0  # of which from callers without stake
        self._seq = itertools.count()
        self._arrived = trio.Event()
        self._peer_id: str | None = None
        self._nursery: trio.Nursery | None = None
        self._was_idle = True  # nothing was waiting when the last forward pass ended
        # Counters for statistics() and tests.
        self.codes: Counter[Code] = Counter()
        self.forward_passes = 0
        self.batch_sizes: list[int] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self, network: NetworkAPI, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Register the request handler and serve until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._peer_id = network.peer_id
            nursery.start_soon(self._batch_loop)
            # The transport accepts up to 4x our own limit, so that a request that is merely too
            # large still gets a coded TOO_LARGE answer rather than a transport-level refusal.
            network.set_request_handler(
                self.protocol_id, self.handle, max_request_bytes=4 * MAX_REQUEST_BYTES
            )
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def statistics(self) -> dict[str, Any]:
        return {
            "codes": {code.name: count for code, count in sorted(self.codes.items())},
            "forward_passes": self.forward_passes,
            "queued": self._queued,
            "queued_unstaked": self._queued_unstaked,
            "replay_cache": len(self._replays),
            "unstaked_replay_cache": len(self._unstaked_replays),
            "rate_table": len(self._per_caller) + len(self._per_staked_caller),
        }

    # -- the request handler -----------------------------------------------------------------

    async def handle(self, peer_id: str, data: bytes) -> bytes:
        """Answer one request (the `RequestHandler` registered on the network); never raises."""
        received_ms = self.clock.now_ms()
        payload = b""
        try:
            payload = await self._serve(peer_id, data, received_ms)
            code, message = Code.OK, ""
        except InferenceRejected as exc:
            code, message = exc.code, exc.message
        except Exception:  # a bug here must still produce an answer, and be visible in the log
            logger.exception("miner: unexpected failure serving a request")
            code, message = Code.INTERNAL, "internal error"
        self.codes[code] += 1
        elapsed_ms = max(0, self.clock.now_ms() - received_ms)
        self.metrics.miner_requests.labels(code.name).inc()
        self.metrics.miner_latency.observe(elapsed_ms / 1000)
        signed = build_response(
            self.keypair,
            chain_id=self.chain_id,
            request_id=request_id_of(data),
            code=code,
            message=message,
            payload=payload,
            elapsed_ms=elapsed_ms,
        )
        return encode(signed)

    async def _serve(self, peer_id: str, data: bytes, received_ms: int) -> bytes:
        if self._nursery is None or self._peer_id is None:
            raise InferenceRejected(Code.OVERLOADED, "miner is not running")
        signed = decode_request(data)
        request = signed.request
        now_ms = received_ms
        check_request(
            signed,
            chain_id=self.chain_id,
            miner=self._peer_id,
            netuid=self.netuid,
            now_ms=now_ms,
            window_ms=self.config.timestamp_window_ms,
        )
        if self.config.bind_caller_to_peer and _peer_id_of(request.caller) != peer_id:
            raise InferenceRejected(Code.WRONG_CALLER, "caller key is not the sending peer's key")
        # Rate limits before anything is recorded: a request over its rate leaves no nonce behind.
        stake = max(0, int(self.stake_of(request.caller)))
        if stake == 0:
            # Per caller first, so a caller over its own limit does not drain the shared bucket.
            if not self._per_caller.allow(request.caller, now_ms):
                raise InferenceRejected(Code.RATE_LIMITED, "unstaked caller over its request rate")
            if not self._all_unstaked.allow(b"", now_ms):
                raise InferenceRejected(Code.RATE_LIMITED, "unstaked callers over their shared request rate")
        elif not self._per_staked_caller.allow(request.caller, now_ms):
            raise InferenceRejected(Code.RATE_LIMITED, "caller over its request rate")
        replays = self._replays if stake > 0 else self._unstaked_replays
        fresh = replays.add(request.caller, request.nonce, now_ms)
        if fresh is False:
            raise InferenceRejected(Code.REPLAYED_NONCE, "nonce already used")
        if fresh is None:
            raise InferenceRejected(Code.OVERLOADED, "too many requests in the replay window")
        try:
            task_request = self.task.validate_request(decode_json_payload(request.payload))
        except MalformedMessage as exc:
            raise InferenceRejected(Code.BAD_REQUEST, exc.reason) from None
        except InvalidRequest as exc:
            raise InferenceRejected(Code.BAD_REQUEST, f"invalid task request: {exc.reason}") from None
        deadline_ms = received_ms + round(self.config.request_timeout_s * 1000)
        if self.task.is_generation(task_request):
            response = await self._generate(task_request, stake, deadline_ms)
        else:
            response = await self._answer(task_request, stake, deadline_ms)
        try:
            payload = encode_json_payload(response)
        except (TypeError, ValueError) as exc:
            raise InferenceRejected(Code.INTERNAL, f"model response is not JSON: {exc}") from None
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InferenceRejected(Code.INTERNAL, "model response over the payload limit")
        return payload

    # -- queue and batches -------------------------------------------------------------------

    async def _answer(self, request: dict[str, Any], stake: int, deadline_ms: int) -> dict[str, Any]:
        pending = self._enqueue(request, stake)
        try:
            with trio.move_on_after(max(0, deadline_ms - self.clock.now_ms()) / 1000):
                await pending.done.wait()
        finally:
            if not pending.done.is_set():
                self._withdraw(pending)
        if not pending.done.is_set():
            raise InferenceRejected(
                Code.TIMEOUT, f"no answer within {self.config.request_timeout_s:g} s of receipt"
            )
        if pending.error is not None:
            raise pending.error
        if pending.response is None:  # finish() always sets one of the two
            raise InferenceRejected(Code.INTERNAL, "no response")
        return pending.response

    async def _generate(self, request: dict[str, Any], stake: int, deadline_ms: int) -> dict[str, Any]:
        """Sample the model token by token; each step is one request in the shared batches, so
        concurrent generations and distribution requests share forward passes."""
        generated = ""
        for position in range(request["max_tokens"]):
            step = self.task.generation_step(request, generated)
            distribution = await self._answer(step, stake, deadline_ms)
            generated += self.task.next_token(request, distribution, position)
        return {"text": generated}

    def _enqueue(self, request: dict[str, Any], stake: int) -> _Pending:
        if stake == 0 and self._queued_unstaked >= self.config.max_unstaked_queue:
            raise InferenceRejected(Code.OVERLOADED, "queue share of callers without stake is full")
        if self._queued >= self.config.max_queue:
            lowest = max((entry for entry in self._heap if entry[2].queued), default=None)
            if lowest is None or lowest[2].stake >= stake:
                raise InferenceRejected(Code.OVERLOADED, "queue full")
            # A higher-stake caller displaces the lowest-stake, latest waiting one.
            self._withdraw(lowest[2])
            lowest[2].finish(None, InferenceRejected(Code.OVERLOADED, "displaced by a higher-stake caller"))
        pending = _Pending(request, stake, next(self._seq))
        heapq.heappush(self._heap, (-stake, pending.seq, pending))
        self._queued += 1
        self._queued_unstaked += stake == 0
        if len(self._heap) > 2 * self.config.max_queue + self.max_batch_size:
            # Withdrawn entries are removed lazily; rebuild before they pile up.
            self._heap = [entry for entry in self._heap if entry[2].queued]
            heapq.heapify(self._heap)
        self._arrived.set()
        self.metrics.miner_queue.set(self._queued)
        return pending

    def _withdraw(self, pending: _Pending) -> None:
        if pending.queued:
            pending.queued = False
            self._queued -= 1
            self._queued_unstaked -= pending.stake == 0

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._heap and len(batch) < self.max_batch_size:
            _, _, pending = heapq.heappop(self._heap)
            if pending.queued:
                self._withdraw(pending)
                batch.append(pending)
        return batch

    async def _wait_arrival(self) -> None:
        await self._arrived.wait()
        self._arrived = trio.Event()

    async def _batch_loop(self) -> None:
        while True:
            while self._queued == 0:
                await self._wait_arrival()
            # An idle server waits a moment for concurrent callers to join; requests that piled up
            # during the previous forward pass have waited long enough already.
            if self._queued < self.max_batch_size and self._was_idle:
                with trio.move_on_after(self.config.batch_window_s):
                    while self._queued < self.max_batch_size:
                        await self._wait_arrival()
            batch = self._take_batch()
            if batch:
                await self._forward(batch)
                self._was_idle = self._queued == 0

    async def _forward(self, batch: list[_Pending]) -> None:
        nursery = self._nursery
        if nursery is None:
            return
        done = trio.Event()
        outcome: dict[str, Any] = {}
        requests = [pending.request for pending in batch]

        async def work() -> None:
            try:
                # abandon_on_cancel: a hung model must not hold up shutdown (the thread is left
                # to finish on its own).
                outcome["responses"] = await trio.to_thread.run_sync(
                    self.model.answer_batch, requests, abandon_on_cancel=True
                )
            except Exception as exc:
                outcome["error"] = exc
            finally:
                done.set()

        self.forward_passes += 1
        self.batch_sizes.append(len(batch))
        del self.batch_sizes[:-1024]  # a long-running miner keeps only the recent sizes
        self.metrics.miner_batch_size.observe(len(batch))
        self.metrics.miner_queue.set(self._queued)
        started = trio.current_time()
        nursery.start_soon(work)
        with trio.move_on_after(self.config.forward_timeout_s):
            await done.wait()
        self.metrics.miner_forward_seconds.observe(trio.current_time() - started)
        if not done.is_set():
            logger.warning(
                "miner: forward pass over %d requests exceeded %.1f s",
                len(batch),
                self.config.forward_timeout_s,
            )
            for pending in batch:
                pending.finish(None, InferenceRejected(Code.TIMEOUT, "forward pass timed out"))
            # A worker thread cannot be interrupted: wait for it, so passes never overlap.
            await done.wait()
            return
        error = outcome.get("error")
        responses = outcome.get("responses")
        if error is not None or not isinstance(responses, list) or len(responses) != len(batch):
            logger.error("miner: model failed on a batch of %d: %r", len(batch), error)
            for pending in batch:
                pending.finish(None, InferenceRejected(Code.INTERNAL, "model failed"))
            return
        for pending, response in zip(batch, responses, strict=True):
            pending.finish(response, None)


@functools.lru_cache(maxsize=4096)
def _peer_id_of(public_key: bytes) -> str:
    try:
        return peer_id_from_pubkey(public_key)
    except ValueError:
        return ""
