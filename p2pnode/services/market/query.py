"""Access to intelligence: ask a subnet's best miners one question and return the best answer.

The node serves this as ``POST /query`` with JSON ``{"netuid": N, "input": "..."}`` (the CLI has no
libp2p host of its own, so ``p2pnode query`` goes through the node's API)::

    result = await handle_query(network, metagraph, hotkey, chain_id, netuid, task, input_text, clock=clock)

Miners are chosen by incentive (the chain's own ranking of who answers well): the `top_k` serving
miners are asked concurrently, each answer is verified like a validator verifies one (signed by the
uid's hotkey, names this request, code OK, accepted by the task), and the best is returned: by the
task's ``confidence(request, response)`` if it has one, otherwise the first valid answer (the
others are then cancelled). Failures raise `QueryError` with the HTTP status the API should send.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from models.base import Task
from models.errors import InvalidRequest, InvalidResponse
from p2pnode.chain.address import AddressError, decode_address, encode_address
from protocols.codec import MalformedMessage, encode
from protocols.crypto import Keypair
from protocols.inference import (
    MAX_RESPONSE_BYTES,
    NONCE_BYTES,
    Code,
    UntrustedResponse,
    build_request,
    decode_json_payload,
    decode_response,
    encode_json_payload,
    inference_protocol_id,
    request_id_of,
    verify_response,
)
from protocols.network import NetworkAPI, RequestError

__all__ = ["MinerAnswer", "QueryError", "handle_query", "pick_miners", "query_miners", "request_from_input"]

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
class Candidate:
    uid: int
    hotkey: bytes
    peer_id: str
    incentive: float


@dataclass(frozen=True, slots=True)
class MinerAnswer:
    uid: int
    hotkey: bytes
    peer_id: str
    response: dict[str, Any]
    latency_ms: float
    confidence: float | None


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


def _hotkey(value: object) -> bytes | None:
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value) if len(value) == 64 else decode_address(value)
        except (ValueError, AddressError):
            return None
    return None


def pick_miners(rows: list[dict[str, Any]], top_k: int, exclude: bytes | None = None) -> list[Candidate]:
    """The `top_k` serving miners by incentive (ties: lower uid), never `exclude` (ourselves)."""
    candidates = []
    for row in rows:
        uid, hotkey, peer_id = row.get("uid"), _hotkey(row.get("hotkey")), row.get("peer_id")
        incentive = row.get("incentive", 0)
        if type(uid) is not int or hotkey is None or not isinstance(peer_id, str) or not peer_id:
            continue
        if hotkey == exclude:
            continue
        value = float(incentive) if isinstance(incentive, int | float) and math.isfinite(incentive) else 0.0
        candidates.append(Candidate(uid, hotkey, peer_id, value))
    candidates.sort(key=lambda c: (-c.incentive, c.uid))
    return candidates[:top_k]


async def _ask(
    network: NetworkAPI,
    keypair: Keypair,
    chain_id: str,
    netuid: int,
    task: Task,
    request: dict[str, Any],
    miner: Candidate,
    clock: Callable[[], float],
    timeout_s: float,
) -> MinerAnswer:
    """One verified answer from one miner; raises QueryError(502) saying what went wrong."""
    signed = build_request(
        keypair,
        chain_id=chain_id,
        miner=miner.peer_id,
        netuid=netuid,
        payload=encode_json_payload(request),
        nonce=os.urandom(NONCE_BYTES),
        timestamp_ms=int(clock() * 1000),
    )
    data = encode(signed)
    started = trio.current_time()
    try:
        reply = await network.request(
            miner.peer_id,
            inference_protocol_id(chain_id),
            data,
            timeout=timeout_s,
            max_response_bytes=MAX_RESPONSE_BYTES,
        )
        response = verify_response(
            decode_response(reply), chain_id=chain_id, request_id=request_id_of(data), miner=miner.hotkey
        )
    except (RequestError, MalformedMessage, UntrustedResponse) as exc:
        raise QueryError(502, f"uid {miner.uid}: {exc}") from None
    latency_ms = (trio.current_time() - started) * 1000
    if response.code != Code.OK:
        name = Code(response.code).name if response.code in Code._value2member_map_ else str(response.code)
        raise QueryError(502, f"uid {miner.uid}: {name} {response.message}".rstrip())
    try:
        answer = task.validate_response(request, decode_json_payload(response.payload))
    except (MalformedMessage, InvalidResponse) as exc:
        raise QueryError(502, f"uid {miner.uid}: invalid answer: {exc}") from None
    confidence_of = getattr(task, "confidence", None)
    confidence = float(confidence_of(request, answer)) if callable(confidence_of) else None
    return MinerAnswer(miner.uid, miner.hotkey, miner.peer_id, answer, latency_ms, confidence)


async def query_miners(
    network: NetworkAPI,
    miners: list[Candidate],
    keypair: Keypair,
    chain_id: str,
    netuid: int,
    task: Task,
    request: dict[str, Any],
    *,
    clock: Callable[[], float],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    grace_s: float = DEFAULT_GRACE_S,
) -> tuple[MinerAnswer | None, dict[int, str]]:
    """Ask `miners` concurrently: (the best answer or None, {uid: why it failed})."""
    answers: list[MinerAnswer] = []
    failures: dict[int, str] = {}
    incentive = {m.uid: m.incentive for m in miners}

    finished = 0
    async with trio.open_nursery() as nursery:
        first_answer = trio.Event()

        async def one(miner: Candidate) -> None:
            nonlocal finished
            try:
                with trio.move_on_after(timeout_s + 1.0):  # whatever the transport does
                    try:
                        answer = await _ask(
                            network, keypair, chain_id, netuid, task, request, miner, clock, timeout_s
                        )
                    except QueryError as exc:
                        failures[miner.uid] = exc.message
                        return
                    answers.append(answer)
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

    answered = {a.uid for a in answers}
    for miner in miners:
        if miner.uid not in answered and miner.uid not in failures:
            failures[miner.uid] = "too slow: better-ranked answers arrived first" if answers else "timed out"
    if not answers:
        return None, failures
    # The network's judgement of quality is the incentive the epoch gives a miner; then the task's
    # own confidence, then speed.
    return max(answers, key=lambda a: (incentive.get(a.uid, 0.0), a.confidence or 0.0, -a.latency_ms)), failures


async def handle_query(
    network: NetworkAPI,
    metagraph: Callable[[], list[dict[str, Any]]] | list[dict[str, Any]],
    keypair: Keypair,
    chain_id: str,
    netuid: int,
    task: Task,
    input_text: str,
    *,
    clock: Callable[[], float],
    top_k: int = DEFAULT_TOP_K,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """The body of ``POST /query``: the best answer of the subnet's top miners, as JSON-able dict.

    Raises QueryError: 400 (bad input), 503 (no serving miner), 502 (every miner failed).
    """
    request = request_from_input(task, input_text)
    rows = metagraph() if callable(metagraph) else metagraph
    miners = pick_miners(rows, top_k, exclude=keypair.public_key)
    if not miners:
        raise QueryError(503, f"no miner serves subnet {netuid}")
    best, failures = await query_miners(
        network, miners, keypair, chain_id, netuid, task, request, clock=clock, timeout_s=timeout_s
    )
    if best is None:
        detail = "; ".join(f"{reason}" for _, reason in sorted(failures.items()))
        raise QueryError(502, f"no valid answer from {len(miners)} miners: {detail}"[:500])
    return {
        "netuid": netuid,
        "task": task.name,
        "request": request,
        "response": best.response,
        "uid": best.uid,
        "hotkey": encode_address(best.hotkey),
        "peer_id": best.peer_id,
        "latency_ms": round(best.latency_ms, 1),
        "confidence": best.confidence,
        "asked": [m.uid for m in miners],
        "failures": {str(uid): reason for uid, reason in sorted(failures.items())},
    }
