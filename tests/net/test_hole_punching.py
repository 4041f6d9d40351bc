"""Hole punching (DCUtR) on one machine: the addresses a private peer offers and accepts, and who
starts. The punch itself needs real NAT: `tests/netns/test_home_nat.py`."""

from __future__ import annotations

import multiaddr
import pytest
from libp2p.host.exceptions import StreamFailure
from libp2p.relay.circuit_v2 import dcutr
from libp2p.relay.circuit_v2.dcutr import PROTOCOL_ID as DCUTR_PROTOCOL_ID

from p2pnode.net.addresses import Reachability
from p2pnode.net.dcutr_relay_only_addrs import MAX_OWN_ADDRS, MAX_PEER_ADDRS, HolePunching
from protocols.network import RequestError
from tests.net.netutil import ECHO, closed_port, echo, fast_network, running, wait_for


class ObservedBy:
    """Stands in for py-libp2p's observed-address manager: what peers say they see us as."""

    def __init__(self) -> None:
        self.observed: list[multiaddr.Multiaddr] = []

    def addrs(self, min_observers: int = 2) -> list[multiaddr.Multiaddr]:
        return list(self.observed)


async def test_a_private_peer_offers_its_router_ip_at_its_listen_port_and_binds_dials_to_that_port() -> None:
    peer = fast_network("punch-offer", announce=("/ip4/198.51.100.9/tcp/4444",))
    other = fast_network("punch-other")
    async with running(peer, other):
        await peer.connect(other.listen_addrs()[0])
        peer.addresses.reachability = Reachability.PRIVATE
        port = int(peer.host.get_transport_addrs()[0].value_for_protocol("tcp"))
        assert isinstance(peer.hole_punching, HolePunching)
        # what upstream binds hole-punch dials to and pairs with the router's IP: the listen
        # socket, although a private peer gives out relay addresses only
        assert all("/p2p-circuit" in a or "198.51.100.9" in a for a in peer.listen_addrs())
        assert [str(a) for a in peer.hole_punching.host.get_addrs()] == [f"/ip4/127.0.0.1/tcp/{port}"]

        # No observation left (upstream identifies a peer once; observations die with their
        # connection): identify runs again with a directly connected peer, which says it saw us
        # at the router's ephemeral port.
        manager = ObservedBy()
        peer.host._observed_addr_manager = manager  # type: ignore[attr-defined]
        asked = []

        async def identify(peer_id: object, *, reason: str) -> None:
            asked.append(peer_id)
            manager.observed = [multiaddr.Multiaddr(a) for a in
                                ("/ip4/203.0.113.7/tcp/51234", "/ip4/203.0.113.7/tcp/51299", "/ip4/0.0.0.0/tcp/1")]

        peer.host._identify_peer = identify  # type: ignore[attr-defined]
        wire = await peer.hole_punching._get_observed_addrs()
        assert asked == [other.host.get_id()]
        # the prediction first (router IP, our listen port), then what we announce; bare
        # multiaddrs on the wire, no /p2p/ suffix
        offered = [f"/ip4/203.0.113.7/tcp/{port}", "/ip4/198.51.100.9/tcp/4444"]
        assert wire == [multiaddr.Multiaddr(a).to_bytes() for a in offered]
        await peer.hole_punching._get_observed_addrs()
        assert len(asked) == 1  # known now: not asked again

        manager.observed = [multiaddr.Multiaddr(f"/ip4/203.0.113.{i}/tcp/5000") for i in range(1, 20)]
        assert len(peer.hole_punching.connect_addrs()) == MAX_OWN_ADDRS


def test_a_peers_connect_message_is_cut_to_a_few_tcp_addresses_with_a_concrete_ip() -> None:
    punching = fast_network("punch-accept").hole_punching
    junk = [b"\xff\x00not a multiaddr",
            multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4001").to_bytes(),
            multiaddr.Multiaddr("/ip4/10.0.0.1/udp/4001/quic-v1").to_bytes(),
            multiaddr.Multiaddr("/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                                "/p2p-circuit").to_bytes(),
            multiaddr.Multiaddr("/dns4/example.org/tcp/4001").to_bytes()]
    good = [multiaddr.Multiaddr(f"/ip4/192.0.2.{i}/tcp/4001").to_bytes() for i in range(1, 30)]
    kept = punching._decode_observed_addrs(junk + good)
    assert [str(a) for a in kept] == [f"/ip4/192.0.2.{i}/tcp/4001" for i in range(1, MAX_PEER_ADDRS + 1)]


async def test_only_the_peer_that_accepted_the_relayed_connection_starts_dcutr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcutr, "_HOLE_PUNCH_ROUND_TIMEOUT", 0.5)  # closed ports: fail fast
    relay = fast_network("punch-relay", relay_service=True)
    async with running(relay):
        boot = (relay.listen_addrs()[0],)
        miner = fast_network("punch-miner", bootstrap=boot, announce=(f"/ip4/127.0.0.1/tcp/{closed_port()}",),
                             target_peer_count=1, hole_punching=True)
        miner.set_request_handler(ECHO, echo, 1024)
        querier = fast_network("punch-querier", bootstrap=boot, announce=(f"/ip4/127.0.0.1/tcp/{closed_port()}",),
                               target_peer_count=1, hole_punching=True)
        streams: list[str] = []
        for side in (miner, querier):
            original = side.host.new_stream

            async def counting(peer, protocols, _original=original, _side=side):  # type: ignore[no-untyped-def]
                if DCUTR_PROTOCOL_ID in [str(p) for p in protocols]:
                    streams.append(_side.peer_id)
                return await _original(peer, protocols)

            side.host.new_stream = counting  # type: ignore[method-assign]
        async with running(miner, querier):
            await wait_for(lambda: miner.relay_reservations.relays() == [relay.peer_id], 30, "a relay reservation")
            reply = await querier.request(miner.peer_id, ECHO, b"relayed", timeout=30, max_response_bytes=1024)
            assert reply == b"echo:relayed"
            assert querier.is_relayed(miner.peer_id)
            assert miner.hole_punching.starts_hole_punch(querier.host.get_id())
            assert not querier.hole_punching.starts_hole_punch(miner.host.get_id())
            assert not await querier.hole_punching.initiate_hole_punch(miner.host.get_id())
            # the miner's auto-drive tries (and, with nothing but closed ports to dial, fails)
            await wait_for(lambda: miner.hole_punching.failed >= 1 and querier.hole_punching.failed >= 1, 30,
                           "the miner's hole punch attempt, answered by the querier")
            assert streams and set(streams) == {miner.peer_id}
            assert all("/p2p-circuit" in a for a in querier.connection_addrs(miner.peer_id))

            # each also dials the other through the relay: exactly one (the lower PeerID) starts
            await wait_for(lambda: querier.relay_reservations.relays() == [relay.peer_id], 30,
                           "the querier's relay reservation")
            circuit = multiaddr.Multiaddr(f"{relay.listen_addrs()[0]}/p2p-circuit/p2p/{querier.peer_id}")
            assert await miner.relay_dialer.dial(querier.host.get_id(), [circuit])
            assert len(miner.connection_addrs(querier.peer_id)) == 2
            starts = {side.peer_id: side.hole_punching.starts_hole_punch(other.host.get_id())
                      for side, other in ((miner, querier), (querier, miner))}
            lower = min((miner, querier), key=lambda n: n.host.get_id().to_bytes()).peer_id
            assert starts == {miner.peer_id: miner.peer_id == lower, querier.peer_id: querier.peer_id == lower}

            # a relayed connection no stream opens on any more (its relay dropped the circuit) is
            # closed after the failed request, so the next one dials afresh
            opens = querier.host.new_stream

            async def circuit_gone(peer, protocols):  # type: ignore[no-untyped-def]
                if ECHO in [str(p) for p in protocols]:
                    raise StreamFailure("failed to open a stream: the relay dropped the circuit")
                return await opens(peer, protocols)

            querier.host.new_stream = circuit_gone  # type: ignore[method-assign]
            with pytest.raises(RequestError, match="StreamFailure"):
                await querier.request(miner.peer_id, ECHO, b"lost", timeout=10, max_response_bytes=1024)
            await wait_for(lambda: not querier.connection_addrs(miner.peer_id), 10, "the dead relayed connections closed")
