"""Access to intelligence: ask a subnet's best miners one question and return the best answer.

The node serves this as ``POST /query`` with JSON ``{"netuid": N, "input": "..."}`` (the CLI has no
libp2p host of its own, so ``p2pnode query`` goes through the node's API)::

    result = await handle_query(client, chain.neurons(netuid), netuid, task, input_text)

Miners are chosen by incentive (the chain's own ranking of who answers well): the `top_k` serving
miners are asked concurrently through the `InferenceClient` (which verifies each answer exactly as
the validator does), and the best is returned: by the
task's ``confidence(request, response)`` if it has one, otherwise the first valid answer (the
others are then cancelled). Failures raise `QueryError` with the HTTP status the API should send.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import trio

from models.base import Task
from models.errors import InvalidRequest
from p2pnode.chain.address import encode_address
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import AskFailed, InferenceClient, MinerAnswer

__all__ = ["QueryError", "RankedAnswer", "handle_query", "pick_miners", "query_miners", "request_from_input"]

DEFAULT_TOP_K = 3
DEFAULT_GRACE_S = 1.0
DEFAULT_TIMEOUT_S = 10.0
MAX_INPUT_CHARS = 16_384


class QueryError(Exception):
    """A query that cannot be answered; `status` is the HTTP status for the API to return."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class RankedAnswer:
    answer: MinerAnswer
    confidence: float | None  # the task's `confidence(request, response)`, when it has one


def request_from_input(task: Task, input_text: str) -> dict[str, Any]:
    """The task request for a user's input: a JSON object as is, or the task's plain-text form.

    Plain text: the `text` task takes it as the context; the `forecast` task takes numbers
    separated by commas or spaces as the history (and its default horizon). Raises QueryError(400).
    """
    if len(input_text) > MAX_INPUT_CHARS:
        raise QueryError(400, f"input longer than {MAX_INPUT_CHARS} characters")
    stripped = input_text.strip()
    request: object
    if stripped.startswith("{"):
        try:
            request = json.loads(stripped)
        except ValueError as exc:
            raise QueryError(400, f"input is not valid JSON: {exc}") from None
    elif task.name == "text":
        request = {"context": input_text}
    elif task.name == "forecast":
        try:
            history = [float(x) for x in re.split(r"[,\s]+", stripped) if x]
        except ValueError:
            raise QueryError(400, "forecast input: numbers separated by commas or spaces") from None
        horizon = getattr(getattr(task, "config", None), "horizon", 1)
        request = {"history": history, "horizon": horizon}
    else:
        raise QueryError(400, f"task {task.name!r} takes a JSON object as input")
    try:
        return task.validate_request(request)
    except InvalidRequest as exc:
        raise QueryError(400, f"not a valid {task.name} request: {exc.reason}") from None


def pick_miners(neurons: list[NeuronInfo], top_k: int, exclude: bytes | None = None) -> list[NeuronInfo]:
    """The `top_k` serving miners by incentive (ties: lower uid), never `exclude` (ourselves)."""
    serving = [n for n in neurons if n.peer_id and n.hotkey != exclude]
    serving.sort(key=lambda n: (-n.incentive, n.uid))
    return serving[:top_k]


async def query_miners(
    client: InferenceClient,
    miners: list[NeuronInfo],
    netuid: int,
    task: Task,
    request: dict[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    grace_s: float = DEFAULT_GRACE_S,
) -> tuple[RankedAnswer | None, dict[int, str]]:
    """Ask `miners` concurrently: (the best answer or None, {uid: why it failed})."""
    answers: list[RankedAnswer] = []
    failures: dict[int, str] = {}
    incentive = {m.uid: m.incentive for m in miners}
    confidence_of = getattr(task, "confidence", None)

    finished = 0
    async with trio.open_nursery() as nursery:
        first_answer = trio.Event()

        async def one(miner: NeuronInfo) -> None:
            nonlocal finished
            try:
                with trio.move_on_after(timeout_s + 1.0):  # whatever the transport does
                    try:
                        answer = await client.ask(miner, netuid, task, request, timeout_s)
                    except AskFailed as exc:
                        failures[miner.uid] = f"uid {miner.uid}: {exc}"
                        return
                    confidence = (
                        float(confidence_of(request, answer.response)) if callable(confidence_of) else None
                    )
                    answers.append(RankedAnswer(answer, confidence))
                    first_answer.set()
            finally:
                finished += 1
                if finished == len(miners):
                    nursery.cancel_scope.cancel()  # everyone answered or failed: no grace needed

        async def close_after_grace() -> None:
            # The best-ranked miners get a short grace after the first answer; slower ones are dropped.
            await first_answer.wait()
            await trio.sleep(grace_s)
            nursery.cancel_scope.cancel()

        for miner in miners:
            nursery.start_soon(one, miner)
        nursery.start_soon(close_after_grace)

    answered = {a.answer.uid for a in answers}
    for miner in miners:
        if miner.uid not in answered and miner.uid not in failures:
            failures[miner.uid] = "too slow: better-ranked answers arrived first" if answers else "timed out"
    if not answers:
        return None, failures
    # The network's judgement of quality is the incentive the epoch gives a miner; then the task's
    # own confidence, then speed.
    best = max(
        answers,
        key=lambda a: (incentive.get(a.answer.uid, 0), a.confidence or 0.0, -a.answer.latency_ms),
    )
    return best, failures


async def handle_query(
    client: InferenceClient,
    neurons: list[NeuronInfo],
    netuid: int,
    task: Task,
    input_text: str,
    *,
    top_k: int = DEFAULT_TOP_K,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """The body of ``POST /query``: the best answer of the subnet's top miners, as JSON-able dict.

    Raises QueryError: 400 (bad input), 503 (no serving miner), 502 (every miner failed).
    """
    request = request_from_input(task, input_text)
    miners = pick_miners(neurons, top_k, exclude=client.keypair.public_key)
    if not miners:
        raise QueryError(503, f"no miner serves subnet {netuid}")
    best, failures = await query_miners(client, miners, netuid, task, request, timeout_s=timeout_s)
    if best is None:
        detail = "; ".join(f"{reason}" for _, reason in sorted(failures.items()))
        raise QueryError(502, f"no valid answer from {len(miners)} miners: {detail}"[:500])
    answer = best.answer
    return {
        "netuid": netuid,
        "task": task.name,
        "request": request,
        "response": answer.response,
        "uid": answer.uid,
        "hotkey": encode_address(answer.hotkey),
        "peer_id": answer.peer_id,
        "latency_ms": answer.latency_ms,
        "confidence": best.confidence,
        # The receipt: the miner's signature over its response to request_id.
        "request_id": answer.request_id.hex(),
        "signature": answer.signature.hex(),
        "asked": [m.uid for m in miners],
        "failures": {str(uid): reason for uid, reason in sorted(failures.items())},
    }
