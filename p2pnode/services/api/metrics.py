"""The node's gauges in Prometheus' text format (GET /metrics)."""

from __future__ import annotations

from typing import Any


def metrics_text(status: dict[str, Any]) -> str:
    lines = [
        f"p2pnode_head_height {status['head_height']}",
        f"p2pnode_finalized_height {status['finalized_height'] or 0}",
        f"p2pnode_peers {status['peers']}",
        f"p2pnode_mempool_txs {status['mempool']}",
        f"p2pnode_blocks_proposed_total {status['blocks_proposed']}",
        f"p2pnode_votes_cast_total {status['votes_cast']}",
        f"p2pnode_syncing {int(bool(status['syncing']))}",
    ]
    return "\n".join(lines) + "\n"
