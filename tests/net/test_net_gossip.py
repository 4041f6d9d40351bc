"""Gossip between in-process hosts: delivery, validators, penalties, bans."""

from __future__ import annotations

import pytest
from netutil import TOPIC, Inbox, accept_all, listening_node, node, running, wait_for

from p2pnode.net.host import NetConfig
from p2pnode.net.scoring import DEFAULT_PENALTIES
from protocols.network import RequestError, Verdict

pytestmark = pytest.mark.timeout(60)


def only_ok_payloads(peer: str, data: bytes) -> Verdict:
    if data.startswith(b"ok:"):
        return Verdict.ACCEPT
    if data.startswith(b"stale:"):
        return Verdict.IGNORE
    return Verdict.REJECT


async def test_two_hosts_connect_via_bootstrap_and_gossip() -> None:
    alice, alice_inbox = listening_node("alice")
    async with alice:
        assert all(a.endswith(f"/p2p/{alice.peer_id}") for a in alice.listen_addrs())
        bob, bob_inbox = listening_node("bob", bootstrap=alice.listen_addrs())
        async with bob:
            assert bob.connected_peers() == [alice.peer_id]
            await wait_for(lambda: bob.mesh_peers(TOPIC) and alice.mesh_peers(TOPIC), 10, "mesh")
            await bob.publish(TOPIC, b"from bob")
            await alice.publish(TOPIC, b"from alice")
            await wait_for(lambda: alice_inbox.messages and bob_inbox.messages, 10, "delivery")
            # The handler learns who forwarded the message; nobody gets their own publish back.
            assert alice_inbox.messages == [(bob.peer_id, b"from bob")]
            assert bob_inbox.messages == [(alice.peer_id, b"from alice")]
            with pytest.raises(ValueError):
                await bob.publish(TOPIC, b"x" * (512 * 1024 + 1))


async def test_rejected_messages_penalise_and_finally_ban_the_sender() -> None:
    config = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)
    hub, hub_inbox = listening_node("hub", config=config, validator=only_ok_payloads)
    async with hub:
        honest, honest_inbox = listening_node("honest", hub.listen_addrs(), config, validator=only_ok_payloads)
        rogue, rogue_inbox = listening_node("rogue", hub.listen_addrs(), config)
        async with running(honest, rogue):
            await wait_for(lambda: len(hub.mesh_peers(TOPIC)) == 2, 10, "hub mesh")

            # An IGNOREd message costs nothing; a REJECTed one costs the forwarder.
            await rogue.publish(TOPIC, b"stale:1")
            await rogue.publish(TOPIC, b"forged:1")
            await wait_for(lambda: hub.peer_score(rogue.peer_id).score < 0, 10, "penalty")
            assert hub.peer_score(rogue.peer_id).score == pytest.approx(-DEFAULT_PENALTIES["invalid_message"].amount, abs=0.1)
            assert hub.peer_score(honest.peer_id).score == 0

            for i in range(2, 7):
                await rogue.publish(TOPIC, b"forged:%d" % i)
            await wait_for(lambda: hub.is_banned(rogue.peer_id), 10, "ban")
            await wait_for(lambda: rogue.peer_id not in hub.connected_peers(), 10, "rogue disconnected")
            assert hub_inbox.messages == []

            # Honest peers keep exchanging after the ban.
            await honest.publish(TOPIC, b"ok:after-ban")
            await hub.publish(TOPIC, b"ok:from-hub")
            await wait_for(lambda: hub_inbox.payloads() == [b"ok:after-ban"], 10, "hub receives")
            await wait_for(lambda: honest_inbox.payloads() == [b"ok:from-hub"], 10, "honest receives")

            # A banned peer that dials back in is dropped again.
            await rogue.connect(hub.listen_addrs()[0])
            await wait_for(lambda: rogue.peer_id not in hub.connected_peers(), 10, "reconnect refused")
            assert hub.statistics()["banned_peers"] == [rogue.peer_id]


async def test_lifecycle_misuse_is_refused() -> None:
    for bad in ("garbage", "/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4001/p2p/nonsense"):
        with pytest.raises(ValueError, match="bad bootstrap address"):
            node("lifecycle", bootstrap=[bad])
    network = node("lifecycle")
    with pytest.raises(RuntimeError):
        await network.publish(TOPIC, b"too early")
    with pytest.raises(RequestError):
        await network.request(network.peer_id, "/p2pnode/testnet/echo/1", b"", timeout=1, max_response_bytes=10)
    network.subscribe(TOPIC, accept_all, Inbox())
    with pytest.raises(ValueError):
        network.subscribe(TOPIC, accept_all, Inbox())  # one handler per topic
    async with network:
        with pytest.raises(RuntimeError):
            await network.run()  # an instance runs once
        assert await network.find_peer_addrs(network.peer_id) == network.listen_addrs()
        with pytest.raises(ValueError):
            await network.find_peer_addrs("nonsense")
        with pytest.raises(ValueError, match="bad peer address"):
            await network.connect("/ip4/127.0.0.1/tcp/1")
    with pytest.raises(RuntimeError):
        await network.publish(TOPIC, b"too late")
