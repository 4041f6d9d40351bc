"""Connection churn and failures inside py-libp2p must not take a node down (issue 13, item 15).

A victim node (an in-process `LibP2PNetwork` on loopback) publishes block-sized gossip to an
honest peer without pause while other peers connect and drop in quick succession, some of them
banned on the way out (a ban racing a disconnect is what made py-libp2p's pubsub raise KeyError in
`_teardown_if_connected`, stop the host, and leave block production with "publish needs a running
network"). Then exceptions are injected into pubsub, gossipsub, the muxer and the DHT: the node
keeps serving every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2pnode.net import libp2p_workarounds as workarounds
from p2pnode.net.host import LibP2PNetwork, NetConfig
from protocols.network import Verdict

pytestmark = pytest.mark.timeout(120)

TOPIC = "/p2pnode/churn/blocks/1"
QUIET = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600)


def _seed(name: str) -> bytes:
    return hashlib.sha256(b"p2pnode-churn:" + name.encode()).digest()


def _accept(peer: str, data: bytes) -> Verdict:
    return Verdict.ACCEPT


async def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:  # noqa: ASYNC109
    with trio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 (libp2p signals no event for these states)
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Received:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    async def __call__(self, peer: str, data: bytes) -> None:
        self.payloads.append(data)


def _node(name: str, bootstrap: list[str] | None = None) -> tuple[LibP2PNetwork, Received]:
    network, inbox = LibP2PNetwork(_seed(name), bootstrap=bootstrap or [], config=QUIET), Received()
    network.subscribe(TOPIC, _accept, inbox)
    return network, inbox


class Pair:
    """A victim and an honest peer; `publishing` keeps the victim gossiping like a block producer."""

    def __init__(self, victim: LibP2PNetwork, honest: LibP2PNetwork, honest_inbox: Received) -> None:
        self.victim, self.honest, self.honest_inbox = victim, honest, honest_inbox
        self.published = 0
        self.publish_errors: list[BaseException] = []

    async def publishing(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.published += 1
            try:
                await self.victim.publish(TOPIC, b"block-%d:" % self.published + bytes(2048))
            except Exception as exc:  # recorded, and the test fails on it
                self.publish_errors.append(exc)
            await trio.sleep(0.05)

    async def assert_still_serving(self) -> None:
        assert not self.publish_errors, self.publish_errors[:3]
        marker = b"after-%d" % self.published
        await self.victim.publish(TOPIC, marker)
        await _wait_for(lambda: marker in self.honest_inbox.payloads, 15, "gossip from the victim")
        assert self.honest.peer_id in self.victim.connected_peers()


@asynccontextmanager
async def pair() -> AsyncIterator[Pair]:
    victim, _ = _node("victim")
    async with victim:
        honest, honest_inbox = _node("honest", victim.listen_addrs())
        async with honest:
            await _wait_for(lambda: honest.peer_id in victim.mesh_peers(TOPIC), 15, "mesh")
            yield Pair(victim, honest, honest_inbox)


async def _churn(victim: LibP2PNetwork, name: str, rounds: int, ban: bool) -> None:
    """Connect a fresh peer, let it subscribe, then drop it (banned on the way out if `ban`)."""
    for round_ in range(rounds):
        churner, _ = _node(f"{name}-{round_}", victim.listen_addrs())
        churner_id = churner.peer_id
        async with churner:
            await _wait_for(lambda: churner_id in victim.topic_peers(TOPIC), 15, "churner subscribed")  # noqa: B023
            if ban:
                # The ban tears the pubsub peer down while the churner's own exit closes the connection.
                victim.penalise(churner_id, "test_churn", 1_000.0)


async def test_peers_connecting_and_dropping_while_gossip_flows() -> None:
    async with pair() as p, trio.open_nursery() as nursery:
        await nursery.start(p.publishing)
        async with trio.open_nursery() as churners:
            for index in range(3):
                churners.start_soon(_churn, p.victim, f"banned{index}", 4, True)
            churners.start_soon(_churn, p.victim, "leaver", 4, False)
        await p.assert_still_serving()
        assert p.published > 10
        nursery.cancel_scope.cancel()


async def test_failing_pubsub_task_drops_that_peer_only() -> None:
    async with pair() as p:
        attacker, _ = _node("attacker", p.victim.listen_addrs())
        original_push = p.victim.pubsub.push_msg
        attacker_id = attacker.host.get_id()

        async def push_msg_failing_for_attacker(msg_forwarder, msg):  # type: ignore[no-untyped-def]
            if msg_forwarder == attacker_id:
                raise RuntimeError("injected pubsub failure")
            await original_push(msg_forwarder, msg)

        p.victim.pubsub.push_msg = push_msg_failing_for_attacker  # type: ignore[method-assign]
        before = workarounds.SERVICE_FAILURES.dropped_connections
        async with attacker:
            await _wait_for(
                lambda: attacker.peer_id in p.victim.topic_peers(TOPIC), 15, "attacker subscribed"
            )
            await attacker.publish(TOPIC, b"poison")
            await _wait_for(
                lambda: attacker.peer_id not in p.victim.connected_peers(),
                15,
                "the attacker's connection closed",
            )
        assert workarounds.SERVICE_FAILURES.dropped_connections > before
        await p.assert_still_serving()


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("injected heartbeat failure"), ConnectionClosedError("injected connection error")],
    ids=["bug", "connection-shutdown"],
)
async def test_failing_gossipsub_heartbeat_is_restarted(failure: Exception) -> None:
    # A connection-shutdown error would otherwise end the heartbeat quietly: a node with no mesh upkeep.
    async with pair() as p:
        router = p.victim.gossipsub
        beats = 0
        original_mesh_heartbeat = router.mesh_heartbeat

        def mesh_heartbeat_failing_once():  # type: ignore[no-untyped-def]
            nonlocal beats
            beats += 1
            if beats == 1:
                raise failure
            return original_mesh_heartbeat()

        router.mesh_heartbeat = mesh_heartbeat_failing_once  # type: ignore[method-assign]
        restarts = workarounds.SERVICE_FAILURES.restarts
        await _wait_for(lambda: beats >= 3, 15, "heartbeats after the restart")
        assert workarounds.SERVICE_FAILURES.restarts > restarts
        await p.assert_still_serving()


async def test_failing_muxer_closes_that_connection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair() as p:
        attacker, _ = _node("muxer-attacker")
        attacker_id = attacker.host.get_id()
        original_start = Yamux.start

        async def start_failing_for_attacker(self: Yamux) -> None:
            if self.peer_id == attacker_id:  # only the victim's side of the attacker's connection
                raise RuntimeError("injected muxer failure")
            await original_start(self)

        monkeypatch.setattr(Yamux, "start", start_failing_for_attacker)
        failures = workarounds.SERVICE_FAILURES.total
        async with attacker:
            try:
                await attacker.connect(p.victim.listen_addrs()[0])
            except Exception:
                pass  # the victim may close the connection before the dial completes
            await _wait_for(lambda: workarounds.SERVICE_FAILURES.total > failures, 15, "the muxer failure")
        await p.assert_still_serving()


async def test_failing_dht_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: dict[int, int] = {}
    original_main_loop = KadDHT._run_main_loop

    async def main_loop_failing_first_time(self: KadDHT) -> None:
        runs[id(self)] = runs.get(id(self), 0) + 1
        if runs[id(self)] == 1:
            raise RuntimeError("injected DHT failure")
        await original_main_loop(self)

    monkeypatch.setattr(KadDHT, "_run_main_loop", main_loop_failing_first_time)
    async with pair() as p:
        await _wait_for(lambda: runs.get(id(p.victim.dht), 0) >= 2, 15, "the victim's DHT restarted")
        await p.assert_still_serving()
