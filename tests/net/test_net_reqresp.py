"""Request/response between in-process hosts: limits, timeouts, concurrency, failing handlers."""

from __future__ import annotations

import pytest
import trio
from netutil import ECHO, echo, node, running, wait_for

from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.reqresp import ReqRespLimits
from p2pnode.net.scoring import DEFAULT_PENALTIES
from protocols.network import RequestError

pytestmark = pytest.mark.timeout(60)

SLOW = "/p2pnode/testnet/slow/1"
BROKEN = "/p2pnode/testnet/broken/1"
BIG = "/p2pnode/testnet/big/1"

QUIET = NetConfig(
    dht_refresh_after_start_s=(),
    dht_refresh_interval_s=3600,
    reqresp=ReqRespLimits(max_inbound_per_peer=2, handler_timeout_s=1.0),
)


async def broken(peer: str, request: bytes) -> bytes:
    raise ValueError("handler bug")


async def big(peer: str, request: bytes) -> bytes:
    return b"x" * int(request)


class Gate:
    """A handler that blocks until released, counting how many requests are inside."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.inside = 0

    async def __call__(self, peer: str, request: bytes) -> bytes:
        self.inside += 1
        try:
            await self.release.wait()
            return b"released"
        finally:
            self.inside -= 1


def server_with_handlers(gate: Gate) -> LibP2PNetwork:
    server = node("rr-server", config=QUIET)
    server.set_request_handler(ECHO, echo, max_request_bytes=1024)
    server.set_request_handler(BROKEN, broken, max_request_bytes=1024)
    server.set_request_handler(BIG, big, max_request_bytes=1024)
    server.set_request_handler(SLOW, gate, max_request_bytes=1024)
    return server


async def test_request_response_limits_and_failures() -> None:
    gate = Gate()
    server = server_with_handlers(gate)
    async with server:
        client = node("rr-client", server.listen_addrs(), QUIET)
        async with client:
            sid = server.peer_id

            async def ask(protocol: str, data: bytes, within: float = 5.0, max_response: int = 4096) -> bytes:
                return await client.request(sid, protocol, data, timeout=within, max_response_bytes=max_response)

            assert await ask(ECHO, b"hello") == b"echo:hello"
            assert await ask(ECHO, b"") == b"echo:"

            # Request over the handler's limit: refused with a status, requester penalised.
            with pytest.raises(RequestError, match="INVALID_REQUEST"):
                await ask(ECHO, b"x" * 1025)
            assert server.peer_score(client.peer_id).score < 0

            # Response over the caller's limit.
            assert len(await ask(BIG, b"4096")) == 4096
            with pytest.raises(RequestError, match="over the 4096 byte limit"):
                await ask(BIG, b"4097")
            # Multi-megabyte responses cross many yamux window updates intact.
            assert await ask(BIG, b"3000000", max_response=4 * 1024 * 1024) == b"x" * 3_000_000

            # A raising handler answers SERVER_ERROR on its stream only.
            with pytest.raises(RequestError, match="SERVER_ERROR: handler failed"):
                await ask(BROKEN, b"")

            # Unknown protocol, bad peer id, oversized request against our own ceiling.
            with pytest.raises(RequestError):
                await ask("/p2pnode/testnet/nope/1", b"")
            with pytest.raises(RequestError, match="not a peer id|not an ed25519 peer id"):
                await client.request("nonsense", ECHO, b"", timeout=1, max_response_bytes=10)
            with pytest.raises(RequestError, match="over the"):
                await ask(ECHO, b"x" * (QUIET.reqresp.max_request_bytes + 1))

            # Client-side timeout, then the server's handler timeout answers SERVER_ERROR.
            started = trio.current_time()
            with pytest.raises(RequestError, match="timed out"):
                await ask(SLOW, b"", within=0.3)
            assert trio.current_time() - started < 3.0  # 0.3 s, plus slack for a busy CPU
            with pytest.raises(RequestError, match="handler timed out"):
                await ask(SLOW, b"", within=5.0)
            # Our timeout counted (softly) against it, less any share forgiven because our own
            # loop ran late meanwhile (a busy machine): the two add up to the timeout's points.
            charged = -client.peer_score(sid).score
            assert charged + client.timeout_points_forgiven == pytest.approx(DEFAULT_PENALTIES["timeout"].amount, abs=0.05)

            # After all of that the same connection still serves.
            assert await ask(ECHO, b"still here") == b"echo:still here"
            assert client.connected_peers() == [sid]


async def test_per_peer_inbound_concurrency_limit() -> None:
    gate = Gate()
    server = server_with_handlers(gate)
    async with server:
        greedy = node("rr-greedy", server.listen_addrs(), QUIET)
        polite = node("rr-polite", server.listen_addrs(), QUIET)
        async with running(greedy, polite):
            results: list[bytes] = []

            async def slow_request() -> None:
                results.append(
                    await greedy.request(server.peer_id, SLOW, b"", timeout=10, max_response_bytes=100)
                )

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(slow_request)
                await wait_for(lambda: gate.inside == 2, 10, "two requests inside the handler")
                # A third from the same peer is refused at once; another peer is still served.
                with pytest.raises(RequestError, match="RESOURCE_UNAVAILABLE"):
                    await greedy.request(server.peer_id, ECHO, b"", timeout=5, max_response_bytes=100)
                assert await polite.request(server.peer_id, ECHO, b"hi", timeout=5, max_response_bytes=100) == b"echo:hi"
                gate.release.set()
            assert results == [b"released", b"released"]
            assert server.reqresp.inbound_in_flight() == 0
            assert await greedy.request(server.peer_id, ECHO, b"ok", timeout=5, max_response_bytes=100) == b"echo:ok"
