"""Gossip topic names and request/response protocol ids, one place for both adapters.

Every name carries the chain id, so peers of different chains never mix messages, and a version
suffix, so a message format can change without ambiguity.
"""

from __future__ import annotations

TOPIC_KINDS = ("blocks", "stake", "weights", "votes", "txbatch")
# Transactions travel on two topics: weights (set, commit, reveal: the validators' steady traffic)
# and stake (everything else: transfers, staking, registration, serving, subnets, governance,
# slashing evidence), so peers can score and rate-limit the two kinds of traffic apart.
WEIGHT_TX_KINDS = frozenset({"set_weights", "commit_weights", "reveal_weights"})
# `txbatch` carries stake-topic transactions in bulk: a canonical-CBOR array of at most
# MAX_GOSSIP_BATCH_TXS byte strings, each one encoded SignedTx, so a burst of submissions costs the
# network one gossip message per batch instead of one per transaction.
MAX_GOSSIP_BATCH_TXS = 64
# A txbatch message's size; a publisher starts a new batch before one would grow past it.
MAX_GOSSIP_BATCH_BYTES = 256 * 1024


def tx_topic_kind(tx_kind: str) -> str:
    """The topic kind a transaction of `tx_kind` is gossiped on."""
    return "weights" if tx_kind in WEIGHT_TX_KINDS else "stake"


def topic(chain_id: str, kind: str) -> str:
    """`/p2pnode/<chain_id>/<kind>/1` for kind in blocks, stake, weights, votes, txbatch."""
    if kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"/p2pnode/{chain_id}/{kind}/1"


def status_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/status/1"


def blocks_by_range_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/blocks_by_range/1"


def state_chunk_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/state_chunk/1"


def vset_walk_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/vset_walk/1"


def vote_protocol(chain_id: str) -> str:
    """A validator hands its finality vote to the coming proposers directly (`docs/spec/wire.md`)."""
    return f"/p2pnode/{chain_id}/req/vote/1"
