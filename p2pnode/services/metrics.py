"""Prometheus metrics of one peer, on a registry of its own (never the process-global one).

`NodeMetrics` holds the families that services update as things happen (imports, admissions,
miner batches, validator rounds). What is already counted elsewhere (gossip verdicts, request
outcomes, peer scores, heights) is read at scrape time by `attach_node` / `attach_network`
collectors, so no second copy of those counters can drift. Every family has HELP and TYPE lines.
Label values are bounded: topics and protocols are the node's own, reasons are code names, uids are
below a subnet's size, and peer labels are limited to the connected peers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No `*_created` series: they would double the families without telling an operator anything.
disable_created_metrics()
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)
MAX_PEER_LABELS = 64


class NodeMetrics:
    """The event-driven families of one peer, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # chain
        self.block_imports = Counter("p2pnode_block_imports", "Blocks offered for import, by outcome.",
                                     ["outcome"], registry=r)
        self.block_import_seconds = Histogram("p2pnode_block_import_seconds",
                                              "Time to verify and import one block (state transition included).",
                                              buckets=_SECONDS, registry=r)
        self.epoch_block_seconds = Histogram("p2pnode_subnet_epoch_block_import_seconds",
                                             "Import time of blocks that ran at least one subnet epoch.",
                                             buckets=_SECONDS, registry=r)
        self.subnet_epochs = Counter("p2pnode_subnet_epochs", "Subnet epochs run by imported blocks, by netuid.",
                                     ["netuid"], registry=r)
        self.reorgs = Counter("p2pnode_reorgs", "Reorganisations of the canonical chain.", registry=r)
        self.reorg_depth = Histogram("p2pnode_reorg_depth_blocks", "Canonical blocks rolled back per reorganisation.",
                                     buckets=(1, 2, 3, 4, 8, 16, 32, 64), registry=r)
        self.mempool_admissions = Counter("p2pnode_mempool_admissions",
                                          "Transactions offered to the mempool, by source and admission reason.",
                                          ["source", "reason"], registry=r)
        # miner
        self.miner_requests = Counter("p2pnode_miner_requests", "Inference requests answered, by result code.",
                                      ["code"], registry=r)
        self.miner_batch_size = Histogram("p2pnode_miner_batch_size", "Requests per forward pass.",
                                          buckets=_BATCH, registry=r)
        self.miner_latency = Histogram("p2pnode_miner_latency_seconds",
                                       "Time from a request's arrival to its answer.", buckets=_SECONDS, registry=r)
        self.miner_forward_seconds = Histogram("p2pnode_miner_forward_seconds", "Duration of one forward pass.",
                                               buckets=_SECONDS, registry=r)
        self.miner_queue = Gauge("p2pnode_miner_queue_depth", "Requests waiting for a forward pass.", registry=r)
        # validator
        self.validator_rounds = Counter("p2pnode_validator_rounds", "Validator rounds, by outcome (ok or failed).",
                                        ["outcome"], registry=r)
        self.validator_round_seconds = Histogram("p2pnode_validator_round_seconds", "Duration of one validator round.",
                                                 buckets=_SECONDS, registry=r)
        self.validator_challenges = Counter("p2pnode_validator_challenges",
                                            "Challenges sent to miners, by outcome (scored, pending, no_answer, ...).",
                                            ["outcome"], registry=r)
        self.validator_score = Gauge("p2pnode_validator_miner_score", "The validator's moving average score per uid.",
                                     ["uid"], registry=r)
        self.validator_weight_submissions = Counter(
            "p2pnode_validator_weight_submissions",
            "Weight transactions submitted, by kind (set, commit, reveal) and outcome (submitted, refused).",
            ["kind", "outcome"], registry=r)
        self.validator_reveals = Counter("p2pnode_validator_reveals",
                                         "Weight commits settled, by outcome (revealed, refused, expired).",
                                         ["outcome"], registry=r)
        # network
        self.request_seconds = Histogram("p2pnode_reqresp_request_seconds",
                                         "Duration of outbound requests, by protocol and outcome.",
                                         ["protocol", "outcome"], buckets=_SECONDS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, protocol: str, outcome: str, seconds: float) -> None:
        self.request_seconds.labels(protocol, outcome).observe(seconds)

    def set_validator_scores(self, scores: dict[int, float]) -> None:
        self.validator_score.clear()
        for uid, score in scores.items():
            self.validator_score.labels(str(uid)).set(score)


class _Collector(Collector):
    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        return self._collect()


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def attach_node(metrics: NodeMetrics, status: Callable[[], dict[str, Any]], sync_imported: Callable[[], int]) -> None:
    """Chain gauges and counters read from the node's status at scrape time."""

    def collect() -> Iterator[Metric]:
        s = status()
        head, finalized = s["head_height"], s["finalized_height"] or 0
        yield _gauge("p2pnode_head_height", "Height of the head block.", head)
        yield _gauge("p2pnode_head_slot", "Slot of the head block.", s["head_slot"])
        yield _gauge("p2pnode_current_slot", "The slot the clock is in now.", s["current_slot"])
        yield _gauge("p2pnode_finalized_height", "Height of the latest finalized checkpoint.", finalized)
        yield _gauge("p2pnode_justified_epoch", "Epoch of the latest justified checkpoint.", s["justified_epoch"] or 0)
        yield _gauge("p2pnode_finality_lag_blocks", "Blocks between the head and the finalized checkpoint.",
                     head - finalized)
        yield _gauge("p2pnode_syncing", "1 while the node is catching up with its peers.", int(bool(s["syncing"])))
        yield _gauge("p2pnode_sync_slots_behind", "Slots between the clock and the head (sync progress).",
                     max(0, s["current_slot"] - s["head_slot"]))
        yield _counter("p2pnode_sync_blocks_imported", "Blocks imported through range sync.", sync_imported())
        yield _gauge("p2pnode_mempool_transactions", "Transactions waiting in the mempool.", s["mempool"])
        yield _gauge("p2pnode_votes_pending", "Finality votes waiting for inclusion.", s["votes_pending"])
        yield _gauge("p2pnode_orphan_blocks", "Blocks held until their parent arrives.", s["orphans"])
        yield _gauge("p2pnode_fork_blocks", "Verified blocks off the canonical chain.", s["forks"])
        yield _counter("p2pnode_blocks_proposed", "Blocks this node proposed.", s["blocks_proposed"])
        yield _counter("p2pnode_votes_cast", "Finality votes this node cast.", s["votes_cast"])
        yield _counter("p2pnode_votes_gossiped", "Finality votes this node cast that it also gossiped (no proposer "
                       "took them directly, or the chain had not counted them after those proposers' slots).",
                       s["votes_gossiped"])
        yield _counter("p2pnode_evidence_submitted", "Equivocation evidence this node submitted.",
                       s["evidence_submitted"])
        info = GaugeMetricFamily("p2pnode_info", "Constant 1, labelled with the chain and this peer.",
                                 labels=["chain_id", "peer_id"])
        info.add_metric([s["chain_id"], s["peer_id"]], 1)
        yield info

    metrics.registry.register(_Collector(collect))


def attach_network(metrics: NodeMetrics, network: Any) -> None:
    """Gossip, request/response and peer-score families read from a `LibP2PNetwork` at scrape time."""
    network.request_observer = metrics.observe_request

    def collect() -> Iterator[Metric]:
        connected = network.connected_peers()
        yield _gauge("p2pnode_peers_connected", "Peers with an open connection.", len(connected))
        yield _gauge("p2pnode_peers_banned", "Peers banned now.", len(network.scorer.banned_peers()))
        score = GaugeMetricFamily("p2pnode_peer_score", "Score of each connected peer (bans below the threshold).",
                                  labels=["peer"])
        bans = 0
        for peer in connected[:MAX_PEER_LABELS]:
            view = network.peer_score(peer)
            score.add_metric([peer], view.score)
            bans += view.ban_count
        yield score
        yield _counter("p2pnode_peer_bans", "Bans of the connected peers so far (their ban counts, summed).", bans)
        gossip = CounterMetricFamily("p2pnode_gossip_messages", "Gossip messages received, by topic and verdict.",
                                     labels=["topic", "verdict"])
        for (topic, verdict), count in sorted(network.topics.verdicts.items()):
            gossip.add_metric([topic, verdict], count)
        yield gossip
        mesh = GaugeMetricFamily("p2pnode_gossip_mesh_peers", "Peers in the gossip mesh, by topic.", labels=["topic"])
        for topic, peers in sorted(network.gossipsub.mesh.items()):
            mesh.add_metric([topic], len(peers))
        yield mesh
        outbound = CounterMetricFamily("p2pnode_reqresp_requests", "Outbound requests, by protocol and outcome.",
                                       labels=["protocol", "outcome"])
        for (protocol, outcome), count in sorted(network.request_outcomes.items()):
            outbound.add_metric([protocol, outcome], count)
        yield outbound
        inbound = CounterMetricFamily("p2pnode_reqresp_served", "Inbound requests, by protocol and outcome.",
                                      labels=["protocol", "outcome"])
        for (protocol, outcome), count in sorted(network.reqresp.served.items()):
            inbound.add_metric([protocol, outcome], count)
        yield inbound
        yield _gauge("p2pnode_reqresp_inbound_in_flight", "Inbound requests being served now.",
                     network.reqresp.inbound_in_flight())
        # What py-libp2p itself knows, where it is cheap to read.
        topic_peers = GaugeMetricFamily("p2pnode_gossip_topic_peers", "Peers subscribed to each of our topics.",
                                        labels=["topic"])
        for topic in network.topics.topics():
            topic_peers.add_metric([topic], len(network.topic_peers(topic)))
        yield topic_peers
        yield _gauge("p2pnode_dht_routing_table_peers", "Peers in the Kademlia routing table.",
                     network.dht.get_routing_table_size())
        yield _counter("p2pnode_libp2p_handler_errors", "Exceptions of py-libp2p stream handlers caught by our guard.",
                       network.guard_stats.total)
        yield _counter("p2pnode_loop_lag_seconds", "How late the event loop's wakeups came, summed (overload).",
                       network.loop_lag.total_lag_s)
        yield _counter("p2pnode_timeout_points_forgiven", "Timeout penalty points not charged: our own loop was late.",
                       network.timeout_points_forgiven)

    metrics.registry.register(_Collector(collect))
