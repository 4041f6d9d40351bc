"""Supervision of py-libp2p 0.8.1's service tasks (problem #16 in `libp2p_workarounds`): any
exception in a library service task (pubsub, gossipsub, DHT, swarm/muxer) cancels the whole service
and so ends `host.run()`. Here a failed task is restarted with back-off, or, when it belongs to one
connection, that connection is dropped; every failure is counted in `SERVICE_FAILURES`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio
from libp2p.abc import IHost, INetwork
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service.api import ServiceAPI
from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.tools.anyio_service.utils import get_task_name
from libp2p.utils.connection_shutdown import is_expected_connection_shutdown

logger = logging.getLogger("p2pnode.net.libp2p_workarounds")  # the name these logs always had


class _RestartableReceiveChannel:
    """A receive channel that survives its reader failing, so the supervisor can restart it.

    Pubsub's peer-queue readers wrap their loop in `async with channel`, which closes the channel
    when the loop raises; a restarted reader would then find it closed and every later connect or
    disconnect notification would fail. Closed on a normal exit or cancellation, as before.
    """

    def __init__(self, channel: trio.MemoryReceiveChannel[ID]) -> None:
        self._channel = channel

    async def __aenter__(self) -> _RestartableReceiveChannel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc_type is None or not issubclass(exc_type, Exception):
            await self._channel.aclose()

    def __aiter__(self) -> _RestartableReceiveChannel:
        return self

    async def __anext__(self) -> ID:
        try:
            return await self._channel.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def make_pubsub_restartable(pubsub: Pubsub) -> None:
    """Let the supervisor restart pubsub's peer-queue readers (see `_RestartableReceiveChannel`)."""
    pubsub.peer_receive_channel = _RestartableReceiveChannel(pubsub.peer_receive_channel)  # type: ignore[assignment]
    pubsub.dead_peer_receive_channel = _RestartableReceiveChannel(pubsub.dead_peer_receive_channel)  # type: ignore[assignment]


class ServiceFailures:
    """What the service supervisor caught: counts per (service, task, exception type).

    The first failure of each kind is logged at WARNING with its traceback; repeats at DEBUG, so
    a peer that triggers the same library bug a thousand times does not flood the log.
    """

    def __init__(self) -> None:
        self.caught: dict[str, int] = {}
        self.restarts = 0
        self.dropped_connections = 0

    def record(self, service: str, task: str, exc: BaseException) -> None:
        key = f"{service}:{task}:{type(exc).__name__}"
        first = key not in self.caught
        self.caught[key] = self.caught.get(key, 0) + 1
        if first:
            logger.warning(
                "py-libp2p %s task %s failed (contained; logged once): %r", service, task, exc, exc_info=exc
            )
        else:
            logger.debug("py-libp2p %s task %s failed again: %r", service, task, exc)

    @property
    def total(self) -> int:
        return sum(self.caught.values())


# One record per process (tests and status read it; every supervised service adds to it).
SERVICE_FAILURES = ServiceFailures()

_RESTART_BACKOFF_S = (0.1, 1.0, 5.0, 30.0)


def _peer_in(args: tuple[Any, ...]) -> ID | None:
    """The remote peer a library task works for, from its arguments (an ID, a connection, a stream)."""
    for arg in args:
        if isinstance(arg, ID):
            return arg
        for holder in (arg, getattr(arg, "muxed_conn", None)):
            peer = getattr(holder, "peer_id", None)
            if isinstance(peer, ID):
                return peer
    return None


def _network_of(service: ServiceAPI) -> INetwork | None:
    if isinstance(service, INetwork):
        return service
    host = getattr(service, "host", None)
    if host is None:
        host = getattr(getattr(service, "pubsub", None), "host", None)
    return host.get_network() if host is not None else None


def supervise_manager(
    manager: TrioManager, service: ServiceAPI, failures: ServiceFailures = SERVICE_FAILURES
) -> None:
    """Contain every exception in the tasks `manager` runs for `service`.

    Upstream's manager cancels the whole service when any task raises, and a cancelled pubsub or
    swarm ends `host.run()`: one library bug hit by one peer takes the node down. Instead:
    - a per-peer or per-message task that fails is logged once and that peer's connections are
      closed (the library's own teardown then clears its state, as for any disconnect);
    - a long-running (daemon) task or the service's main `run` is restarted after a back-off.
    Expected connection shutdowns (EOF, reset) stay quiet, as upstream treats them.
    Apply before the service starts (`supervised_trio_service` does).
    """
    label = type(service).__name__
    original_run_task = manager.run_task

    def run_task(
        async_fn: Callable[..., Awaitable[Any]],
        *args: Any,
        daemon: bool = False,
        name: str | None = None,
        _internal: bool = False,
    ) -> None:
        task_name = get_task_name(async_fn, name)
        if daemon or _internal:
            wrapped = _restarting(label, task_name, async_fn, args, failures)
        else:
            wrapped = _dropping_peer(label, task_name, async_fn, args, service, failures)
        original_run_task(wrapped, daemon=daemon, name=task_name, _internal=_internal)

    manager.run_task = run_task  # type: ignore[method-assign]


def _restarting(
    label: str,
    task_name: str,
    async_fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    failures: ServiceFailures,
) -> Callable[[], Awaitable[Any]]:
    async def restarting() -> Any:
        attempt = 0
        while True:
            try:
                return await async_fn(*args)
            except Exception as exc:
                # Upstream ends a task quietly on a connection-shutdown error; for a long-running
                # task (a peer-queue reader, the heartbeat) that would leave the node silently
                # deaf, so those are restarted too, logged at DEBUG only.
                if is_expected_connection_shutdown(exc):
                    logger.debug("%s task %s ended by a connection error; restarting: %r", label, task_name, exc)
                else:
                    failures.record(label, task_name, exc)
                failures.restarts += 1
            await trio.sleep(_RESTART_BACKOFF_S[min(attempt, len(_RESTART_BACKOFF_S) - 1)])
            attempt += 1

    return restarting


def _dropping_peer(
    label: str,
    task_name: str,
    async_fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    service: ServiceAPI,
    failures: ServiceFailures,
) -> Callable[[], Awaitable[None]]:
    async def dropping_peer() -> None:
        try:
            await async_fn(*args)
        except Exception as exc:
            if is_expected_connection_shutdown(exc):
                logger.debug("%s task %s ended with the connection: %r", label, task_name, exc)
                return
            failures.record(label, task_name, exc)
            peer = _peer_in(args)
            network = _network_of(service)
            if peer is None or network is None:
                return
            failures.dropped_connections += 1
            try:
                with trio.move_on_after(5):
                    await network.close_peer(peer)
            except Exception as close_exc:
                logger.debug("closing %s after a %s failure failed: %r", peer, label, close_exc)

    return dropping_peer


@asynccontextmanager
async def supervised_trio_service(service: ServiceAPI) -> AsyncIterator[TrioManager]:
    """`background_trio_service` with `supervise_manager` applied before the service starts."""
    async with trio.open_nursery() as nursery:
        manager = TrioManager(service)
        service._manager = manager  # type: ignore[attr-defined]
        supervise_manager(manager, service)
        nursery.start_soon(manager.run)
        await manager.wait_started()
        try:
            yield manager
        finally:
            await manager.stop()


@asynccontextmanager
async def supervised_host_run(host: IHost, listen_addrs: Iterable[Any]) -> AsyncIterator[None]:
    """`host.run(listen_addrs)` with the swarm under `supervised_trio_service`, so a muxer or
    connection task that raises closes that peer's connection instead of ending the host.

    Upstream's `run` does the same two steps (run the swarm service, listen) plus mDNS, UPnP and
    bootstrap discovery, which our hosts never enable (refused here rather than silently skipped).
    """
    for extra in ("mDNS", "upnp", "bootstrap"):
        if getattr(host, extra, None) is not None:
            raise ValueError(f"supervised_host_run does not start {extra}; construct the host without it")
    network = host.get_network()
    async with supervised_trio_service(network):
        await network.listen(*listen_addrs)
        yield
