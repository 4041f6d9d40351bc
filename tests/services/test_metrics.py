"""Prometheus metrics: one registry per peer, every family documented, miners and validators counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from models.tasks import ForecastTask
from p2pnode.chain.types import Transfer
from p2pnode.net.host import LibP2PNetwork
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.validator import ValidatorConfig, ValidatorLoop
from p2pnode.services.metrics import NodeMetrics, attach_network, attach_node
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "market"))
from marketutil import CHAIN, NETUID, FakeForecastModel, OneSubnet, join, key, peer_of, wall_clock  # noqa: E402

from p2pnode.services.market.chain_view import NeuronInfo  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, object], name: str, suffix: str = "", **labels: str) -> float:
    """The sum of the family's samples named `name + suffix` (counters: `_total`) with these labels."""
    fam = fams[name]
    wanted = {name + suffix} if suffix else {name, name + "_total"}
    return sum(s.value for s in fam.samples  # type: ignore[attr-defined]
               if s.name in wanted and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_metrics_parse_and_cover_chain_network_miner_and_validator(tmp_path: Path) -> None:
    metrics = NodeMetrics()
    # A chain service that admits a local transaction.
    chain = open_chain(tmp_path / "chain.sqlite", make_genesis(4, 2))
    hub = MemoryHub()
    node = ChainService(chain, hub.add_peer("chain-peer"), TrioClock(), metrics=metrics)
    alice, bob = user_keys(2)
    admission = await node.submit_tx(codec.encode(signed(alice, 0, Transfer(to=bob.public_key, amount=5))))
    assert admission.added
    await node.submit_tx(b"not a transaction")
    attach_node(metrics, node.status, lambda: node.sync.blocks_imported)
    # A libp2p network (not started: its counters are read as they are).
    network = LibP2PNetwork(bytes(range(32)))
    attach_network(metrics, network)
    # A miner answering a validator's challenge on the in-memory network.
    miner_key, validator_key = key("metrics-miner"), key("metrics-validator")
    miner = MinerServer(miner_key, CHAIN, NETUID, FakeForecastModel(), ForecastTask(), lambda _: 0, wall_clock(),
                        metrics=metrics)
    validator_net = join(hub, validator_key)
    subnet = OneSubnet([NeuronInfo(0, validator_key.public_key, peer_of(validator_key)),
                        NeuronInfo(1, miner_key.public_key, peer_of(miner_key))])
    submitted = []

    async def submit(body: object) -> bool:
        submitted.append(body)
        return True

    loop = ValidatorLoop(validator_key, CHAIN, NETUID, ForecastTask(), validator_net, subnet, submit,
                         tmp_path / "validator", wall_clock(), rng_seed=1,
                         config=ValidatorConfig(sample_size=4, request_timeout_s=5.0), metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(miner.run, join(hub, miner_key))
        report = await loop.run_round()
        nursery.cancel_scope.cancel()
    assert report.outcomes == {1: "pending"} or report.outcomes == {1: "scored"}

    text = metrics.render().decode()
    fams = families(text)
    assert not [name for name in fams if name.endswith("_created")]
    documented = [name for name, fam in fams.items() if fam.documentation]  # type: ignore[attr-defined]
    assert len(documented) == len(fams) >= 40, sorted(fams)
    for name in fams:
        assert f"# HELP {name}" in text and f"# TYPE {name}" in text
    assert {n for n in fams if n.startswith("p2pnode_miner_")} >= {
        "p2pnode_miner_requests", "p2pnode_miner_batch_size", "p2pnode_miner_latency_seconds"}
    assert {n for n in fams if n.startswith("p2pnode_validator_")} >= {
        "p2pnode_validator_challenges", "p2pnode_validator_weight_submissions", "p2pnode_validator_reveals",
        "p2pnode_validator_rounds", "p2pnode_validator_miner_score"}
    assert sample(fams, "p2pnode_miner_requests", code="OK") == 1
    assert sample(fams, "p2pnode_miner_batch_size", "_count") == 1
    assert sample(fams, "p2pnode_miner_latency_seconds", "_count") == 1
    assert sample(fams, "p2pnode_validator_challenges") == 1
    assert sample(fams, "p2pnode_mempool_admissions", source="local", reason="added") == 1
    assert sample(fams, "p2pnode_mempool_admissions", source="local", reason="malformed") == 1
    assert sample(fams, "p2pnode_mempool_transactions") == 1
    assert sample(fams, "p2pnode_head_height") == 0
    assert "p2pnode_gossip_messages" in fams and "p2pnode_reqresp_requests" in fams and "p2pnode_peer_score" in fams


def test_each_peer_has_its_own_registry() -> None:
    first, second = NodeMetrics(), NodeMetrics()
    first.mempool_admissions.labels("local", "added").inc()
    assert 'reason="added"' in first.render().decode()
    assert 'reason="added"' not in second.render().decode()
