"""Stake-weighted governance: proposals, votes, tally and enactment."""

from __future__ import annotations

from typing import Any

from p2pnode.chain.context import BlockContext
from p2pnode.chain.state import State


def block_step(state: State, ctx: BlockContext) -> None:
    """Tally proposals whose voting ends and enact those whose delay has passed."""


TX_HANDLERS: dict[str, Any] = {}
