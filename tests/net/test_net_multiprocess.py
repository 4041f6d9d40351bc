"""A victim node in its own OS process, attacked from this one; it must survive and keep serving."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from netutil import (
    TOPIC,
    dial,
    listening_node,
    raw_host,
    send_and_wait_for_close,
    wait_for,
)

from p2pnode.net.identity import parse_peer_id
from p2pnode.net.reqresp import encode_uvarint

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

PEER_SCRIPT = Path(__file__).with_name("peer_process.py")


class PeerProcess:
    """A running peer_process.py: its JSON output lines, and its stdin as the off switch."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._buffer = b""

    async def read_lines(self) -> None:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self._buffer += chunk
            *complete, self._buffer = self._buffer.split(b"\n")
            self.lines += [json.loads(line) for line in complete if line.startswith(b"{")]

    def gossip(self) -> list[str]:
        return [line["gossip"] for line in self.lines if "gossip" in line]


async def test_victim_process_survives_attacks_and_keeps_serving() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(PEER_SCRIPT), "mp-victim"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PEER_SCRIPT.parent,
    )
    victim = PeerProcess(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(victim.read_lines)
        # Imports alone take seconds on a loaded 2-core machine.
        await wait_for(lambda: bool(victim.lines), 60, "victim ready")
        ready = victim.lines[0]
        victim_id = parse_peer_id(ready["peer_id"])

        async with raw_host("mp-attacker") as attacker:
            await dial(attacker, ready["addrs"][0])
            await send_and_wait_for_close(attacker, victim_id, str(PROTOCOL_ID_V11), encode_uvarint(10) + b"\x0f" * 10)
            garbage = encode_uvarint(64) + random.Random(7).randbytes(4096)
            await send_and_wait_for_close(attacker, victim_id, str(PROTOCOL_ID_V11), garbage)
            await send_and_wait_for_close(attacker, victim_id, "/attack/json/1", b"{not json")
            await send_and_wait_for_close(attacker, victim_id, "/p2pnode/testnet/echo/1", encode_uvarint(100) + b"x", half_close=True)
        assert process.returncode is None

        honest, inbox = listening_node("mp-honest", ready["addrs"])
        async with honest:
            reply = await honest.request(ready["peer_id"], "/p2pnode/testnet/echo/1", b"ping", timeout=10, max_response_bytes=64)
            assert reply == b"echo:ping"
            await wait_for(lambda: bool(honest.mesh_peers(TOPIC)), 15, "mesh with the victim")
            await honest.publish(TOPIC, b"after the attacks")
            await wait_for(lambda: victim.gossip() == ["after the attacks"], 15, "victim receives gossip")
        assert process.returncode is None

        assert process.stdin is not None
        await process.stdin.aclose()
        with trio.fail_after(20):
            assert await process.wait() == 0
