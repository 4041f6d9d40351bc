"""Integration: a validator and a query client reach a real MinerServer over two libp2p hosts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
from marketutil import CHAIN, NETUID, OneSubnet, wall_clock

from models import create_model
from models.tasks import ForecastTask
from p2pnode.chain.schema import ChainObject
from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.query import handle_query
from p2pnode.services.market.routing import Router
from p2pnode.services.market.validator import ValidatorConfig, ValidatorLoop
from protocols.crypto import keypair_from_seed

pytestmark = pytest.mark.timeout(120)

QUIET = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)


def seed(name: str) -> bytes:
    return hashlib.sha256(b"market-libp2p:" + name.encode()).digest()


async def test_validator_and_query_over_libp2p(tmp_path: Path) -> None:
    task = ForecastTask()
    model = create_model("forecast-naive", task)
    miner_key, validator_key = keypair_from_seed(seed("miner")), keypair_from_seed(seed("validator"))
    miner_net = LibP2PNetwork(seed("miner"), config=QUIET)
    server = MinerServer(miner_key, CHAIN, NETUID, model, task, lambda _: 0, wall_clock())
    submitted: list[ChainObject] = []

    async def submit(body: ChainObject) -> None:
        submitted.append(body)

    async with miner_net, trio.open_nursery() as nursery:
        await nursery.start(server.run, miner_net)
        validator_net = LibP2PNetwork(seed("validator"), bootstrap=miner_net.listen_addrs(), config=QUIET)
        async with validator_net:
            chain = OneSubnet(
                [
                    NeuronInfo(0, validator_key.public_key, validator_net.peer_id),
                    NeuronInfo(1, miner_key.public_key, miner_net.peer_id, incentive=65535),
                ]
            )
            loop = ValidatorLoop(
                validator_key,
                CHAIN,
                NETUID,
                task,
                validator_net,
                chain,
                submit,
                tmp_path,
                wall_clock(),
                config=ValidatorConfig(truth_delay_rounds=0, request_timeout_s=10.0),
            )
            report = await loop.run_round()
            assert report.outcomes == {1: "scored"}
            assert 0 < report.scores[1] <= 1
            # forecast-naive answers exactly the task's baseline: valid, scored, and worth no weight.
            assert submitted == [] and loop.weights() == ([], [])

            result = await handle_query(
                Router(loop.client, loop.clock), chain.neurons(NETUID), NETUID, task, "3, 1, 4, 1, 5, 9, 2, 6"
            )
            assert (result["uid"], result["response"]) == (1, {"forecast": [6.0] * task.config.horizon})
            assert server.statistics()["codes"] == {"OK": 2}
        nursery.cancel_scope.cancel()
