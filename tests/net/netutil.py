"""Helpers for the network tests: waiting on conditions, starting in-process nodes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from p2pnode.net.host import LibP2PNetwork, NetConfig
from protocols.network import Verdict

TOPIC = "/p2pnode/testnet/blocks/1"


async def wait_for(condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:  # noqa: ASYNC109
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
