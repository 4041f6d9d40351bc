"""A node's own overload: loop lateness, timeouts it forgives, and the library's task bookkeeping."""

from __future__ import annotations

import time

import pytest
import trio
from libp2p.tools.anyio_service import Service, TrioManager
from netutil import node

from p2pnode.net import libp2p_workarounds as workarounds
from p2pnode.net.host import NetConfig
from p2pnode.net.loop_lag import LoopLagConfig, LoopLagMonitor
from p2pnode.net.reqresp import ReqRespLimits
from p2pnode.net.scoring import DEFAULT_PENALTIES
from protocols.network import RequestError

pytestmark = pytest.mark.timeout(60)

QUIET = NetConfig(dht_refresh_after_start_s=(), dht_refresh_interval_s=3600,
                  reqresp=ReqRespLimits(handler_timeout_s=30.0))
SILENT = "/p2pnode/testnet/silent/1"
TIMEOUT_POINTS = DEFAULT_PENALTIES["timeout"].amount


def test_remote_share_falls_with_our_own_lateness() -> None:
    monitor = LoopLagMonitor(LoopLagConfig(interval_s=0.1, forgive_at=0.25))
    for i in range(1, 21):  # 2 s of wakeups, on time
        monitor.record(i * 0.1, 0.0)
    assert monitor.remote_share(0.0, 2.0) == 1.0
    monitor.record(2.3, 0.2)  # the loop stalled 0.2 s
    assert monitor.lag_between(2.0, 2.3) == pytest.approx(0.2)
    assert monitor.remote_share(0.3, 2.3) == pytest.approx(1 - (0.2 / 2.0) / 0.25)  # 0.6
    monitor.record(2.9, 0.5)  # a wakeup later than its window started counts only its inside part
    assert monitor.lag_between(2.6, 2.9) == pytest.approx(0.3)
    assert monitor.remote_share(2.0, 3.0) == 0.0  # 0.7 s of 1 s lost: forgiven entirely
    assert monitor.remote_share(3.0, 3.0) == 1.0  # an empty window blames nobody
    assert monitor.recent_lag(1.0) == pytest.approx(0.7)
    assert monitor.max_lag_s == pytest.approx(0.5)


def test_samples_are_bounded() -> None:
    monitor = LoopLagMonitor(LoopLagConfig(interval_s=0.1, history_s=1.0))
    for i in range(1000):
        monitor.record(i * 0.1, 0.01)
    assert len(monitor._samples) <= 11
    assert monitor.samples_taken == 1000
    with pytest.raises(ValueError):
        LoopLagConfig(forgive_at=0)


async def test_monitor_sees_a_blocked_loop() -> None:
    monitor = LoopLagMonitor(LoopLagConfig(interval_s=0.05))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        await trio.sleep(0.2)
        started = trio.current_time()
        time.sleep(0.3)  # noqa: ASYNC251 (the point: the loop is stuck in synchronous work)
        await trio.sleep(0.1)
        assert monitor.lag_between(started, trio.current_time()) >= 0.25
        nursery.cancel_scope.cancel()


async def hold_forever(peer: str, request: bytes) -> bytes:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def test_a_timeout_is_forgiven_while_our_loop_stalls_but_not_otherwise() -> None:
    server = node("overload-server", config=QUIET)
    server.set_request_handler(SILENT, hold_forever, max_request_bytes=64)
    async with server:
        client = node("overload-client", server.listen_addrs(), QUIET)
        async with client:
            sid = server.peer_id

            async def stall_during_request() -> None:
                await trio.sleep(0.1)
                time.sleep(0.6)  # noqa: ASYNC251 (the point: our loop busy for most of the 0.8 s window)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stall_during_request)
                with pytest.raises(RequestError, match="timed out"):
                    await client.request(sid, SILENT, b"", timeout=0.8, max_response_bytes=64)
            # Our stall was well over a quarter of the window: the peer is not blamed at all.
            assert client.peer_score(sid).score == 0
            assert client.timeout_points_forgiven == pytest.approx(TIMEOUT_POINTS)

            # Without a stall the same silence is the peer's: whatever share of the timeout our
            # loop did not lose (on a busy machine, some) is charged, and the two add up.
            with pytest.raises(RequestError, match="timed out"):
                await client.request(sid, SILENT, b"", timeout=3.0, max_response_bytes=64)
            charged = -client.peer_score(sid).score
            assert charged + client.timeout_points_forgiven == pytest.approx(2 * TIMEOUT_POINTS, abs=0.05)
            assert client.statistics()["timeout_points_forgiven"] == pytest.approx(client.timeout_points_forgiven, abs=0.1)


class _Nested(Service):
    """A service whose tasks start tasks, like pubsub's per-peer readers starting per-RPC tasks."""

    def __init__(self) -> None:
        self.answers: list[tuple[object, object]] = []
        self.done = trio.Event()

    async def run(self) -> None:
        self.manager.run_task(self._parent)
        await self.done.wait()

    async def _parent(self) -> None:
        self.manager.run_task(self._child)
        await self.done.wait()

    async def _child(self) -> None:
        manager = self.manager
        current = trio.lowlevel.current_task()
        scanned = _scan(manager, current)
        self.answers.append((scanned, manager._find_parent_task(current)))
        self.done.set()


def _scan(manager: TrioManager, trio_task: trio.lowlevel.Task) -> object:
    # Upstream's answer: a walk over every task of the service.
    for task in workarounds.FunctionTask.iterate_tasks(*manager._root_tasks):
        if task.has_trio_task and task.trio_task is trio_task:
            return task
    return None


async def test_indexed_parent_lookup_gives_upstreams_answer() -> None:
    workarounds.install_cpu_fixes()
    service = _Nested()
    async with workarounds.supervised_trio_service(service) as manager:
        await service.done.wait()
        (scanned, indexed), = service.answers
        assert scanned is not None and indexed is scanned
        # A trio task that runs no library task of this service has no parent in it.
        assert manager._find_parent_task(trio.lowlevel.current_task()) is None

