"""Helpers for the network tests: waiting on conditions, starting in-process nodes."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from multiaddr import Multiaddr

from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.identity import key_pair_from_seed
from p2pnode.net.libp2p_workarounds import noise_only_security, yamux_only_muxer
from p2pnode.net.reachability import ReachabilityConfig
from protocols.network import Verdict

TOPIC = "/p2pnode/testnet/blocks/1"
ECHO = "/p2pnode/testnet/echo/1"


async def wait_for(condition: Callable[[], object], timeout: float, what: str = "condition") -> None:  # noqa: ASYNC109
    """Poll `condition` until true (for states libp2p signals no event for); fail after `timeout`."""
    with trio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 (no event exists for these states)
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def seed_for(name: str) -> bytes:
    """A deterministic 32-byte seed per test node name."""
    return hashlib.sha256(b"p2pnode-test:" + name.encode()).digest()


def accept_all(peer: str, data: bytes) -> Verdict:
    return Verdict.ACCEPT


async def echo(peer: str, request: bytes) -> bytes:
    """The request handler of the echo protocol (`ECHO`)."""
    return b"echo:" + request


class Inbox:
    """A gossip handler that records (forwarder, payload) and lets tests wait on it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def __call__(self, peer: str, data: bytes) -> None:
        self.messages.append((peer, data))

    def payloads(self) -> list[bytes]:
        return [data for _, data in self.messages]


@asynccontextmanager
async def running(*networks: LibP2PNetwork) -> AsyncIterator[Sequence[LibP2PNetwork]]:
    """Start the networks in order (each ready before the next) and stop them all on exit."""
    async with AsyncExitStack() as stack:
        for network in networks:
            await stack.enter_async_context(network)
        yield networks


def node(name: str, bootstrap: Sequence[str] = (), config: NetConfig | None = None) -> LibP2PNetwork:
    return LibP2PNetwork(seed_for(name), bootstrap=bootstrap, config=config)


def listening_node(name: str, bootstrap: Sequence[str] = (), config: NetConfig | None = None,
                   validator: Callable[[str, bytes], Verdict] = accept_all) -> tuple[LibP2PNetwork, Inbox]:
    """A node subscribed to `TOPIC` through `validator`, and the inbox of what it delivers."""
    network, inbox = node(name, bootstrap, config), Inbox()
    network.subscribe(TOPIC, validator, inbox)
    return network, inbox


# Reachability decided within seconds, and the DHT refreshed soon after start.
FAST_REACHABILITY = ReachabilityConfig(first_check_s=0.5, retry_s=1.0, recheck_s=5.0, relay_check_s=0.5)


def fast_network(name: str, *, bootstrap: tuple[str, ...] = (), announce: tuple[str, ...] = (),
                 **config: object) -> LibP2PNetwork:
    """A network that finds its reachability and its DHT neighbours fast; `config` overrides NetConfig fields."""
    base = NetConfig(reachability=FAST_REACHABILITY, dht_refresh_after_start_s=(0.5, 1.5, 3.0))
    return LibP2PNetwork(seed_for(name), bootstrap=bootstrap, announce=announce, config=replace(base, **config))  # type: ignore[arg-type]


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def raw_host(name: str, *, plaintext_only: bool = False) -> AsyncIterator[IHost]:
    """A bare py-libp2p host (no p2pnode layer) for playing the attacker; Noise + Yamux unless
    `plaintext_only`, which offers nothing but /plaintext/2.0.0."""
    key_pair = key_pair_from_seed(seed_for(name))
    security = (
        {PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
        if plaintext_only
        else noise_only_security(key_pair)
    )
    host = new_host(key_pair=key_pair, sec_opt=security, muxer_opt=yamux_only_muxer())
    async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        yield host


async def dial(host: IHost, addr: str) -> None:
    with trio.fail_after(10):
        await host.connect(info_from_p2p_addr(Multiaddr(addr)))


SINK = TProtocol("/p2pnode/test/sink/1")


@asynccontextmanager
async def sink_pair() -> AsyncIterator[tuple[IHost, IHost, list[bytes]]]:
    """Two bare hosts (Noise, Yamux) connected; the second reads whatever `SINK` streams carry into a list."""
    received: list[bytes] = []

    async def sink(stream: INetStream) -> None:
        while chunk := await stream.read(1024):
            received.append(chunk)

    async with raw_host("sender") as sender, raw_host("receiver") as receiver:
        receiver.set_stream_handler(SINK, sink)
        await dial(sender, str(receiver.get_addrs()[0]))
        yield sender, receiver, received


async def send_and_wait_for_close(host: IHost, peer: ID, protocol: str, payload: bytes, *, half_close: bool = False) -> None:
    """Open `protocol` to `peer`, write `payload` (then FIN if `half_close`), and wait until the
    remote ends the stream (reset or closed); fails if it does not within 10 s."""
    with trio.fail_after(10):
        stream = await host.new_stream(peer, [TProtocol(protocol)])
        await stream.write(payload)
        if half_close:
            await stream.close()
        while True:
            try:
                if not await stream.read(65536):
                    return
            except (StreamReset, StreamEOF):
                return
