"""Watch for protocol versions this build cannot run, and say so once, before the chain gets there."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from p2pnode.chain import governance, transition
from p2pnode.chain.state import State

log = logging.getLogger("p2pnode")

CHECK_INTERVAL_S = 2.0


def upgrade_problem(state: State) -> str | None:
    """Why this node cannot follow the chain at `state` (now or at a scheduled upgrade), or None."""
    supported = sorted(transition.SUPPORTED_PROTOCOL_VERSIONS)
    active = state.param("protocol_version")
    if active not in transition.SUPPORTED_PROTOCOL_VERSIONS:
        return f"protocol version {active} is active and this node supports only {supported}: upgrade p2pnode"
    upgrade = governance.pending_upgrade(state)
    if upgrade and upgrade[1] not in transition.SUPPORTED_PROTOCOL_VERSIONS:
        return (f"protocol upgrade to version {upgrade[1]} activates at height {upgrade[0]}; this node "
                f"supports only {supported} and will stop there: upgrade p2pnode")
    return None


class UpgradeWatcher:
    """Keeps `halted` (shown by the API) up to date with the head state; logs each new problem once."""

    def __init__(self, head_state: Callable[[], State]) -> None:
        self._head_state = head_state
        self.halted: str | None = None

    def check(self) -> str | None:
        problem = upgrade_problem(self._head_state())
        if problem is not None and problem != self.halted:
            log.error("%s", problem)
        self.halted = problem
        return problem

    async def run(self) -> None:
        while True:
            self.check()
            await trio.sleep(CHECK_INTERVAL_S)
