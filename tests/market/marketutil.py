"""Helpers for the market tests: keys, a countable fake model, fake miners, signed requests."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from models.tasks import ForecastTask
from models.tasks.forecast import SEASON_PERIODS
from p2pnode.net.identity import peer_id_from_pubkey
from p2pnode.services.market.chain_view import NeuronInfo, SubnetInfo, WeightCommit
from p2pnode.testing.memnet import MemoryHub, MemoryNetwork
from protocols.codec import decode, encode
from protocols.crypto import Keypair, keypair_from_seed
from protocols.inference import (
    MAX_RESPONSE_BYTES,
    Code,
    SignedInferenceRequest,
    SignedInferenceResponse,
    build_request,
    build_response,
    encode_json_payload,
    inference_protocol_id,
    request_id_of,
)

CHAIN = "p2pnode-test"
NETUID = 1
PROTOCOL = inference_protocol_id(CHAIN)
WALL_NOW = 1_800_000_000.0  # the fake wall clock every test miner and validator reads


def key(name: str) -> Keypair:
    return keypair_from_seed(hashlib.sha256(b"market-test:" + name.encode()).digest())


def peer_of(keypair: Keypair) -> str:
    return peer_id_from_pubkey(keypair.public_key)


class PinnedClock:
    """A `Clock` that reads WALL_NOW when first asked, then moves with trio's clock (virtual time
    under MockClock): signed test requests are fresh, and deadlines and rate limits still run."""

    def __init__(self) -> None:
        self._start: float | None = None

    def now_ms(self) -> int:
        if self._start is None:
            self._start = trio.current_time()
        return int(WALL_NOW * 1000) + round((trio.current_time() - self._start) * 1000)

    async def sleep_until_ms(self, when_ms: int) -> None:
        await trio.sleep(max(0, when_ms - self.now_ms()) / 1000)


class OneSubnet:
    """A `MarketChain` of one subnet with fixed neurons: the chain as a miner or validator sees it."""

    def __init__(self, neurons: list[NeuronInfo], *, task: str = "forecast", stakes: dict[bytes, int] | None = None):
        self.rows = neurons
        self.info = SubnetInfo(netuid=NETUID, task=task, height=10, epoch_index=1, tempo=10)
        self.stakes = stakes or {}

    def neurons(self, netuid: int) -> list[NeuronInfo]:
        return list(self.rows) if netuid == NETUID else []

    def subnet(self, netuid: int) -> SubnetInfo | None:
        return self.info if netuid == NETUID else None

    def stake_of(self, hotkey: bytes) -> int:
        return self.stakes.get(hotkey, 0)

    def weight_commits(self, netuid: int, hotkey: bytes) -> list[WeightCommit]:
        return []

    def uid_of(self, netuid: int, hotkey: bytes) -> int | None:
        return next((n.uid for n in self.neurons(netuid) if n.hotkey == hotkey), None)


def wall_clock() -> PinnedClock:
    """A fresh test clock (one per trio run: trio's clock restarts with each test)."""
    return PinnedClock()


def join(hub: MemoryHub, keypair: Keypair) -> MemoryNetwork:
    """Put `keypair`'s node on the hub under its real PeerID (miners bind callers to peers)."""
    return hub.add_peer(peer_of(keypair))


_nonces = itertools.count(1)


def fresh_nonce() -> bytes:
    return next(_nonces).to_bytes(16, "big")


def signed_request(
    caller: Keypair,
    miner_peer: str,
    task_request: Any,
    *,
    chain: str = CHAIN,
    netuid: int = NETUID,
    timestamp_ms: int | None = None,
    nonce: bytes | None = None,
) -> SignedInferenceRequest:
    return build_request(
        caller,
        chain_id=chain,
        miner=miner_peer,
        netuid=netuid,
        payload=encode_json_payload(task_request),
        nonce=nonce or fresh_nonce(),
        timestamp_ms=int(WALL_NOW * 1000) if timestamp_ms is None else timestamp_ms,
    )


async def ask(
    net: MemoryNetwork,
    miner_peer: str,
    data: bytes,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> SignedInferenceResponse:
    reply = await net.request(
        miner_peer, PROTOCOL, data, timeout=timeout, max_response_bytes=MAX_RESPONSE_BYTES
    )
    return decode(SignedInferenceResponse, reply, MAX_RESPONSE_BYTES)


def forecast_request(level: float = 10.0, horizon: int = 4) -> dict[str, Any]:
    return {"history": [level + i for i in range(8)], "horizon": horizon}


class FakeForecastModel:
    """A naive forecaster (repeat the last value) that records every forward pass.

    `gate`: each forward pass blocks until it is set (a model that is slow or stuck); `entered` is
    set from the worker thread when a pass begins. `fail`: every pass raises.
    """

    def __init__(
        self, max_batch_size: int = 64, *, gated: bool = False, fail: bool = False, offset: float = 0.0
    ) -> None:
        self.max_batch_size = max_batch_size
        self.offset = offset  # added to every forecast value (miners of different quality)
        self.batches: list[list[dict[str, Any]]] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = trio.Event()
        self.fail = fail

    def answer_batch(self, requests: Sequence[object]) -> list[dict[str, Any]]:
        batch = [dict(r) for r in requests]  # type: ignore[call-overload]
        self.batches.append(batch)
        trio.from_thread.run_sync(self.entered.set)
        self.gate.wait(timeout=30)
        if self.fail:
            raise RuntimeError("model exploded")
        return [{"forecast": [r["history"][-1] + self.offset] * r["horizon"]} for r in batch]

    @property
    def forward_passes(self) -> int:
        return len(self.batches)


# ---------------------------------------------------------------- fake miners for validator tests


# Challenge history -> truth, filled by OracleForecastTask: what the "oracle" fake miner answers.
ORACLE_TRUTHS: dict[str, list[float]] = {}


class OracleForecastTask(ForecastTask):
    """The forecast task, telling the "oracle" fake miner the truth of every challenge it makes."""

    def make_challenge(self, seed: int) -> tuple[dict[str, Any], list[float]]:
        request, truth = super().make_challenge(seed)
        ORACLE_TRUTHS[json.dumps(request["history"])] = truth
        return request, truth


def seasonal_forecast(request: dict[str, Any]) -> dict[str, Any]:
    """Repeat the last season, for the period (of the task's) that best explains the history."""
    history, horizon = request["history"], request["horizon"]

    def error(period: int) -> float:
        return sum(abs(history[t] - history[t - period]) for t in range(period, len(history))) / (
            len(history) - period
        )

    period = min((p for p in SEASON_PERIODS if 2 * p <= len(history)), key=error)
    return {"forecast": [history[len(history) - period + (i % period)] for i in range(horizon)]}


# (peer id, request bytes) -> response bytes, built from the miner's key and the decoded request.
Behaviour = Callable[[Keypair, SignedInferenceRequest, bytes], Awaitable[bytes]]


def respond(
    miner: Keypair, data: bytes, task_response: Any, code: Code = Code.OK, request_id: bytes | None = None
) -> bytes:
    return encode(
        build_response(
            miner,
            chain_id=CHAIN,
            request_id=request_id if request_id is not None else request_id_of(data),
            code=code,
            payload=encode_json_payload(task_response) if task_response is not None else b"",
        )
    )


class FakeMiner:
    """A miner on the hub that answers forecast challenges by `behaviour`."""

    def __init__(self, hub: MemoryHub, name: str, behaviour: str) -> None:
        self.key = key(name)
        self.net = join(hub, self.key)
        self.behaviour = behaviour
        self.task = ForecastTask()
        self.first_answer: bytes | None = None
        self.calls = 0
        self.requests: list[dict[str, Any]] = []  # every task request received, in order
        self.net.set_request_handler(PROTOCOL, self.handle, max_request_bytes=1 << 20)

    async def handle(self, peer: str, data: bytes) -> bytes:
        self.calls += 1
        signed = decode(SignedInferenceRequest, data)
        task_request = json.loads(signed.request.payload)
        self.requests.append(task_request)
        naive = {"forecast": [task_request["history"][-1]] * task_request["horizon"]}
        if self.behaviour == "naive":  # exactly the task's baseline: valid, but worth nothing
            return respond(self.key, data, naive)
        if self.behaviour == "oracle":  # knows the future (see OracleForecastTask): always the best
            return respond(self.key, data, {"forecast": ORACLE_TRUTHS[json.dumps(task_request["history"])]})
        if self.behaviour == "seasonal":  # a real (if simple) model: beats the baseline on average
            return respond(self.key, data, seasonal_forecast(task_request))
        if self.behaviour == "garbage":
            return respond(self.key, data, {"forecast": "lots"})
        if self.behaviour == "replay":
            # Answers the first challenge honestly, then replays that first answer forever.
            if self.first_answer is None:
                self.first_answer = respond(self.key, data, naive)
            return self.first_answer
        if self.behaviour == "error":
            return respond(self.key, data, None, code=Code.INTERNAL)
        if self.behaviour == "hang":  # killed mid-request: never answers
            await trio.sleep_forever()
        if self.behaviour == "raise":
            raise RuntimeError("crashed mid-request")
        if self.behaviour == "forged":  # a valid answer signed by someone else's key
            return respond(key("impostor"), data, naive)
        raise AssertionError(self.behaviour)
