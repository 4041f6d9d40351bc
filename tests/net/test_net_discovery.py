"""Kademlia discovery beyond the bootstrap peer, between in-process hosts."""

from __future__ import annotations

import socket

import pytest
import trio
from netutil import TOPIC, listening_node, node, running, seed_for, wait_for

from p2pnode.net.host import LibP2PNetwork, NetConfig

pytestmark = pytest.mark.timeout(60)

# No periodic refreshes beyond the DHT's own one at start.
QUIET = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)


async def test_peer_finds_a_third_peer_address_via_the_dht() -> None:
    a = node("dht-a", config=QUIET)
    async with a:
        b = node("dht-b", a.listen_addrs(), QUIET)
        c = node("dht-c", a.listen_addrs(), QUIET)
        async with running(b, c):
            # B and C were only given A. C's start-up self-lookup (Kademlia runs one at start)
            # asks A, learns of B and dials it. Let that happen, then make B forget C entirely:
            # from then on only a lookup through A can tell B where C is.
            await wait_for(lambda: c.peer_id in b.connected_peers(), 10, "c's start-up lookup")
            c_id = c.host.get_id()
            await b.host.disconnect(c_id)
            await wait_for(lambda: c.peer_id not in b.connected_peers(), 10, "b drops c")
            b.dht.routing_table.remove_peer(c_id)
            if b.host.get_peerstore().has_peer(c_id):  # the disconnect may already have cleared it
                b.host.get_peerstore().clear_peerdata(c_id)
            assert c_id not in b.host.get_peerstore().peers_with_addrs()
            c_addrs = await b.find_peer_addrs(c.peer_id)
            assert set(c.listen_addrs()) <= set(c_addrs)
            assert await b.connect(c_addrs[0]) == c.peer_id
            await wait_for(lambda: b.peer_id in c.connected_peers(), 10, "c sees b")
            assert await b.find_peer_addrs(b.peer_id) == b.listen_addrs()


async def test_discovery_loop_connects_to_peers_beyond_the_bootstrap_and_gossip_flows() -> None:
    eager = NetConfig(dht_refresh_after_start_s=(0.5,), dht_refresh_interval_s=1.0)
    a = node("disc-a", config=eager)
    async with a:
        b, b_inbox = listening_node("disc-b", a.listen_addrs(), eager)
        c, c_inbox = listening_node("disc-c", a.listen_addrs(), eager)
        async with running(b, c):
            # Only A was given to B and C; the routing-table refresh makes them meet.
            await wait_for(lambda: c.peer_id in b.connected_peers(), 20, "b connected to c")
            await wait_for(lambda: c.peer_id in b.mesh_peers(TOPIC), 10, "b and c in one mesh")
            await c.publish(TOPIC, b"direct")
            await wait_for(lambda: b_inbox.messages == [(c.peer_id, b"direct")], 10, "delivery from c")


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_peer_left_alone_redials_its_bootstrap_peer_when_it_returns() -> None:
    config = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600, bootstrap_redial_interval_s=0.5)
    listen = [f"/ip4/127.0.0.1/tcp/{free_tcp_port()}"]
    first = LibP2PNetwork(seed_for("restarting"), listen_addrs=listen, config=config)
    first_running = trio.CancelScope()

    async def run_first(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with first_running:
            await first.run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_first)
        bootstrap = first.listen_addrs()
        follower = node("follower", bootstrap, config)
        async with follower:
            assert follower.connected_peers() == [first.peer_id]
            first_running.cancel()  # the bootstrap peer goes away...
            await wait_for(lambda: not follower.connected_peers(), 10, "follower alone")
            # ...and comes back with the same key on the same address.
            async with LibP2PNetwork(seed_for("restarting"), listen_addrs=listen, config=config) as second:
                assert second.listen_addrs() == bootstrap
                await wait_for(lambda: follower.connected_peers() == [second.peer_id], 10, "follower reconnects")
