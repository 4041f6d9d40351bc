"""Abuse of the relay service (Circuit Relay v2 hop) on loopback: reservation floods, reservations
in other peers' names, circuits to arbitrary peers, too many circuits, and bytes beyond the limits.
Each test also checks the honest use still works, so a relay that refused everything would fail."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg

from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.identity import key_pair_from_seed
from p2pnode.net.relay_reservation_spoofing import LimitedRelay, RelayServiceLimits
from protocols.network import RequestError
from tests.net.netutil import ECHO, dial, echo, raw_host, running, seed_for, wait_for

pytestmark = pytest.mark.timeout(120)


def relay_node(name: str, **limits: int) -> LibP2PNetwork:
    config = NetConfig(relay_service=True, autonat=False,
                       relay_limits=replace(RelayServiceLimits(), **limits))  # type: ignore[arg-type]
    return LibP2PNetwork(seed_for(name), config=config)


def peer_node(name: str) -> LibP2PNetwork:
    return LibP2PNetwork(seed_for(name), config=NetConfig(autonat=False))


def random_peer_id() -> ID:
    return ID.from_pubkey(key_pair_from_seed(os.urandom(32)).public_key)


async def hop(host: IHost, relay: ID, message: HopMessage) -> tuple[int, object]:
    """One HOP exchange: (status code, the open stream)."""
    with trio.fail_after(15):
        stream = await host.new_stream(relay, [HOP])
        await write_delimited_msg(stream, message)
        response = await read_delimited_msg(stream, HopMessage)
    return response.status, stream


def reservations(relay: LibP2PNetwork) -> set[ID]:
    assert isinstance(relay.relay, LimitedRelay)
    return set(relay.relay.live_reservations())


async def test_reservations_in_other_names_and_floods_from_one_address_are_refused() -> None:
    relay = relay_node("abuse-relay-1", max_reservations_per_ip=2, max_reservations=8)
    miner = peer_node("abuse-miner-1")
    async with running(relay, miner), raw_host("abuse-attacker-1") as attacker, raw_host("abuse-late-1") as late:
        relay_id = relay.host.get_id()
        await dial(attacker, relay.listen_addrs()[0])
        # 20 RESERVE messages naming other peers: all of them become the attacker's own one.
        for _ in range(20):
            status, stream = await hop(attacker, relay_id, HopMessage(
                type=HopMessage.RESERVE, peer=CircuitPeerId(id=random_peer_id().to_bytes())))
            assert status == StatusCode.OK
            await stream.close()  # type: ignore[attr-defined]
        assert reservations(relay) == {attacker.get_id()}
        # an honest peer still gets a slot
        await miner.connect(relay.listen_addrs()[0])
        assert await miner.relay_reservations.reserve(relay_id) is not None
        assert reservations(relay) == {attacker.get_id(), miner.host.get_id()}
        # a third peer from the same address is over the per-address cap...
        await dial(late, relay.listen_addrs()[0])
        status, _ = await hop(late, relay_id, HopMessage(type=HopMessage.RESERVE))
        assert status == StatusCode.RESOURCE_LIMIT_EXCEEDED
        # ...until a holder leaves: slots of disconnected peers are not kept
        await attacker.disconnect(relay_id)
        await wait_for(lambda: not relay.host.get_network().connections.get(attacker.get_id()), 10, "disconnect")
        status, _ = await hop(late, relay_id, HopMessage(type=HopMessage.RESERVE))
        assert status == StatusCode.OK
        assert reservations(relay) == {late.get_id(), miner.host.get_id()}


async def test_circuits_only_reach_reserved_peers_and_each_source_opens_few() -> None:
    relay = relay_node("abuse-relay-2", max_circuits_per_source=2)
    miner = peer_node("abuse-miner-2")
    async with running(relay, miner), raw_host("abuse-attacker-2") as attacker:
        relay_id = relay.host.get_id()
        await miner.connect(relay.listen_addrs()[0])
        await dial(attacker, relay.listen_addrs()[0])
        # a circuit to a peer with no reservation here is refused
        status, _ = await hop(attacker, relay_id, HopMessage(
            type=HopMessage.CONNECT, peer=CircuitPeerId(id=random_peer_id().to_bytes())))
        assert status == StatusCode.NO_RESERVATION
        status, _ = await hop(attacker, relay_id, HopMessage(
            type=HopMessage.CONNECT, peer=CircuitPeerId(id=miner.host.get_id().to_bytes())))
        assert status == StatusCode.NO_RESERVATION  # the miner has not reserved yet
        assert await miner.relay_reservations.reserve(relay_id) is not None
        # refused CONNECTs count against the source until the relay has reset them
        await wait_for(lambda: relay.relay.open_circuits() == 0, 10, "refused circuits to close")  # type: ignore[attr-defined]
        held = []
        for _ in range(2):
            status, stream = await hop(attacker, relay_id, HopMessage(
                type=HopMessage.CONNECT, peer=CircuitPeerId(id=miner.host.get_id().to_bytes())))
            assert status == StatusCode.OK
            held.append(stream)
        status, _ = await hop(attacker, relay_id, HopMessage(
            type=HopMessage.CONNECT, peer=CircuitPeerId(id=miner.host.get_id().to_bytes())))
        assert status == StatusCode.RESOURCE_LIMIT_EXCEEDED
        assert relay.relay.refused_circuits >= 1  # type: ignore[attr-defined]


async def relayed_pair(relay: LibP2PNetwork, miner: LibP2PNetwork, querier: LibP2PNetwork) -> None:
    """The querier connected to the miner through the relay, and only through it."""
    relay_addr = relay.listen_addrs()[0]
    await miner.connect(relay_addr)
    await querier.connect(relay_addr)
    assert await miner.relay_reservations.reserve(relay.host.get_id()) is not None
    circuit = f"{relay_addr}/p2p-circuit/p2p/{miner.peer_id}"
    import multiaddr

    assert await querier.relay_dialer.dial(miner.host.get_id(), [multiaddr.Multiaddr(circuit)])


async def test_bytes_beyond_the_circuit_limit_reset_the_circuit() -> None:
    relay = relay_node("abuse-relay-3", max_circuit_bytes=64 * 1024)
    miner, querier = peer_node("abuse-miner-3"), peer_node("abuse-querier-3")
    miner.set_request_handler(ECHO, echo, 1024 * 1024)
    async with running(relay, miner, querier):
        await relayed_pair(relay, miner, querier)
        assert await querier.request(miner.peer_id, ECHO, b"small", timeout=20, max_response_bytes=1024) == b"echo:small"
        with pytest.raises(RequestError):
            await querier.request(miner.peer_id, ECHO, b"x" * 200_000, timeout=20, max_response_bytes=300_000)
        await wait_for(lambda: relay.relay.open_circuits() == 0, 20, "the relay to drop the circuit")  # type: ignore[attr-defined]
        await wait_for(lambda: not querier.host.get_network().connections.get(miner.host.get_id()), 20,
                       "the querier to see the relayed connection end")
        # and the miner can be reached again through a fresh circuit
        await relayed_pair(relay, miner, querier)
        assert await querier.request(miner.peer_id, ECHO, b"again", timeout=20, max_response_bytes=1024) == b"echo:again"


async def test_relayed_bytes_are_paced_to_the_rate_limit() -> None:
    rate = 32 * 1024
    relay = relay_node("abuse-relay-4", max_circuit_bytes_per_s=rate)
    miner, querier = peer_node("abuse-miner-4"), peer_node("abuse-querier-4")
    miner.set_request_handler(ECHO, echo, 1024 * 1024)
    async with running(relay, miner, querier):
        await relayed_pair(relay, miner, querier)
        payload = b"y" * (4 * rate)
        start = trio.current_time()
        reply = await querier.request(miner.peer_id, ECHO, payload, timeout=60, max_response_bytes=len(payload) + 16)
        elapsed = trial = trio.current_time() - start
        assert reply == b"echo:" + payload
        # 4 s worth of bytes each way, with one second of burst per direction: at least 2 x 3 s
        # minus slack for the bucket's start; an unpaced loopback relay takes well under 1 s.
        assert elapsed >= 4.0, trial
