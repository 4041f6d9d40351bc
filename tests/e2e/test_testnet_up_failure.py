"""A failed `p2pnode testnet up` stops the peers it started (issue 14 item 4), or with
--keep-on-failure says plainly which still run and how to stop them."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from p2pnode.cli.main import main

pytestmark = pytest.mark.timeout(180)


@contextmanager
def _taken_port_for_node_1() -> Iterator[int]:
    """A base port whose node-0 ports are free and whose node-1 API port is taken by us, so node-1
    fails at start while node-0 is already up."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1] - 3
        if base < 1024:
            continue
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.1", base + 3))
            blocker.listen()
        except OSError:
            blocker.close()
            continue
        free = True
        for port in (base, base + 1, base + 2):
            with socket.socket() as check:
                try:
                    check.bind(("127.0.0.1", port))
                except OSError:
                    free = False
        if free:
            try:
                yield base
            finally:
                blocker.close()
            return
        blocker.close()
    raise AssertionError("no free port range found")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by someone else) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _up(tmp_path: Path, base: int, *extra: str) -> int:
    return main(["testnet", "up", "-n", "2", "--no-market", "--dir", str(tmp_path), "--base-port", str(base),
                 "--timeout", "120", *extra])


def test_failed_up_stops_the_peers_it_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _taken_port_for_node_1() as base:
        assert _up(tmp_path, base) != 0
    err = capsys.readouterr().err
    assert "node-1 exited during start" in err
    assert "stopped the 1 peer(s) this `up` had started" in err
    nodes = json.loads((tmp_path / "testnet.json").read_text())["nodes"]
    assert [n["name"] for n in nodes] == ["node-0", "node-1"]
    assert not any(_pid_alive(n["pid"]) for n in nodes)


def test_keep_on_failure_names_what_still_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _taken_port_for_node_1() as base:
        assert _up(tmp_path, base, "--keep-on-failure") != 0
    err = capsys.readouterr().err
    assert "1 peer(s) still run (node-0;" in err
    assert f"p2pnode testnet down --dir {tmp_path}" in err
    nodes = json.loads((tmp_path / "testnet.json").read_text())["nodes"]
    assert _pid_alive(nodes[0]["pid"])
    assert main(["testnet", "down", "--dir", str(tmp_path)]) == 0
    assert not _pid_alive(nodes[0]["pid"])
