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
from typing import Any

from models.base import Task
from models.errors import InvalidRequest
from p2pnode.chain.address import encode_address
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.routing import Router

__all__ = ["QueryError", "handle_query", "request_from_input"]

DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 10.0
MAX_INPUT_CHARS = 16_384


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
    ranked = router.rank(neurons, exclude=router.client.keypair.public_key)
    if uid is not None:
        if not any(n.uid == uid for n in neurons):
            raise QueryError(404, f"subnet {netuid} has no uid {uid}")
        ranked = [n for n in ranked if n.uid == uid]
        if not ranked:
            raise QueryError(503, f"uid {uid} of subnet {netuid} does not serve")
    if not ranked:
        raise QueryError(503, f"no miner serves subnet {netuid}")
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
        "uid": answer.uid,
        "hotkey": encode_address(answer.hotkey),
        "peer_id": answer.peer_id,
        "latency_ms": answer.latency_ms,
        # The receipt: the miner's signed response to request_id (verify it with
        # protocols.inference.verify_response against the miner's hotkey), and its signature.
        "request_id": answer.request_id.hex(),
        "signature": answer.signature.hex(),
        "receipt": base64.b64encode(answer.receipt).decode("ascii"),
        "asked": [a.uid for a in routed.attempts],
        "hedged": any(a.hedge for a in routed.attempts),
        "failures": {str(uid): reason for uid, reason in sorted(failures.items())},
    }
