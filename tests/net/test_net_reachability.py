"""Reachability on one machine: what is announced, our own DHT, AutoNAT, and a relay path.

A NATed peer is simulated on loopback by announcing a port nothing listens on: dial-backs to it
fail (so AutoNAT says private) and so do direct dials by others, while its own outbound
connections work, as behind a masquerading router. The netns test does it with real NAT.
"""

from __future__ import annotations

import ipaddress

import multiaddr
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from p2pnode.net.addresses import (
    AddressBook,
    AddressError,
    Reachability,
    default_listen_addrs,
    expand_wildcard,
    parse_announce_addrs,
)
from p2pnode.net.kad_client_mode_peers import dht_network_name, dht_protocol_id
from p2pnode.net.reachability import ReachabilityConfig, ReachabilityMonitor, decide
from tests.net.netutil import (
    ECHO,
    closed_port,
    dial,
    echo,
    fast_network,
    raw_host,
    running,
    wait_for,
)

# -- addresses (no network) -----------------------------------------------------------------------


def test_a_wildcard_is_expanded_to_interface_addresses_and_never_given_out() -> None:
    ips = [ipaddress.ip_address(a) for a in ("127.0.0.1", "10.1.2.3", "::1", "fe80::1", "fd00::5")]
    v4 = expand_wildcard(multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/30633"), ips)
    v6 = expand_wildcard(multiaddr.Multiaddr("/ip6/::/tcp/30633"), ips)
    assert [str(a) for a in v4] == ["/ip4/10.1.2.3/tcp/30633"]  # loopback only when nothing else
    assert [str(a) for a in v6] == ["/ip6/fd00::5/tcp/30633"]  # no link-local
    only_loopback = expand_wildcard(multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/1"), [ipaddress.ip_address("127.0.0.1")])
    assert [str(a) for a in only_loopback] == ["/ip4/127.0.0.1/tcp/1"]
    # an IPv4 server whose IPv6 is link-local only: no IPv6 address at all, certainly not ::1
    server = [ipaddress.ip_address(a) for a in ("127.0.0.1", "10.1.2.3", "::1", "fe80::1")]
    assert expand_wildcard(multiaddr.Multiaddr("/ip6/::/tcp/1"), server) == []


def test_default_listen_is_every_interface_on_the_fixed_port() -> None:
    addrs = default_listen_addrs()
    assert addrs[0] == "/ip4/0.0.0.0/tcp/30633"
    assert all(a.endswith("/tcp/30633") for a in addrs)
    with pytest.raises(AddressError):
        default_listen_addrs(70000)


@pytest.mark.parametrize("bad", ["/ip4/0.0.0.0/tcp/1", "/ip4/1.2.3.4", "/tcp/1", "nonsense",
                                 "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWKLxH5S1kuvecS17LG18YAqhnG1axis2ffxvn1k67LbTe"])
def test_bad_announce_addresses_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(AddressError, match="announce address"):
        parse_announce_addrs([bad])


def test_announce_replaces_listen_addresses_and_private_gives_out_only_relay_addresses() -> None:
    book = AddressBook(lambda: [multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/30633")],
                       parse_announce_addrs(["/ip4/203.0.113.7/tcp/30633"]))
    assert [str(a) for a in book.advertised()] == ["/ip4/203.0.113.7/tcp/30633"]
    relay = "/ip4/198.51.100.1/tcp/30633/p2p/12D3KooWKLxH5S1kuvecS17LG18YAqhnG1axis2ffxvn1k67LbTe/p2p-circuit"
    book = AddressBook(lambda: [multiaddr.Multiaddr("/ip4/192.168.1.5/tcp/30633")])
    book.set_circuits([multiaddr.Multiaddr(relay)])
    book.reachability = Reachability.PRIVATE
    assert [str(a) for a in book.advertised()] == [relay]
    book.reachability = Reachability.PUBLIC
    assert [str(a) for a in book.advertised()] == ["/ip4/192.168.1.5/tcp/30633", relay]
    # a UPnP mapping is announced next to the own addresses (AutoNAT then checks it)
    book.set_mapped([multiaddr.Multiaddr("/ip4/198.51.100.9/tcp/30633")])
    assert [str(a) for a in book.advertised()] == ["/ip4/192.168.1.5/tcp/30633", "/ip4/198.51.100.9/tcp/30633", relay]


def test_autonat_decision_needs_agreement() -> None:
    assert decide({}, Reachability.UNKNOWN) is Reachability.UNKNOWN
    assert decide({"a": True}, Reachability.UNKNOWN) is Reachability.PUBLIC
    assert decide({"a": False, "b": True}, Reachability.PRIVATE) is Reachability.PRIVATE  # a tie keeps it
    assert decide({"a": False, "b": False, "c": True}, Reachability.UNKNOWN) is Reachability.PRIVATE


def test_unanswered_autonat_checks_back_off_up_to_the_recheck_interval() -> None:
    monitor = ReachabilityMonitor(None, None, ReachabilityConfig(retry_s=5.0, recheck_s=120.0), None)  # type: ignore[arg-type]
    delays = [monitor.retry_delay(Reachability.UNKNOWN, n) for n in range(7)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert monitor.retry_delay(Reachability.UNKNOWN, 10_000) == 120.0
    assert monitor.retry_delay(Reachability.PUBLIC, 3) == 120.0


def test_dht_protocol_is_namespaced_by_network() -> None:
    assert dht_protocol_id("devnet") == "/p2pnode/devnet/kad/1.0.0"
    assert dht_network_name("my chain/1") == "my_chain_1"
    with pytest.raises(ValueError, match="network name"):
        dht_protocol_id("a/b")


# -- on loopback ----------------------------------------------------------------------------------


async def find_node(host: object, peer: ID, protocol: str, target: ID) -> Message:
    with trio.fail_after(10):
        stream = await host.new_stream(peer, [TProtocol(protocol)])  # type: ignore[attr-defined]
        request = Message(type=Message.MessageType.FIND_NODE, key=target.to_bytes())
        await stream.write(encode_varint_prefixed(request.SerializeToString()))
        response = Message()
        response.ParseFromString(await read_varint_prefixed_bytes_limited(stream, 1 << 20))
        await stream.close()
    return response


async def test_dht_speaks_only_its_network_protocol_and_answers_for_itself_with_addresses() -> None:
    node = fast_network("dht-a", network_id="alpha")
    async with running(node), raw_host("dht-client") as client:
        await dial(client, node.listen_addrs()[0])
        assert "/ipfs/kad/1.0.0" not in node.host.get_mux().get_protocols()
        response = await find_node(client, node.host.get_id(), "/p2pnode/alpha/kad/1.0.0", node.host.get_id())
        own = [p for p in response.closerPeers if p.id == node.host.get_id().to_bytes()]
        assert own and own[0].addrs, "the node must answer for itself with dialable addresses"
        assert {str(multiaddr.Multiaddr(a)) for a in own[0].addrs} <= {a.split("/p2p/")[0] for a in node.listen_addrs()}
        # the raw client opened a DHT stream but does not serve the DHT: it stays out of the table
        await wait_for(lambda: node.host.get_peerstore().get_protocols(client.get_id()), 10, "identify")
        await node.dht.admit_identified_servers()
        assert client.get_id() not in node.dht.routing_table.get_peer_ids()


async def test_networks_with_different_ids_do_not_share_a_dht() -> None:
    a = fast_network("dht-net-a", network_id="alpha")
    async with running(a):
        b = fast_network("dht-net-b", network_id="beta", bootstrap=(a.listen_addrs()[0],))
        c = fast_network("dht-net-c", network_id="alpha", bootstrap=(a.listen_addrs()[0],))
        async with running(b, c):
            await wait_for(lambda: c.host.get_id() in a.dht.routing_table.get_peer_ids(), 20, "same-network peer admitted")
            await wait_for(lambda: b.host.get_peerstore().get_protocols(a.host.get_id()), 10, "identify")
            await a.dht.admit_identified_servers()
            a.dht.evict_client_mode_peers()
            b.dht.evict_client_mode_peers()
            assert b.host.get_id() not in a.dht.routing_table.get_peer_ids()
            assert a.host.get_id() not in b.dht.routing_table.get_peer_ids()  # its bootstrap, evicted


async def test_public_peers_say_public_and_a_natted_peer_is_reached_through_the_relay() -> None:
    relay = fast_network("reach-relay", relay_service=True)
    async with running(relay):
        boot = (relay.listen_addrs()[0],)
        # The NATed miner: its announced port is closed, and it dials no one but its bootstrap.
        announced = f"/ip4/127.0.0.1/tcp/{closed_port()}"
        miner = fast_network("reach-miner", bootstrap=boot, announce=(announced,), target_peer_count=1)
        miner.set_request_handler(ECHO, echo, 1024)
        # The querier is behind another NAT: neither can dial the other, only the relay can help.
        querier = fast_network("reach-querier", bootstrap=boot, announce=(f"/ip4/127.0.0.1/tcp/{closed_port()}",))
        async with running(miner, querier):
            start = trio.current_time()
            await wait_for(lambda: miner.addresses.reachability is Reachability.PRIVATE, 30, "AutoNAT: private")
            await wait_for(lambda: relay.addresses.reachability is Reachability.PUBLIC, 30, "AutoNAT: public")
            await wait_for(lambda: miner.relay_reservations.relays() == [relay.peer_id], 30, "a relay reservation")
            # private: only the relay address and what the operator announced are given out
            assert sorted(a.split("/p2p/")[0] for a in miner.listen_addrs()) == sorted(
                [announced, relay.listen_addrs()[0].split("/p2p/")[0]])
            assert any(a.endswith(f"/p2p/{relay.peer_id}/p2p-circuit/p2p/{miner.peer_id}") for a in miner.listen_addrs())
            assert miner.reachability_view()["dht_mode"] == "client"
            reachable_after = trio.current_time() - start
            # the relay learns the circuit address (identify push) and hands it out
            await wait_for(lambda: any("/p2p-circuit" in str(a) for a in relay.host.get_peerstore().addrs(miner.host.get_id())),
                           20, "the relay to learn the circuit address")
            assert miner.host.get_id() not in querier.host.get_connected_peers()
            reply = await querier.request(miner.peer_id, ECHO, b"over the relay", timeout=30, max_response_bytes=1024)
            assert reply == b"echo:over the relay"
            conns = querier.host.get_network().connections[miner.host.get_id()]
            assert all(any("/p2p-circuit" in str(a) for a in c.get_transport_addresses()) for c in conns)
            assert reachable_after < 30


async def test_a_busy_dial_back_server_refuses_rather_than_reporting_a_failed_dial() -> None:
    from libp2p.host.autonat.pb.autonat_pb2 import Message as AutoNATMessage

    server = fast_network("dialback-busy")
    request = AutoNATMessage(type=AutoNATMessage.DIAL)
    request.dial.peer.id = server.host.get_id().to_bytes()
    request.dial.peer.addrs.append(multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{closed_port()}").to_bytes())
    answer = await server.dialback._handle_dial(request, "127.0.0.1", False)
    assert answer.dialResponse.status == AutoNATMessage.E_DIAL_ERROR  # a fresh dial to a closed port
    server.dialback._in_flight = server.config.reachability.max_dialbacks_in_flight
    answer = await server.dialback._handle_dial(request, "127.0.0.1", False)
    assert answer.dialResponse.status == AutoNATMessage.E_DIAL_REFUSED and "busy" in answer.dialResponse.statusText
