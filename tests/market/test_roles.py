"""Roles wait for the chain and fail in one line, never taking the peer down (virtual time)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from marketutil import NETUID, OneSubnet, key

from p2pnode.services.clock import TrioClock
from p2pnode.services.market.chain_view import NeuronInfo, SubnetInfo
from p2pnode.services.market.roles import RoleFailed, RoleStatus, one_line, supervise, wait_for_chain

pytestmark = pytest.mark.timeout(30)

HOTKEY = key("role-hotkey").public_key


class GrowingChain(OneSubnet):
    """A chain whose subnet appears, then registers the hotkey, when the test says so."""

    def __init__(self) -> None:
        super().__init__([])
        self.exists = False

    def subnet(self, netuid: int) -> SubnetInfo | None:
        return super().subnet(netuid) if self.exists else None


async def test_a_role_waits_for_sync_then_the_subnet_then_its_registration(autojump_clock: Any) -> None:
    chain, clock, lines = GrowingChain(), TrioClock(), []
    status = RoleStatus("miner", on_change=lines.append)
    gap: list[str | None] = ["head at slot 3 of 900"]
    found: list[SubnetInfo] = []

    async def role() -> None:
        found.append(
            await wait_for_chain(status, chain, NETUID, HOTKEY, lambda: gap[0], clock, need_registration=True)
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(role)
        await trio.sleep(5)
        assert status.state == "waiting for the chain to sync (head at slot 3 of 900)"
        gap[0] = None
        await trio.sleep(5)
        assert status.state == f"waiting for subnet {NETUID} to exist"
        chain.exists = True
        await trio.sleep(5)
        assert status.state == f"waiting for this hotkey's registration on subnet {NETUID}"
        assert not found
        chain.rows.append(NeuronInfo(0, HOTKEY, ""))
    assert found == [chain.info]
    assert lines == [
        "starting",
        "waiting for the chain to sync (head at slot 3 of 900)",
        f"waiting for subnet {NETUID} to exist",
        f"waiting for this hotkey's registration on subnet {NETUID}",
    ]


async def test_a_failing_role_is_one_line_and_is_retried(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    status, attempts = RoleStatus("miner"), []

    async def role() -> None:
        attempts.append(trio.current_time())
        if len(attempts) == 1:
            raise RoleFailed("cannot serve my_model:factory on subnet 2: no module named 'my_model'")
        if len(attempts) == 2:
            async with trio.open_nursery() as nursery:  # a failure deep inside a nursery: a group

                async def boom() -> None:
                    raise KeyError("netuid")

                nursery.start_soon(boom)

    with caplog.at_level(logging.INFO, logger="p2pnode.roles"):
        await supervise(status, role, TrioClock(), retry_ms=30_000)
    assert len(attempts) == 3 and attempts[1] - attempts[0] == pytest.approx(30.0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "miner: failed: cannot serve my_model:factory on subnet 2: no module named 'my_model' (retrying in 30 s)",
        "miner: failed: KeyError: 'netuid' (retrying in 30 s)",
    ]
    assert all(r.exc_info is None for r in caplog.records)  # never a traceback
    assert status.failures == 2


def test_one_line() -> None:
    assert one_line(ValueError("two\nlines")) == "ValueError: two lines"
    assert one_line(ExceptionGroup("g", [OSError("disk"), ValueError("x")])) == "OSError: disk"
    assert len(one_line(RuntimeError("x" * 10_000))) == 300


def test_a_moving_line_is_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    status = RoleStatus("miner")
    with caplog.at_level(logging.INFO, logger="p2pnode.roles"):
        for slot in range(5):
            status.set(f"waiting for the chain to sync (head at slot {slot} of 9)", kind="sync")
        status.set("waiting for subnet 1 to exist")
    assert status.state == "waiting for subnet 1 to exist"
    assert [r.getMessage() for r in caplog.records] == [
        "miner: waiting for the chain to sync (head at slot 0 of 9)",
        "miner: waiting for subnet 1 to exist",
    ]
