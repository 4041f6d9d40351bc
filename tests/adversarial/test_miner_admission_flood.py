"""Issue 13 item 11: one key without stake must not lock staked validators out of a miner.

Before the fix the miner recorded a request's nonce in its replay cache before the rate limit
ran, so an unstaked key sending as fast as it could filled the cache and every caller, staked
validators included, was answered OVERLOADED until the entries expired. Now the rate limit runs
first, each caller class has its own replay cache, and part of the queue is reserved for stake.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest
import trio
import trio.testing

from models.tasks import ForecastTask
from p2pnode.net.identity import peer_id_from_pubkey
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.miner import MinerConfig, MinerServer
from p2pnode.testing.memnet import MemoryHub, MemoryNetwork
from protocols.codec import encode
from protocols.crypto import Keypair, keypair_from_seed
from protocols.inference import (
    MAX_RESPONSE_BYTES,
    Code,
    build_request,
    decode_response,
    encode_json_payload,
    inference_protocol_id,
)

pytestmark = pytest.mark.timeout(60)

CHAIN = "p2pnode-adversarial"
NETUID = 1
NOW_MS = 1_800_000_000_000


def key(name: str) -> Keypair:
    return keypair_from_seed(hashlib.sha256(b"admission-flood:" + name.encode()).digest())


class LastValueModel:
    max_batch_size = 64

    def answer_batch(self, requests: list[Any]) -> list[dict[str, Any]]:
        return [{"forecast": [r["history"][-1]] * r["horizon"]} for r in requests]


_nonces = itertools.count(1)


async def ask(net: MemoryNetwork, caller: Keypair, miner: Keypair, clock: TrioClock) -> Code:
    signed = build_request(
        caller,
        chain_id=CHAIN,
        miner=peer_id_from_pubkey(miner.public_key),
        netuid=NETUID,
        payload=encode_json_payload({"history": [1.0 * i for i in range(8)], "horizon": 2}),
        nonce=next(_nonces).to_bytes(16, "big"),
        timestamp_ms=clock.now_ms(),
    )
    reply = await net.request(
        peer_id_from_pubkey(miner.public_key),
        inference_protocol_id(CHAIN),
        encode(signed),
        timeout=10.0,
        max_response_bytes=MAX_RESPONSE_BYTES,
    )
    return Code(decode_response(reply).response.code)


async def test_an_unstaked_flood_does_not_lock_out_a_staked_validator() -> None:
    miner, validator, flooder = key("miner"), key("validator"), key("flooder")
    hub = MemoryHub()
    clock = TrioClock(origin_ms=NOW_MS - round(trio.current_time() * 1000))
    # A replay cache this small makes the old failure quick to reach; the order of the checks,
    # not the size, is what is under test.
    config = MinerConfig(replay_cache_entries=64, unstaked_replay_cache_entries=64)
    stakes = {validator.public_key: 1_000_000}
    server = MinerServer(
        miner, CHAIN, NETUID, LastValueModel(), ForecastTask(), lambda k: stakes.get(k, 0), clock, config
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, hub.add_peer(peer_id_from_pubkey(miner.public_key)))
        flooder_net = hub.add_peer(peer_id_from_pubkey(flooder.public_key))
        validator_net = hub.add_peer(peer_id_from_pubkey(validator.public_key))

        started = trio.current_time()
        flood = [await ask(flooder_net, flooder, miner, clock) for _ in range(300)]
        # Its own burst, then RATE_LIMITED; the bucket refills at its rate while a busy machine
        # takes seconds over the 300 requests.
        refilled = int((trio.current_time() - started) * config.unstaked_rate_per_s)
        assert flood.count(Code.OK) <= config.unstaked_burst + refilled
        assert set(flood) <= {Code.OK, Code.RATE_LIMITED}
        # Nothing of the refused requests was recorded.
        stats = server.statistics()
        assert stats["unstaked_replay_cache"] == flood.count(Code.OK) and stats["replay_cache"] == 0

        answers = [await ask(validator_net, validator, miner, clock) for _ in range(20)]
        assert answers == [Code.OK] * 20
        nursery.cancel_scope.cancel()


async def test_many_unstaked_keys_cannot_fill_the_queue_share_reserved_for_stake() -> None:
    miner, validator = key("miner"), key("validator")
    hub = MemoryHub()
    clock = TrioClock(origin_ms=NOW_MS - round(trio.current_time() * 1000))
    gate = trio.Event()

    class GatedModel(LastValueModel):
        max_batch_size = 1

        def answer_batch(self, requests: list[Any]) -> list[dict[str, Any]]:
            trio.from_thread.run(gate.wait)
            return super().answer_batch(requests)

    config = MinerConfig(max_queue=8, max_unstaked_queue=4, unstaked_total_burst=100.0, batch_window_s=0.0)
    stakes = {validator.public_key: 1}
    server = MinerServer(
        miner, CHAIN, NETUID, GatedModel(), ForecastTask(), lambda k: stakes.get(k, 0), clock, config
    )
    codes: dict[str, Code] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, hub.add_peer(peer_id_from_pubkey(miner.public_key)))

        async def one(name: str, caller: Keypair) -> None:
            codes[name] = await ask(hub.add_peer(peer_id_from_pubkey(caller.public_key)), caller, miner, clock)

        sybils = [key(f"sybil-{i}") for i in range(12)]
        async with trio.open_nursery() as callers:
            for i, sybil in enumerate(sybils):
                callers.start_soon(one, f"sybil-{i}", sybil)
            # Every sybil request is admitted or refused once nothing can move but the gated pass.
            await trio.testing.wait_all_tasks_blocked()
            assert sum(server.codes.values()) + server.statistics()["queued"] == len(sybils) - 1
            assert 3 <= server.statistics()["queued_unstaked"] <= 4  # the share, less any taken since
            callers.start_soon(one, "validator", validator)
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics()["queued"] - server.statistics()["queued_unstaked"] == 1
            gate.set()
        nursery.cancel_scope.cancel()
    assert codes["validator"] is Code.OK
    refused = [c for n, c in codes.items() if n.startswith("sybil") and c is Code.OVERLOADED]
    assert len(refused) >= 12 - 1 - 4  # one in the forward pass, at most four queued
    assert server.statistics()["queued_unstaked"] == 0
