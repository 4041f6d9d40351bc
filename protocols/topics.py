"""Gossip topic names and request/response protocol ids, one place for both adapters.

Every name carries the chain id, so peers of different chains never mix messages, and a version
suffix, so a message format can change without ambiguity.
"""

from __future__ import annotations

TOPIC_KINDS = ("blocks", "txs", "votes")


def topic(chain_id: str, kind: str) -> str:
    """`/p2pnode/<chain_id>/<kind>/1` for kind in blocks, txs, votes."""
    if kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"/p2pnode/{chain_id}/{kind}/1"


def blocks_topic(chain_id: str) -> str:
    return topic(chain_id, "blocks")


def txs_topic(chain_id: str) -> str:
    return topic(chain_id, "txs")


def votes_topic(chain_id: str) -> str:
    return topic(chain_id, "votes")


def status_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/status/1"


def blocks_by_range_protocol(chain_id: str) -> str:
    return f"/p2pnode/{chain_id}/req/blocks_by_range/1"
