from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("P2PNODE_KDF", "fast")

if TYPE_CHECKING:
    from p2pnode.services.chain.block_tree import BlockTree


@pytest.fixture
def new_chain(tmp_path: Path) -> Callable[[str], BlockTree]:
    """Opens another chain, its store in tmp_path under `name`, on the development genesis (4
    validators, 4 funded users): chains opened by one test share that genesis and may fork."""
    from p2pnode.testing.factories import make_genesis, open_chain

    genesis = make_genesis(4, 4)
    return lambda name: open_chain(tmp_path / f"{name}.sqlite", genesis)


@pytest.fixture
def chain(new_chain: Callable[[str], BlockTree]) -> BlockTree:
    """One chain on the development genesis."""
    return new_chain("chain")
