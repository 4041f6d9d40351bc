"""Access to intelligence: route a user's question to a subnet's miners and return a verified answer.

The node serves this as ``POST /query`` with JSON ``{"netuid": N, "input": "...", "uid": U?}`` (the
CLI has no libp2p host of its own, so ``p2pnode query`` goes through the node's API)::

    result = await handle_query(router, chain.neurons(netuid), netuid, task, input_text)

The `Router` (routing.py) ranks serving miners by incentive, measured latency, load and recent
failures, hedges a slow miner with the next one and fails over on errors; every answer is verified
by the `InferenceClient` exactly as the validator verifies one, and the result carries the miner's
signature as a receipt. Failures raise `QueryError` with the HTTP status the API should send.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from models.base import Task
from models.errors import InvalidRequest
from p2pnode.chain.address import encode_address
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import MinerAnswer
from p2pnode.services.market.routing import GenerationFailed, Router, generate

__all__ = ["QueryError", "handle_query", "request_from_input", "start_generation"]

DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 10.0
MAX_INPUT_CHARS = 16_384
MAX_GENERATED_CHARS = 4096  # per user request; miners are asked in chunks


class QueryError(Exception):
    """A query that cannot be answered; `status` is the HTTP status for the API to return."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


async def handle_query(
    router: Router,
    neurons: list[NeuronInfo],
    netuid: int,
    task: Task,
    input_text: str,
    *,
    uid: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> dict[str, Any]:
    """The body of ``POST /query``: a verified answer and its receipt, as a JSON-able dict.

    `uid`: ask that miner only. Raises QueryError: 400 (bad input), 404 (no such uid), 503 (no
    serving miner), 502 (every miner asked failed).
    """
    request = request_from_input(task, input_text)
    ranked = _candidates(router, neurons, netuid, uid)
    routed = await router.route(ranked, netuid, task, request, timeout_s=timeout_s, max_attempts=max_attempts)
    failures = routed.failures()
    answer = routed.answer
    if answer is None:
        detail = "; ".join(reason for _, reason in sorted(failures.items()))
        raise QueryError(502, f"no valid answer from {len(routed.attempts)} miners: {detail}"[:500])
    return {
        "netuid": netuid,
        "task": task.name,
        "request": request,
        "response": answer.response,
        **_receipt(answer),
        "asked": [a.uid for a in routed.attempts],
        "hedged": any(a.hedge for a in routed.attempts),
        "failures": {str(uid): reason for uid, reason in sorted(failures.items())},
    }


def start_generation(
    router: Router,
    neurons: list[NeuronInfo],
    netuid: int,
    task: Task,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    uid: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Check a generation request now (QueryError: 400, 404, 503), then stream it: an async
    iterator of ("chunk", {...}) per chunk as it arrives, then ("done", {...}) or ("error", {...}).

    Each chunk carries the writing miner's uid, hotkey, latency and receipt, like a query answer.
    """
    if not task.generates:
        raise QueryError(400, f"the {task.name!r} task does not generate text")
    if not prompt:
        raise QueryError(400, "the prompt is empty")
    if not 1 <= max_tokens <= MAX_GENERATED_CHARS:
        raise QueryError(400, f"max_tokens must be between 1 and {MAX_GENERATED_CHARS}")
    if not 0 <= temperature <= 2:
        raise QueryError(400, "temperature must be between 0 and 2")
    if not 0 <= seed < 2**53:
        raise QueryError(400, "seed must be between 0 and 2^53 - 1")
    try:
        task.validate_request({"context": prompt[-1024:], "max_tokens": 1, "temperature": temperature, "seed": seed})
    except InvalidRequest as exc:
        raise QueryError(400, f"not a valid {task.name} prompt: {exc.reason}") from None
    ranked = _candidates(router, neurons, netuid, uid)

    async def events() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        text, writers = "", []
        try:
            async for routed in generate(
                router, ranked, netuid, task, prompt,
                max_tokens=max_tokens, temperature=temperature, seed=seed, timeout_s=timeout_s,
            ):
                answer = routed.answer
                assert answer is not None
                text += answer.response["text"]
                writers.append(answer.uid)
                yield "chunk", {**_receipt(answer), "text": answer.response["text"],
                                "asked": [a.uid for a in routed.attempts],
                                "failures": {str(u): why for u, why in sorted(routed.failures().items())}}
        except GenerationFailed as exc:
            yield "error", {"error": str(exc), "text": text}
            return
        yield "done", {"text": text, "uids": writers}

    return events()


def _candidates(router: Router, neurons: list[NeuronInfo], netuid: int, uid: int | None) -> list[NeuronInfo]:
    ranked = router.rank(neurons, exclude=router.client.keypair.public_key)
    if uid is not None:
        if not any(n.uid == uid for n in neurons):
            raise QueryError(404, f"subnet {netuid} has no uid {uid}")
        ranked = [n for n in ranked if n.uid == uid]
        if not ranked:
            raise QueryError(503, f"uid {uid} of subnet {netuid} does not serve")
    if not ranked:
        raise QueryError(503, f"no miner serves subnet {netuid}")
    return ranked


def _receipt(answer: MinerAnswer) -> dict[str, Any]:
    return {
        "uid": answer.uid,
        "hotkey": encode_address(answer.hotkey),
        "peer_id": answer.peer_id,
        "latency_ms": answer.latency_ms,
        # The receipt: the miner's signed response to request_id (verify it with
        # protocols.inference.verify_response against the miner's hotkey), and its signature.
        "request_id": answer.request_id.hex(),
        "signature": answer.signature.hex(),
        "receipt": base64.b64encode(answer.receipt).decode("ascii"),
    }
