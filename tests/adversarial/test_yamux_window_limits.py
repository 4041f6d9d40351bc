"""A peer that ignores yamux flow control: py-libp2p only logs a stream's receive window overrun
and buffers the excess, so a stream whose handler is not reading grows without bound. With
`install_yamux_window_limits` the overrun closes the connection; honest transfers are untouched."""

from __future__ import annotations

import contextlib
import struct

import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, Yamux

from p2pnode.net import libp2p_workarounds as workarounds
from tests.net.netutil import SINK, dial, raw_host, sink_pair

pytestmark = pytest.mark.timeout(60)

STALL = TProtocol("/p2pnode/test/stall/1")


def receiving_muxer(receiver: IHost, sender: IHost) -> Yamux:
    conns = receiver.get_network().get_connections(sender.get_id())
    assert conns
    muxed = conns[0].muxed_conn
    assert isinstance(muxed, Yamux)
    return muxed


async def flood(stream: INetStream, frames: int, size: int) -> None:
    """DATA frames on `stream`'s id written straight to the connection, whatever the window."""
    conn = stream.muxed_conn
    assert isinstance(conn, Yamux)
    stream_id = stream.muxed_stream.stream_id  # type: ignore[attr-defined]
    body = bytes(size)
    for _ in range(frames):
        with contextlib.suppress(Exception):  # the receiver may close the connection mid-flood
            await conn._write_frame(struct.pack(">BBHII", 0, TYPE_DATA, 0, stream_id, len(body)) + body)


@pytest.fixture(autouse=True)
def limits() -> None:
    workarounds.install_cpu_fixes()
    workarounds.install_yamux_window_limits()


async def test_a_peer_overrunning_a_streams_window_loses_the_connection() -> None:
    async def stall(stream: INetStream) -> None:  # a handler that has read what it wants
        await trio.sleep_forever()

    async with raw_host("sender") as sender, raw_host("receiver") as receiver:
        receiver.set_stream_handler(STALL, stall)
        await dial(sender, str(receiver.get_addrs()[0]))
        stream = await sender.new_stream(receiver.get_id(), [STALL])
        muxed = receiving_muxer(receiver, sender)
        # 3 MB against a 256 KiB window (upstream buffered all of it, and 12 MB as readily).
        await flood(stream, 50, 60_000)
        with trio.fail_after(20):
            await muxed.event_shutting_down.wait()
        assert sum(map(len, muxed.stream_buffers.values())) == 0


async def test_honest_transfers_past_the_window_still_pass() -> None:
    async with sink_pair() as (sender, receiver, received):
        stream = await sender.new_stream(receiver.get_id(), [SINK])
        big = bytes(range(256)) * 4096 * 3  # 3 MiB in one write: 12 windows of 256 KiB
        await stream.write(big)
        for i in range(300):
            await stream.write(bytes([i % 256]) * 1000)
        expected = len(big) + 300 * 1000
        with trio.fail_after(30):
            while sum(map(len, received)) < expected:  # noqa: ASYNC110 (no event for bytes read)
                await trio.sleep(0.01)
        assert not receiving_muxer(receiver, sender).event_shutting_down.is_set()
        assert b"".join(received)[:len(big)] == big
