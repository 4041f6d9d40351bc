"""Subnet economics as state transitions (registration, serving, weights, emission, epochs)."""

from __future__ import annotations

from typing import Any

from p2pnode.chain.context import BlockContext
from p2pnode.chain.state import State


def block_step(state: State, ctx: BlockContext) -> None:
    """Per-block emission and the epochs of subnets that are due."""


TX_HANDLERS: dict[str, Any] = {}


def init_genesis(state: State, genesis_subnets: Any) -> None:
    """Create the root subnet (netuid 0) and the subnets listed in genesis."""
