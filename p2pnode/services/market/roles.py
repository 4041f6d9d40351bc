"""Running a market role (miner, subnet validator) inside a peer without ever endangering it.

A role starts only once the peer has synced, then waits for what it needs on chain (its subnet,
its hotkey's registration), saying what it waits for in one line, in the log and in `status`:

    status = RoleStatus("miner", on_change=lambda line: ...)
    await supervise(status, body, clock)          # body() awaits wait_for_chain(...) first

A failure of the role is one log line (never a traceback) and a `status` entry; the role is tried
again after a pause, and the peer's chain duties go on regardless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from p2pnode.services.clock import Clock
from p2pnode.services.market.chain_view import MarketChain, SubnetInfo

__all__ = ["RoleFailed", "RoleStatus", "one_line", "supervise", "wait_for_chain"]

logger = logging.getLogger("p2pnode.roles")

POLL_MS = 1_000
RETRY_MS = 30_000
MAX_LINE_CHARS = 300


class RoleFailed(Exception):
    """A role cannot run as configured (the message says why, in one line)."""


class RoleStatus:
    """What one role is doing now, in one line; logged when it changes."""

    def __init__(self, name: str, on_change: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.state = "starting"
        self._kind = "starting"
        self.failures = 0
        self._on_change = on_change
        if on_change is not None:
            on_change(self.state)

    def set(self, state: str, level: int = logging.INFO, kind: str | None = None) -> None:
        """Show `state`; log it when its `kind` (default: the line itself) changes, so a line
        whose numbers move every second (sync progress) is logged once, not every second."""
        kind = state if kind is None else kind
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)
        if kind != self._kind:
            self._kind = kind
            logger.log(level, "%s: %s", self.name, state)


def one_line(exc: BaseException) -> str:
    """An exception as one short line: the first leaf of a group, its type and message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split()) or "(no message)"
    name = type(exc).__name__
    return (text if isinstance(exc, RoleFailed) else f"{name}: {text}")[:MAX_LINE_CHARS]


async def wait_for_chain(
    status: RoleStatus,
    chain: MarketChain,
    netuid: int,
    hotkey: bytes,
    sync_gap: Callable[[], str | None],
    clock: Clock,
    *,
    need_registration: bool,
    poll_ms: int = POLL_MS,
) -> SubnetInfo:
    """Return the subnet once the peer has synced, the subnet exists (with a task) and, if asked,
    `hotkey` is registered on it; until then say in `status` what is missing.

    `sync_gap()` is None once the peer counts as synced, else how far behind it is.
    """
    while True:
        gap = sync_gap()
        info = chain.subnet(netuid) if gap is None else None
        if gap is not None:
            status.set(f"waiting for the chain to sync ({gap})", kind="sync")
        elif info is None or info.task == "root":
            status.set(f"waiting for subnet {netuid} to exist")
        elif need_registration and chain.uid_of(netuid, hotkey) is None:
            status.set(f"waiting for this hotkey's registration on subnet {netuid}")
        else:
            return info
        await clock.sleep_until_ms(clock.now_ms() + poll_ms)


async def supervise(
    status: RoleStatus, body: Callable[[], Awaitable[None]], clock: Clock, *, retry_ms: int = RETRY_MS
) -> None:
    """Run `body` until cancelled; a failure is logged as one line and retried after `retry_ms`."""
    while True:
        try:
            await body()
            return
        except Exception as exc:  # a role must never take the peer down
            status.failures += 1
            status.set(f"failed: {one_line(exc)} (retrying in {retry_ms // 1000} s)", logging.ERROR)
        await clock.sleep_until_ms(clock.now_ms() + retry_ms)
