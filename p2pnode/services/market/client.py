"""The inference client: ask one miner one task request and verify its answer.

Used by the validator (challenges) and by query (users' questions), so both check an answer the
same way: it decodes, is signed by the uid's hotkey, names *this* request (a replayed old answer
fails here), carries code OK, and the task accepts its payload.

    client = InferenceClient(network, keypair, chain_id, clock)
    answer = await client.ask(neuron, netuid, task, request, timeout_s=10.0)   # or AskFailed
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import trio

from models.base import Task
from models.errors import InvalidResponse
from p2pnode.services.clock import Clock
from p2pnode.services.market.chain_view import NeuronInfo
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

__all__ = ["AskFailed", "InferenceClient", "MinerAnswer"]


class AskFailed(Exception):
    """No usable answer. `kind`: "no answer", "untrusted answer" (forged, replayed or
    undecodable: the peer deserves a penalty), "error" (a coded refusal) or "invalid answer"."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}"[:200])

    @property
    def untrusted(self) -> bool:
        return self.kind == "untrusted answer"


@dataclass(frozen=True, slots=True)
class MinerAnswer:
    """A verified answer: the task's response plus the receipt (the miner's signature over it)."""

    uid: int
    hotkey: bytes
    peer_id: str
    request: dict[str, Any]
    response: dict[str, Any]
    request_id: bytes
    signature: bytes  # the miner's signature over its signed response
    receipt: bytes  # the signed response as the miner sent it: anyone can verify it against request_id
    latency_ms: int  # measured by the caller, request sent to answer verified


class InferenceClient:
    """Signs requests as `keypair` and verifies miners' answers; see the module docstring."""

    def __init__(self, network: NetworkAPI, keypair: Keypair, chain_id: str, clock: Clock) -> None:
        self.network = network
        self.keypair = keypair
        self.chain_id = chain_id
        self.clock = clock
        self.protocol_id = inference_protocol_id(chain_id)

    async def ask(
        self, neuron: NeuronInfo, netuid: int, task: Task, request: dict[str, Any], timeout_s: float
    ) -> MinerAnswer:
        """One verified answer from `neuron`, or AskFailed saying what went wrong."""
        signed = build_request(
            self.keypair,
            chain_id=self.chain_id,
            miner=neuron.peer_id,
            netuid=netuid,
            payload=encode_json_payload(request),
            nonce=os.urandom(NONCE_BYTES),
            timestamp_ms=self.clock.now_ms(),
        )
        data = encode(signed)
        request_id = request_id_of(data)
        started = trio.current_time()
        try:
            reply = await self.network.request(
                neuron.peer_id,
                self.protocol_id,
                data,
                timeout=timeout_s,
                max_response_bytes=MAX_RESPONSE_BYTES,
            )
        except RequestError as exc:
            raise AskFailed("no answer", str(exc)) from None
        try:
            signed_response = decode_response(reply)
            response = verify_response(
                signed_response, chain_id=self.chain_id, request_id=request_id, miner=neuron.hotkey
            )
        except (MalformedMessage, UntrustedResponse) as exc:
            raise AskFailed("untrusted answer", str(exc)) from None
        latency_ms = round((trio.current_time() - started) * 1000)
        if response.code != Code.OK:
            name = Code(response.code).name if response.code in Code._value2member_map_ else str(response.code)
            raise AskFailed("error", f"{name}: {response.message}")
        try:
            answer = task.validate_response(request, decode_json_payload(response.payload))
        except (MalformedMessage, InvalidResponse) as exc:
            raise AskFailed("invalid answer", str(exc)) from None
        return MinerAnswer(
            uid=neuron.uid,
            hotkey=neuron.hotkey,
            peer_id=neuron.peer_id,
            request=request,
            response=answer,
            request_id=request_id,
            signature=signed_response.sig,
            receipt=reply,
            latency_ms=latency_ms,
        )
