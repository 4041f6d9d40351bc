"""The miner server over the in-memory network: coded rejections, batching, priority, limits."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from marketutil import (
    CHAIN,
    NETUID,
    PROTOCOL,
    WALL_NOW,
    FakeForecastModel,
    ask,
    forecast_request,
    join,
    key,
    peer_of,
    signed_request,
    wall_clock,
)

from models.tasks import ForecastTask
from p2pnode.services.market.miner import MinerConfig, MinerServer
from p2pnode.testing.memnet import MemoryHub, MemoryNetwork
from protocols.codec import encode
from protocols.inference import (
    MAX_PAYLOAD_BYTES,
    Code,
    InferenceResponse,
    SignedInferenceRequest,
    decode_json_payload,
    request_id_of,
    verify_response,
)

pytestmark = pytest.mark.timeout(60)

MINER = key("miner")
STAKES = {key(f"staker-{s}").public_key: s for s in (1, 2, 3, 4, 5, 100)}


def stake_of(hotkey: bytes) -> int:
    return STAKES.get(hotkey, 0)


@asynccontextmanager
async def serving(
    model: FakeForecastModel, config: MinerConfig | None = None
) -> AsyncIterator[tuple[MemoryHub, MinerServer]]:
    hub = MemoryHub()
    network = join(hub, MINER)
    server = MinerServer(MINER, CHAIN, NETUID, model, ForecastTask(), stake_of, wall_clock(), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, network)
        yield hub, server
        nursery.cancel_scope.cancel()


async def exchange(caller_net: MemoryNetwork, data: bytes) -> InferenceResponse:
    """Send raw request bytes; check the answer is the miner's signed answer to exactly them."""
    signed = await ask(caller_net, peer_of(MINER), data)
    return verify_response(signed, chain_id=CHAIN, request_id=request_id_of(data), miner=MINER.public_key)


async def call(caller_net: MemoryNetwork, request: SignedInferenceRequest) -> InferenceResponse:
    return await exchange(caller_net, encode(request))


async def test_answers_a_valid_request() -> None:
    model = FakeForecastModel()
    async with serving(model) as (hub, server):
        caller = key("staker-5")
        response = await call(
            join(hub, caller), signed_request(caller, peer_of(MINER), forecast_request(10.0, 3))
        )
        assert (Code(response.code), response.message) == (Code.OK, "")
        assert decode_json_payload(response.payload) == {"forecast": [17.0, 17.0, 17.0]}
        assert model.forward_passes == 1
        assert server.statistics()["codes"] == {"OK": 1}


async def test_every_coded_rejection_is_a_signed_answer() -> None:
    model = FakeForecastModel()
    async with serving(model) as (hub, server):
        caller = key("staker-5")
        net = join(hub, caller)
        miner_peer = peer_of(MINER)
        now_ms = int(WALL_NOW * 1000)

        async def code_of(data: bytes) -> Code:
            return Code((await exchange(net, data)).code)

        def req(**kwargs: object) -> bytes:
            return encode(signed_request(caller, miner_peer, forecast_request(), **kwargs))  # type: ignore[arg-type]

        good = signed_request(caller, miner_peer, forecast_request())
        forged = dataclasses.replace(good, sig=key("mallory").sign(good.request.signing_bytes()))
        assert await code_of(encode(forged)) is Code.BAD_SIGNATURE
        assert await code_of(req(timestamp_ms=now_ms - 31_000)) is Code.STALE_TIMESTAMP
        assert await code_of(req(timestamp_ms=now_ms + 31_000)) is Code.STALE_TIMESTAMP
        assert await code_of(req(chain="another-chain")) is Code.WRONG_CHAIN
        assert await code_of(req(netuid=NETUID + 1)) is Code.UNKNOWN_NETUID
        wrong_miner = encode(signed_request(caller, peer_of(key("other-miner")), forecast_request()))
        assert await code_of(wrong_miner) is Code.WRONG_MINER

        replayed = req(nonce=b"\x07" * 16)
        assert await code_of(replayed) is Code.OK
        assert await code_of(replayed) is Code.REPLAYED_NONCE
        # Same nonce, new signature and timestamp: still a replay of the nonce.
        assert await code_of(req(nonce=b"\x07" * 16, timestamp_ms=now_ms + 1)) is Code.REPLAYED_NONCE

        oversized = encode(
            signed_request(caller, miner_peer, {"history": [1.0] * 8, "pad": "x" * MAX_PAYLOAD_BYTES})
        )
        assert await code_of(oversized) is Code.TOO_LARGE
        assert await code_of(b"\xa1garbage") is Code.BAD_REQUEST
        assert await code_of(b"") is Code.BAD_REQUEST
        bad_task_request = encode(signed_request(caller, miner_peer, {"history": [1.0], "horizon": 4}))
        response = await exchange(net, bad_task_request)
        assert Code(response.code) is Code.BAD_REQUEST and "history" in response.message
        not_json = dataclasses.replace(good.request, payload=b"{nope", nonce=b"\x09" * 16)
        assert (
            await code_of(
                encode(dataclasses.replace(good, request=not_json, sig=caller.sign(not_json.signing_bytes())))
            )
            is Code.BAD_REQUEST
        )

        # A request signed by one key but sent by another peer.
        relay = join(hub, key("relay"))
        relayed = await exchange(relay, req())
        assert Code(relayed.code) is Code.WRONG_CALLER

        assert model.forward_passes == 1  # only the one good request reached the model
        assert sum(server.codes.values()) == 15


async def test_concurrent_requests_share_one_forward_pass() -> None:
    n = 24
    model = FakeForecastModel(max_batch_size=n)
    # A long window: the batch closes because it is full, not because time ran out.
    async with serving(model, MinerConfig(batch_window_s=30.0)) as (hub, server):
        callers = [key(f"staker-{s}") for s in (1, 2, 3, 4, 5)]
        nets = [join(hub, c) for c in callers]
        codes: list[Code] = []

        async def one(i: int) -> None:
            caller, net = callers[i % len(callers)], nets[i % len(callers)]
            response = await call(net, signed_request(caller, peer_of(MINER), forecast_request(float(i), 2)))
            assert decode_json_payload(response.payload) == {"forecast": [float(i) + 7] * 2}
            codes.append(Code(response.code))

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        assert codes == [Code.OK] * n
        assert model.forward_passes == 1 and len(model.batches[0]) == n


async def test_batches_never_exceed_the_max_batch_size() -> None:
    model = FakeForecastModel(max_batch_size=8)
    async with serving(model, MinerConfig(batch_window_s=30.0)) as (hub, server):
        caller = key("staker-100")
        net = join(hub, caller)
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(
                    call, net, signed_request(caller, peer_of(MINER), forecast_request(float(i)))
                )
        sizes = [len(b) for b in model.batches]
        assert sum(sizes) == 20 and max(sizes) <= 8 and len(sizes) <= 4


async def test_waiting_callers_are_served_in_order_of_stake() -> None:
    model = FakeForecastModel(max_batch_size=2, gated=True)
    async with serving(model, MinerConfig(batch_window_s=0.0)) as (hub, server):
        order = [1, 5, 2, 100, 3, 4]
        blocker = key("staker-1")
        blocker_net = join(hub, blocker)
        async with trio.open_nursery() as nursery:
            # The first request occupies the model; the rest pile up behind it.
            nursery.start_soon(
                call, blocker_net, signed_request(blocker, peer_of(MINER), forecast_request(-1.0))
            )
            await model.entered.wait()
            for stake in order:
                caller = key(f"staker-{stake}")
                request = signed_request(caller, peer_of(MINER), forecast_request(float(stake)))
                nursery.start_soon(call, join(hub, caller) if stake != 1 else blocker_net, request)
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics()["queued"] == len(order)
            model.gate.set()
        served = [[r["history"][0] for r in batch] for batch in model.batches[1:]]
        assert served == [[100.0, 5.0], [4.0, 3.0], [2.0, 1.0]]


async def test_full_queue_answers_overloaded_and_stake_displaces() -> None:
    model = FakeForecastModel(max_batch_size=1, gated=True)
    async with serving(model, MinerConfig(batch_window_s=0.0, max_queue=2)) as (hub, server):
        results: dict[str, Code] = {}

        async def named(name: str, stake: int) -> None:
            caller = key(f"staker-{stake}")
            request = signed_request(caller, peer_of(MINER), forecast_request(float(stake)))
            results[name] = Code(
                (await call(join(hub, caller) if name != "busy" else busy_net, request)).code
            )

        busy_net = join(hub, key("staker-3"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(named, "busy", 3)
            await model.entered.wait()
            nursery.start_soon(named, "low", 1)
            nursery.start_soon(named, "mid", 2)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(named, "lower-than-all", 0)  # unstaked: queue full, no one to displace
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(named, "high", 100)  # displaces "low"
            await trio.testing.wait_all_tasks_blocked()
            assert results == {"lower-than-all": Code.OVERLOADED, "low": Code.OVERLOADED}
            model.gate.set()
        assert results == {
            "busy": Code.OK,
            "high": Code.OK,
            "mid": Code.OK,
            "lower-than-all": Code.OVERLOADED,
            "low": Code.OVERLOADED,
        }


async def test_unstaked_callers_are_rate_limited_and_staked_are_not() -> None:
    # Refill rates this slow make the test independent of how long it takes to run.
    config = MinerConfig(
        unstaked_rate_per_s=0.001,
        unstaked_burst=3.0,
        unstaked_total_rate_per_s=0.001,
        unstaked_total_burst=5.0,
    )
    async with serving(FakeForecastModel(), config) as (hub, server):
        stranger, staker = key("stranger"), key("staker-1")
        stranger_net, staker_net = join(hub, stranger), join(hub, staker)

        async def codes(caller_key: object, net: MemoryNetwork, n: int) -> list[Code]:
            out = []
            for _ in range(n):
                request = signed_request(caller_key, peer_of(MINER), forecast_request())  # type: ignore[arg-type]
                out.append(Code((await call(net, request)).code))
            return out

        assert await codes(stranger, stranger_net, 4) == [Code.OK] * 3 + [Code.RATE_LIMITED]
        assert await codes(staker, staker_net, 10) == [Code.OK] * 10
        # Fresh keys each get their own bucket, but all unstaked callers share one: 5 in all.
        fresh = [key(f"sybil-{i}") for i in range(4)]
        got = [(await codes(k, join(hub, k), 1))[0] for k in fresh]
        assert got == [Code.OK, Code.OK, Code.RATE_LIMITED, Code.RATE_LIMITED]


async def test_stuck_model_times_out_and_server_recovers() -> None:
    model = FakeForecastModel(gated=True)
    async with serving(model, MinerConfig(forward_timeout_s=0.2, batch_window_s=0.0)) as (hub, server):
        caller = key("staker-5")
        net = join(hub, caller)
        response = await call(net, signed_request(caller, peer_of(MINER), forecast_request()))
        assert Code(response.code) is Code.TIMEOUT and "forward" in response.message
        model.gate.set()
        response = await call(net, signed_request(caller, peer_of(MINER), forecast_request()))
        assert Code(response.code) is Code.OK


async def test_request_deadline_while_queued_and_caller_giving_up() -> None:
    model = FakeForecastModel(max_batch_size=1, gated=True)
    config = MinerConfig(request_timeout_s=0.3, forward_timeout_s=30.0, batch_window_s=0.0)
    async with serving(model, config) as (hub, server):
        caller = key("staker-5")
        net = join(hub, caller)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, net, signed_request(caller, peer_of(MINER), forecast_request()))
            await model.entered.wait()
            queued = await call(net, signed_request(caller, peer_of(MINER), forecast_request()))
            assert Code(queued.code) is Code.TIMEOUT
            assert server.statistics()["queued"] == 0
            # A caller that hangs up while queued leaves nothing behind in the queue.
            with trio.move_on_after(0.05):
                await ask(
                    net, peer_of(MINER), encode(signed_request(caller, peer_of(MINER), forecast_request()))
                )
            assert server.statistics()["queued"] == 0
            model.gate.set()
        assert model.forward_passes == 1


async def test_failing_model_answers_internal() -> None:
    model = FakeForecastModel(fail=True)
    async with serving(model) as (hub, server):
        caller = key("staker-5")
        response = await call(join(hub, caller), signed_request(caller, peer_of(MINER), forecast_request()))
        assert (Code(response.code), response.message) == (Code.INTERNAL, "model failed")


async def test_unknown_protocol_version_is_not_served() -> None:
    async with serving(FakeForecastModel()) as (hub, server):
        assert PROTOCOL in hub.peers[peer_of(MINER)].handlers
        assert "/p2pnode/p2pnode-test/inference/2" not in hub.peers[peer_of(MINER)].handlers
