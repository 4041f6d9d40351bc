"""Live events: the hub's bounded per-client queues, and GET /events over HTTP."""

from __future__ import annotations

import json
from contextlib import aclosing

import pytest
import trio

from p2pnode.services.api import events as events_module
from p2pnode.services.api.events import CLIENT_QUEUE_EVENTS, MAX_CLIENTS, EventHub, TooManyClients
from p2pnode.services.api.guard import check_request
from p2pnode.services.api.http import HttpApi, HttpError, Request


async def collect(hub: EventHub, client, n: int, **options: float) -> list[bytes]:  # type: ignore[no-untyped-def]
    chunks = []
    async with aclosing(hub.stream(client, **options)) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == n:
                break
    return chunks


async def test_events_reach_subscribers_of_their_type() -> None:
    hub = EventHub()
    heads, everything = hub.subscribe(["head"]), hub.subscribe()
    hub.publish("head", {"height": 1})
    hub.publish("finalized", {"epoch": 0})
    got_heads = await collect(hub, heads, 2)
    got_all = await collect(hub, everything, 3)
    assert got_heads[1] == b'id: 1\nevent: head\ndata: {"height":1}\n\n'
    assert [c.split(b"\n")[1] for c in got_all[1:]] == [b"event: head", b"event: finalized"]
    assert hub.clients == 0  # a stream that ends unsubscribes


async def test_a_slow_client_is_dropped_and_holds_no_memory() -> None:
    hub = EventHub()
    slow, fast = hub.subscribe(), hub.subscribe()
    async with trio.open_nursery() as nursery:
        received = []

        async def read_fast() -> None:
            async for chunk in hub.stream(fast):
                received.append(chunk)

        nursery.start_soon(read_fast)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(CLIENT_QUEUE_EVENTS * 4):
            hub.publish("head", {"height": i})
            if i % 16 == 0:
                await trio.testing.wait_all_tasks_blocked()
        assert hub.dropped_clients == 1 and hub.clients == 1
        # The slow client's queue stopped at its bound; reading it now ends with a `dropped` event.
        assert slow.receive.statistics().current_buffer_used == CLIENT_QUEUE_EVENTS
        tail = [chunk async for chunk in hub.stream(slow)]
        assert len(tail) == 1 + CLIENT_QUEUE_EVENTS + 1 and b"event: dropped" in tail[-1]
        await trio.testing.wait_all_tasks_blocked()
        assert len(received) == 1 + CLIENT_QUEUE_EVENTS * 4  # the reader that keeps up misses nothing
        nursery.cancel_scope.cancel()


async def test_streams_are_bounded_in_number() -> None:
    hub = EventHub()
    clients = [hub.subscribe() for _ in range(MAX_CLIENTS)]
    with pytest.raises(TooManyClients):
        hub.subscribe()
    hub.unsubscribe(clients[0])
    hub.subscribe()


async def test_a_quiet_stream_sends_keepalives(autojump_clock: trio.abc.Clock) -> None:
    hub = EventHub()
    chunks = await collect(hub, hub.subscribe(), 3, keepalive_s=1.0)
    assert chunks[1:] == [b": keepalive\n\n"] * 2


async def serve_events(nursery: trio.Nursery, hub: EventHub) -> int:
    api = HttpApi()
    api.guards.append(check_request)

    async def stream(req: Request):  # type: ignore[no-untyped-def]
        if req.query.get("types") == "nope":
            raise HttpError(400, "bad_event_type", "nope")
        return hub.stream(hub.subscribe())

    api.stream("GET", "events", stream)
    return await nursery.start(api.serve, 0)


async def subscribe_over_http(port: int) -> tuple[trio.SocketStream, bytearray]:
    """A client of GET /events, returned with what it read once the stream's opening comment says
    it is subscribed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received = bytearray()
    while b": p2pnode events" not in received:
        received += await stream.receive_some(65536)
    return stream, received


async def test_events_over_http_and_a_client_that_stops_reading() -> None:
    hub = EventHub()
    async with trio.open_nursery() as nursery:
        port = await serve_events(nursery, hub)
        reader, received = await subscribe_over_http(port)
        assert b"text/event-stream" in received
        hub.publish("head", {"height": 7})
        while b'data: {"height":7}' not in received:
            received += await reader.receive_some(65536)

        # A second client that never reads: the socket buffers fill, then its queue, then it is dropped.
        stuck, _ = await subscribe_over_http(port)  # from here on it reads nothing
        assert hub.clients == 2
        payload = {"pad": "x" * 4096}
        with trio.fail_after(60):
            sent = 0
            while hub.dropped_clients == 0:
                hub.publish("head", payload)
                sent += 1
                await trio.lowlevel.checkpoint()
                if sent % 64 == 0:  # let the reader keep up, as a live client would
                    while received.count(b"event: head") < sent:
                        received += await reader.receive_some(1 << 20)
        assert hub.clients == 1
        await stuck.aclose()
        await reader.aclose()
        # A client that hangs up gives its slot back (the server learns it from the socket).
        with trio.fail_after(30):
            while hub.clients:  # noqa: ASYNC110 - the hub exposes no event for this; poll it
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_a_bad_stream_request_is_a_named_error() -> None:
    hub = EventHub()
    async with trio.open_nursery() as nursery:
        port = await serve_events(nursery, hub)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /events?types=nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = bytearray()
        while chunk := await stream.receive_some(65536):
            received += chunk
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert b" 400 " in head.split(b"\r\n")[0] and json.loads(body)["error"] == "bad_event_type"
        nursery.cancel_scope.cancel()


def test_event_types_are_shared_with_the_cli() -> None:
    from p2pnode.cli.watch import EVENT_TYPES

    assert EVENT_TYPES == events_module.EVENT_TYPES


def test_watch_describes_each_event_in_one_line() -> None:
    from p2pnode.cli.watch import describe

    samples = {
        "head": {"height": 7, "slot": 9, "hash": "ab" * 32, "reorg": True},
        "finalized": {"epoch": 2, "height": 6, "hash": "cd" * 32},
        "epoch": {"netuid": 1, "epoch_index": 3, "height": 7},
        "tx_included": {"tx": "ef" * 32, "kind": "transfer", "height": 7, "sender": "p2p1x", "nonce": 4},
        "tx_refused": {"tx": "01" * 32, "reason": "bad_nonce", "source": "gossip"},
        "proposal": {"id": 5, "status": "passed", "height": 7},
    }
    lines = {kind: describe(kind, data) for kind, data in samples.items()}
    assert all("\n" not in line for line in lines.values())
    assert "height 7" in lines["head"] and "reorganisation" in lines["head"]
    assert "bad_nonce" in lines["tx_refused"] and "gossip" in lines["tx_refused"]
    assert "#5 is passed" in lines["proposal"] and "subnet 1 ran epoch 3" in lines["epoch"]
    assert describe("surprise", {"a": 1}).startswith("surprise")
