"""Remember the addresses of connected peers in the store, so a restarted node can dial them again."""

from __future__ import annotations

import time

import trio

from p2pnode.net.host import LibP2PNetwork
from p2pnode.store import Store

PEER_CACHE_INTERVAL_S = 30.0
PEERS_PER_ROUND = 32
LOOKUP_DEADLINE_S = 5.0


async def cache_peers(network: LibP2PNetwork, store: Store, interval_s: float = PEER_CACHE_INTERVAL_S) -> None:
    while True:
        await trio.sleep(interval_s)
        now_ms = int(time.time() * 1000)
        for peer in network.connected_peers()[:PEERS_PER_ROUND]:
            with trio.move_on_after(LOOKUP_DEADLINE_S):
                addrs = await network.find_peer_addrs(peer)
                if addrs:
                    store.remember_peer(peer, addrs, now_ms)


def cached_bootstrap(store: Store, own_peer_id: str, configured: list[str], limit: int = 16) -> list[str]:
    """Configured addresses first, then remembered ones; never our own; each once."""
    cached = [a for _, addrs in store.known_peers(limit) for a in addrs]
    own = "/p2p/" + own_peer_id
    return [a for a in dict.fromkeys([*configured, *cached]) if not a.endswith(own)]
