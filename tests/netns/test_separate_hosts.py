"""Peers on separate hosts (network namespaces joined by a bridge): cut a link, heal it, converge.

Three block validators, one per namespace. Cutting one host off leaves the other two with exactly
2/3 of the stake, so they keep finalizing while the lone one cannot; after healing, all three
follow one chain and no finalized block was reverted. Skipped where the kernel refuses namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair
from p2pnode.net.identity import peer_id_from_seed
from p2pnode.testing.live_peer import stop_processes
from p2pnode.testing.live_peer import wait_until as poll_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(600)]

HOSTS = ["a", "b", "c"]
PREFIX = f"p2pn{os.getpid() % 10000}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def ns(host: str) -> str:
    return f"{PREFIX}-{host}"


def address(host: str) -> str:
    return f"10.231.7.{HOSTS.index(host) + 1}"


def _namespaces_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = sh("ip", "netns", "add", f"{PREFIX}-probe", check=False)
    if probe.returncode != 0:
        return f"the kernel refuses network namespaces: {probe.stderr.strip()}"
    sh("ip", "netns", "del", f"{PREFIX}-probe", check=False)
    return None


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    reason = _namespaces_available()
    if reason:
        pytest.skip(reason)
    bridge = ns("br")
    try:
        sh("ip", "netns", "add", bridge)
        sh("ip", "netns", "exec", bridge, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", bridge, "ip", "link", "set", "br0", "up")
        for host in HOSTS:
            sh("ip", "netns", "add", ns(host))
            sh("ip", "link", "add", f"{PREFIX}{host}", "type", "veth", "peer", "name", f"{PREFIX}{host}b")
            sh("ip", "link", "set", f"{PREFIX}{host}", "netns", ns(host))
            sh("ip", "link", "set", f"{PREFIX}{host}b", "netns", bridge)
            sh("ip", "netns", "exec", ns(host), "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns(host), "ip", "link", "set", f"{PREFIX}{host}", "name", "eth0")
            sh("ip", "netns", "exec", ns(host), "ip", "addr", "add", f"{address(host)}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns(host), "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", bridge, "ip", "link", "set", f"{PREFIX}{host}b", "master", "br0")
            sh("ip", "netns", "exec", bridge, "ip", "link", "set", f"{PREFIX}{host}b", "up")
        yield
    finally:
        for host in [*HOSTS, "br"]:
            sh("ip", "netns", "del", ns(host), check=False)


def set_link(host: str, up: bool) -> None:
    sh("ip", "netns", "exec", ns("br"), "ip", "link", "set", f"{PREFIX}{host}b", "up" if up else "down")


def status(host: str, api_port: int) -> dict[str, Any] | None:
    result = sh("ip", "netns", "exec", ns(host), sys.executable, "-m", "p2pnode", "status", "--json",
                "--api", f"http://127.0.0.1:{api_port}", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def block_hash(host: str, api_port: int, height: int) -> str | None:
    code = ("import json,sys; from p2pnode.cli.client import get_json; "
            f"print(json.dumps(get_json('http://127.0.0.1:{api_port}', '/blocks/{height}')))")
    result = sh("ip", "netns", "exec", ns(host), sys.executable, "-c", code, check=False)
    return json.loads(result.stdout)["hash"] if result.returncode == 0 else None


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    # Each poll runs a process in another namespace (no event crosses into this one): once a second.
    return poll_until(condition, timeout, what, interval=1.0)


def test_cut_and_heal_converges_without_reverting_finality(network: None, tmp_path: Path) -> None:
    genesis = make_genesis(3, market=False, slot_ms=1000)
    (tmp_path / "genesis.json").write_text(json.dumps(genesis))
    port, api_port = 4001, 8545
    first = f"/ip4/{address('a')}/tcp/{port}/p2p/{peer_id_from_seed(dev_keypair('validator-0-hot').seed)}"
    processes = []
    try:
        for i, host in enumerate(HOSTS):
            command = ["ip", "netns", "exec", ns(host), sys.executable, "-m", "p2pnode", "join",
                       "--network", str(tmp_path / "genesis.json"), "--data-dir", str(tmp_path / host),
                       "--dev-key", f"validator-{i}-hot", "--validator", "--no-progress", "--log-level", "warning",
                       "--listen", f"/ip4/{address(host)}/tcp/{port}", "--api-port", str(api_port)]
            if host != "a":
                command += ["--bootstrap", first]
            log = open(tmp_path / f"{host}.log", "wb")  # noqa: SIM115 - closed with the process
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

        def all_finalized(minimum: int) -> list[dict[str, Any]] | None:
            rows = [status(h, api_port) for h in HOSTS]
            if all(r and (r["finalized_height"] or 0) >= minimum for r in rows):
                return rows  # type: ignore[return-value]
            return None

        wait_until(lambda: all_finalized(4), 180, "all three hosts to finalize")
        set_link("c", up=False)
        lone = status("c", api_port)
        assert lone is not None
        lone_final = lone["finalized_height"], lone["finalized_hash"]
        majority_final = status("a", api_port)["finalized_height"]  # type: ignore[index]
        wait_until(lambda: status("a", api_port)["finalized_height"] >= majority_final + 8, 120,  # type: ignore[index]
                   "the 2/3 side to keep finalizing while c is cut off")
        cut_off = status("c", api_port)
        assert cut_off is not None
        assert cut_off["finalized_height"] <= lone_final[0] + 4  # alone (1/3 of stake) it cannot finalize more
        set_link("c", up=True)
        target = status("a", api_port)["finalized_height"]  # type: ignore[index]
        rows = wait_until(lambda: all_finalized(target), 180, "c to converge after the link heals")
        height = min(r["finalized_height"] for r in rows)
        hashes = {block_hash(h, api_port, height) for h in HOSTS}
        assert len(hashes) == 1 and None not in hashes
        # nothing finalized before the cut was reverted anywhere
        assert block_hash("a", api_port, lone_final[0]) == lone_final[1]
        assert block_hash("c", api_port, lone_final[0]) == lone_final[1]
    finally:
        stop_processes(processes)
