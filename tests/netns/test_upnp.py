"""`--upnp` on a network with no UPnP router: the peer starts, maps nothing and announces only its
own addresses. Run in a fresh network namespace (only loopback) so discovery's multicast stays in
it. Skipped where the kernel refuses namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

NS = f"p2upnp{os.getpid() % 10000}"

PEER = """
import json, time, trio
from p2pnode.net.host import LibP2PNetwork, NetConfig
async def main():
    start = time.monotonic()
    net = LibP2PNetwork(bytes(32), config=NetConfig(upnp=True, autonat=False))
    async with net:
        with trio.fail_after(60):
            while net.port_mapping.router_found is None:  # discovery gives up after a few seconds
                await trio.sleep(0.1)
        print(json.dumps({"started_s": time.monotonic() - start, "addrs": net.listen_addrs(),
                          "router_found": net.port_mapping.router_found, "mapped": [str(a) for a in net.port_mapping.mapped]}))
trio.run(main)
"""


def test_upnp_without_a_router_maps_nothing_and_starts() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns)")
    made = subprocess.run(["ip", "netns", "add", NS], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"the kernel refuses network namespaces: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
        result = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", PEER],
                                capture_output=True, text=True, timeout=100)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["router_found"] is False and report["mapped"] == []
        assert report["addrs"] and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in report["addrs"])
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
