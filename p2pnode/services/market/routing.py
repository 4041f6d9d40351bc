"""Routing a user's question to miners, as Petals routes requests to servers.

The `Router` remembers, per miner hotkey, an average of measured latency, how many of our requests
it is serving now, and its recent failures. `route` ranks serving miners by

    score = (incentive + 1) / sqrt((latency_ms + LATENCY_FLOOR_MS) × (1 + in_flight)) × 0.5 ** failures

(incentive: the chain's judgement of quality, raw u16; latency: measured, 0 until then, so that
every miner with incentive gets measured;
failures: consecutive, forgotten `failure_memory_ms` after the last one), asks the best one, and

- **hedges**: when no answer came after `hedge_after_s(miner)` (3 × its expected latency, within
  0.3–2 s), it asks the next-ranked miner too, and takes whichever valid answer comes first;
- **fails over**: an error, an invalid answer or a timeout starts the next-ranked miner at once;

until a valid answer arrives or `max_attempts` miners were asked. The answer carries the miner's
signature over its response to our request id: the caller's receipt.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

from models.base import Task
from p2pnode.services.clock import Clock
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import AskFailed, InferenceClient, MinerAnswer

__all__ = ["Attempt", "GenerationFailed", "MinerStats", "Router", "RoutedAnswer", "generate"]

LATENCY_FLOOR_MS = 50.0
PRIOR_LATENCY_MS = 500.0
HEDGE_MIN_S = 0.3
HEDGE_MAX_S = 2.0


@dataclass(slots=True)
class MinerStats:
    latency_ms: float | None = None  # moving average of answered requests
    in_flight: int = 0
    failures: int = 0  # consecutive
    last_failure_ms: int = 0
    answered: int = 0


@dataclass(slots=True)
class Attempt:
    uid: int
    started_ms: int  # since the query began
    outcome: str = "pending"  # "answered", "too slow", or why it failed
    hedge: bool = False  # started because the miner before it was slow, not because it failed


@dataclass(slots=True)
class RoutedAnswer:
    answer: MinerAnswer | None
    attempts: list[Attempt] = field(default_factory=list)

    def failures(self) -> dict[int, str]:
        return {a.uid: a.outcome for a in self.attempts if a.outcome != "answered"}


class Router:
    """Latency, load and failures per miner hotkey (bounded), and the routing of one question."""

    def __init__(
        self,
        client: InferenceClient,
        clock: Clock,
        *,
        latency_alpha: float = 0.3,
        failure_memory_ms: int = 60_000,
        max_entries: int = 4096,
    ) -> None:
        self.client = client
        self.clock = clock
        self.latency_alpha = latency_alpha
        self.failure_memory_ms = failure_memory_ms
        self.max_entries = max_entries
        self._stats: OrderedDict[bytes, MinerStats] = OrderedDict()

    # -- what we know of each miner ----------------------------------------------------------

    def stats(self, hotkey: bytes) -> MinerStats:
        stats = self._stats.pop(hotkey, None) or MinerStats()
        self._stats[hotkey] = stats
        if len(self._stats) > self.max_entries:
            self._stats.popitem(last=False)
        return stats

    def expected_latency_ms(self, hotkey: bytes) -> float:
        known = self._stats.get(hotkey)
        return PRIOR_LATENCY_MS if known is None or known.latency_ms is None else known.latency_ms

    def score(self, neuron: NeuronInfo) -> float:
        stats = self._stats.get(neuron.hotkey) or MinerStats()
        # Optimistic about a miner not measured yet, so each gets tried once and measured (its
        # hedge delay still uses the cautious prior); incentive keeps a useless one out of reach.
        latency = 0.0 if stats.latency_ms is None else stats.latency_ms
        failures = stats.failures
        if failures and self.clock.now_ms() - stats.last_failure_ms > self.failure_memory_ms:
            failures = 0
        health = 0.5 ** min(failures, 16)
        # Square root: quality (incentive) is what users come for; a miner must be much slower or
        # busier, not merely slower, to lose to a miner the network judges worse.
        return (neuron.incentive + 1) / math.sqrt((latency + LATENCY_FLOOR_MS) * (1 + stats.in_flight)) * health

    def rank(self, neurons: list[NeuronInfo], exclude: bytes | None = None) -> list[NeuronInfo]:
        """Serving miners, best first (ties: lower uid); never `exclude` (ourselves)."""
        serving = [n for n in neurons if n.peer_id and n.hotkey != exclude]
        return sorted(serving, key=lambda n: (-self.score(n), n.uid))

    def hedge_after_s(self, neuron: NeuronInfo) -> float:
        return min(HEDGE_MAX_S, max(HEDGE_MIN_S, 3 * self.expected_latency_ms(neuron.hotkey) / 1000))

    def _record(self, hotkey: bytes, latency_ms: int | None) -> None:
        stats = self.stats(hotkey)
        if latency_ms is None:
            stats.failures += 1
            stats.last_failure_ms = self.clock.now_ms()
            return
        stats.failures = 0
        stats.answered += 1
        previous = stats.latency_ms
        alpha = self.latency_alpha
        stats.latency_ms = float(latency_ms) if previous is None else alpha * latency_ms + (1 - alpha) * previous

    def _record_outrun(self, hotkey: bytes, waited_ms: int) -> None:
        stats = self.stats(hotkey)
        if stats.latency_ms is None or waited_ms > stats.latency_ms:
            previous = PRIOR_LATENCY_MS if stats.latency_ms is None else stats.latency_ms
            stats.latency_ms = self.latency_alpha * waited_ms + (1 - self.latency_alpha) * previous

    # -- one question ------------------------------------------------------------------------

    async def route(
        self,
        ranked: list[NeuronInfo],
        netuid: int,
        task: Task,
        request: dict[str, Any],
        *,
        timeout_s: float,
        max_attempts: int = 4,
        steps: int = 1,
    ) -> RoutedAnswer:
        """Ask `ranked` in order, hedging slow miners and failing over on errors (module docstring).

        `steps`: forward passes the request costs (a generation of n tokens: n). Latency samples are
        per step, and the hedge waits `steps` times as long (at most half the timeout).
        """
        queue = list(ranked[:max_attempts])
        routed = RoutedAnswer(None)
        began_ms = self.clock.now_ms()
        asked: list[tuple[Attempt, NeuronInfo]] = []
        send, receive = trio.open_memory_channel[tuple[Attempt, NeuronInfo, MinerAnswer | AskFailed]](len(queue))
        active = 0

        async def ask(attempt: Attempt, neuron: NeuronInfo) -> None:
            stats = self.stats(neuron.hotkey)
            stats.in_flight += 1
            try:
                outcome: MinerAnswer | AskFailed
                with trio.move_on_after(timeout_s + 1.0) as guard:  # whatever the transport does
                    try:
                        outcome = await self.client.ask(neuron, netuid, task, request, timeout_s)
                    except AskFailed as exc:
                        outcome = exc
                if guard.cancelled_caught:
                    outcome = AskFailed("no answer", f"no answer within {timeout_s:g} s")
                self._record(neuron.hotkey, outcome.latency_ms // steps if isinstance(outcome, MinerAnswer) else None)
                send.send_nowait((attempt, neuron, outcome))
            finally:
                stats.in_flight -= 1

        async with trio.open_nursery() as nursery:

            def start_next(hedge: bool) -> NeuronInfo | None:
                nonlocal active
                if not queue:
                    return None
                neuron = queue.pop(0)
                attempt = Attempt(neuron.uid, self.clock.now_ms() - began_ms, hedge=hedge)
                routed.attempts.append(attempt)
                asked.append((attempt, neuron))
                active += 1
                nursery.start_soon(ask, attempt, neuron)
                return neuron

            newest = start_next(hedge=False)
            while active:
                wait_s = (
                    min(timeout_s / 2, self.hedge_after_s(newest) * steps)
                    if newest is not None and queue
                    else float("inf")
                )
                with trio.move_on_after(wait_s):
                    attempt, neuron, outcome = await receive.receive()
                    active -= 1
                    if isinstance(outcome, MinerAnswer):
                        attempt.outcome = "answered"
                        routed.answer = outcome
                        nursery.cancel_scope.cancel()
                        break
                    attempt.outcome = f"uid {attempt.uid}: {outcome}"
                    newest = start_next(hedge=False) or newest  # fail over at once
                    continue
                newest = start_next(hedge=True)  # too slow: hedge with the next-ranked miner
        now_ms = self.clock.now_ms()
        for attempt, neuron in asked:
            if attempt.outcome == "pending":
                attempt.outcome = "too slow: another miner answered first" if routed.answer else "timed out"
                # Cut short, its latency is at least this long: a sample that demotes a miner that
                # keeps being outrun (a hung one would otherwise stay first and cost a hedge each time).
                self._record_outrun(neuron.hotkey, max(0, now_ms - began_ms - attempt.started_ms) // steps)
        return routed


class GenerationFailed(Exception):
    """A chunk of a generation found no miner to answer it; `routed` says who was asked and why."""

    def __init__(self, routed: RoutedAnswer, generated: str) -> None:
        self.routed = routed
        self.generated = generated
        detail = "; ".join(reason for _, reason in sorted(routed.failures().items()))
        super().__init__(f"no miner continued the text after {len(generated)} characters: {detail}"[:500])


async def generate(
    router: Router,
    ranked: list[NeuronInfo],
    netuid: int,
    task: Task,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    chunk_tokens: int = 16,
    max_context_chars: int = 1024,
    timeout_s: float = 10.0,
    max_attempts: int = 4,
) -> AsyncIterator[RoutedAnswer]:
    """Generate `max_tokens` characters in chunks of `chunk_tokens`, one routed request each.

    Each chunk goes first to the miner that wrote the previous one (its style continues), and to
    the next-ranked miners if it fails or is slow, so a miner killed mid-stream costs one failover,
    not the text. Yields each chunk's routed answer as it arrives; raises GenerationFailed when no
    miner continues.
    """
    generated = ""
    writer: bytes | None = None
    while len(generated) < max_tokens:
        count = min(chunk_tokens, max_tokens - len(generated))
        request = task.validate_request(
            {
                "context": (prompt + generated)[-max_context_chars:],
                "max_tokens": count,
                "temperature": temperature,
                "seed": (seed + len(generated)) % 2**53,
            }
        )
        order = router.rank(ranked)
        order.sort(key=lambda n: n.hotkey != writer)  # stable: the previous writer first
        routed = await router.route(
            order, netuid, task, request, timeout_s=timeout_s, max_attempts=max_attempts, steps=count
        )
        if routed.answer is None:
            raise GenerationFailed(routed, generated)
        chunk = routed.answer.response["text"]
        generated += chunk
        writer = routed.answer.hotkey
        yield routed
        if not chunk:  # a miner that generates nothing ends the text (no endless loop)
            return
