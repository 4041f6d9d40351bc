"""Volunteers at home behind NAT routers, on separate hosts (network namespaces, real NAT).

    public segment 10.77.0.0/24 (a bridge):  v0 10.77.0.10 (bootstrap, relay)   v1 10.77.0.11 (relay)
                                              router A 10.77.0.20               router B 10.77.0.21
    home A 192.168.1.0/24 behind router A:    the miner 192.168.1.2
    home B 192.168.2.0/24 behind router B:    a querying peer 192.168.2.2

Each router masquerades its home network (nftables) and forwards nothing inbound that the home
did not start; the public hosts have no route into either home. Every peer runs `p2pnode join`
with its default listen addresses (every interface, port 30633). The test shows: AutoNAT makes
the validators public and the miner private; the miner reserves relay slots on both validators and
announces /p2p-circuit addresses; it earns incentive; the home-B peer, which cannot dial the
miner nor be dialled by it, queries it through a relay; cutting v0 off leaves the miner reachable
through v1. Skipped where the kernel refuses namespaces or NAT rules, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair
from p2pnode.net.addresses import DEFAULT_P2P_PORT
from p2pnode.net.identity import peer_id_from_seed
from p2pnode.testing.live_peer import stop_processes
from p2pnode.testing.live_peer import wait_until as poll_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(900)]

PREFIX = f"p2nat{os.getpid() % 10000}"
PUBLIC = {"v0": "10.77.0.10", "v1": "10.77.0.11", "ra": "10.77.0.20", "rb": "10.77.0.21"}
HOMES = {"a": ("ra", "miner", "192.168.1"), "b": ("rb", "home", "192.168.2")}
API = 8545
ERRORS: list[str] = []  # the last failed API calls, for assertion messages
REPORT = Path(os.environ.get("P2PNODE_NETNS_REPORT", "")) if os.environ.get("P2PNODE_NETNS_REPORT") else None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def in_ns(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns(name), *args, check=check)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{package} ({tool}) is not installed"
    probe = ns("probe")
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"the kernel refuses network namespaces: {made.stderr.strip()}"
    try:
        nat = sh("ip", "netns", "exec", probe, "nft", "add table ip nat; add chain ip nat post "
                 "{ type nat hook postrouting priority 100; }; add rule ip nat post masquerade", check=False)
        if nat.returncode != 0:
            return f"the kernel refuses NAT rules: {nat.stderr.strip()}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


def _veth(a: str, a_if: str, b: str, b_if: str) -> None:
    tmp_a, tmp_b = f"{PREFIX}{a}{a_if}"[-15:], f"{PREFIX}{b}{b_if}"[-15:]
    sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    sh("ip", "link", "set", tmp_a, "netns", ns(a))
    sh("ip", "link", "set", tmp_b, "netns", ns(b))
    in_ns(a, "ip", "link", "set", tmp_a, "name", a_if)
    in_ns(b, "ip", "link", "set", tmp_b, "name", b_if)
    in_ns(a, "ip", "link", "set", a_if, "up")
    in_ns(b, "ip", "link", "set", b_if, "up")


# Like most home routers, they drop what arrives unasked on the WAN side rather than answer it
# with a reset: a reset kills the other peer's half of a TCP hole punch (see decisions.md).
ROUTER_RULES = """
table ip nat {{
    chain postrouting {{ type nat hook postrouting priority 100; oifname "wan" masquerade; }}
}}
table ip filter {{
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "wan" ct state new drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        iifname "lan" oifname "wan" accept
        iifname "wan" oifname "lan" ct state established,related accept
    }}
}}
"""


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    names = ["br", *PUBLIC, *(home for _, home, _ in HOMES.values())]
    try:
        for name in names:
            sh("ip", "netns", "add", ns(name))
            in_ns(name, "ip", "link", "set", "lo", "up")
        in_ns("br", "ip", "link", "add", "br0", "type", "bridge")
        in_ns("br", "ip", "link", "set", "br0", "up")
        for name, ip in PUBLIC.items():
            _veth(name, "wan" if name.startswith("r") else "eth0", "br", f"p-{name}")
            in_ns("br", "ip", "link", "set", f"p-{name}", "master", "br0")
            in_ns(name, "ip", "addr", "add", f"{ip}/24", "dev", "wan" if name.startswith("r") else "eth0")
        for router, home, net in HOMES.values():
            _veth(router, "lan", home, "eth0")
            in_ns(router, "ip", "addr", "add", f"{net}.1/24", "dev", "lan")
            in_ns(home, "ip", "addr", "add", f"{net}.2/24", "dev", "eth0")
            in_ns(home, "ip", "route", "add", "default", "via", f"{net}.1")
            in_ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            rules = subprocess.run(["ip", "netns", "exec", ns(router), "nft", "-f", "-"],
                                   input=ROUTER_RULES.format(), capture_output=True, text=True)
            if rules.returncode != 0:
                pytest.skip(f"the kernel refuses the router's NAT rules: {rules.stderr.strip()}")
        yield
    finally:
        for name in names:
            sh("ip", "netns", "del", ns(name), check=False)


def set_link(name: str, up: bool) -> None:
    in_ns("br", "ip", "link", "set", f"p-{name}", "up" if up else "down")


def api(name: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """GET (or POST `body`) on the API of the peer in namespace `name`; None if it fails."""
    code = ("import json,sys,time,urllib.request as u\n"
            f"req=u.Request('http://127.0.0.1:{API}{path}', data={json.dumps(body).encode() if body else None!r},"
            " headers={'Content-Type':'application/json'})\n"
            "t=time.monotonic()\n"
            "try:\n"
            f"    r=json.load(u.urlopen(req, timeout={timeout}))\n"
            "except u.HTTPError as e:\n"
            "    sys.exit(f'HTTP {e.code}: {e.read()[:300]!r}')\n"
            "print(json.dumps({'took_s': time.monotonic()-t, 'body': r}))")
    result = in_ns(name, sys.executable, "-c", code, check=False)
    if result.returncode != 0:
        ERRORS.append(f"{name} {path}: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(result.stdout)


def status(name: str) -> dict[str, Any] | None:
    answer = api(name, "/status")
    return None if answer is None else answer["body"]


def relayed_only(name: str, peer: str) -> bool:
    """The peer in namespace `name` is connected to `peer`, and only through relays."""
    answer = api(name, f"/peers/{peer}")
    addrs = [] if answer is None else answer["body"]["connection_addrs"]
    return bool(addrs) and all("/p2p-circuit" in a for a in addrs)


def challenges_answered(name: str) -> int:
    """How many of the validator's challenges a miner answered (scored now or later)."""
    result = in_ns(name, sys.executable, "-c", "import urllib.request as u;"
                   f"print(u.urlopen('http://127.0.0.1:{API}/metrics', timeout=30).read().decode())", check=False)
    total = 0
    for line in result.stdout.splitlines():
        if line.startswith("p2pnode_validator_challenges_total{") and any(
                f'outcome="{kind}"' in line for kind in ("scored", "pending")):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    # Each poll runs a process in another namespace (no event crosses into this one): once a second.
    return poll_until(condition, timeout, what, interval=1.0)


def test_a_natted_miner_earns_and_answers_through_relays(network: None, tmp_path: Path) -> None:
    genesis = make_genesis(2, market=True, slot_ms=1000)
    (tmp_path / "genesis.json").write_text(json.dumps(genesis))
    v0_id = peer_id_from_seed(dev_keypair("validator-0-hot").seed)
    bootstrap = f"/ip4/{PUBLIC['v0']}/tcp/{DEFAULT_P2P_PORT}/p2p/{v0_id}"
    roles = {
        "v0": ["--dev-key", "validator-0-hot", "--validator", "--validate", "1", "--validator-round", "3"],
        "v1": ["--dev-key", "validator-1-hot", "--validator", "--validate", "1", "--validator-round", "3",
               "--bootstrap", bootstrap],
        "miner": ["--dev-key", "miner-0-hot", "--miner", "text-bigram", "--bootstrap", bootstrap],
        "home": ["--dev-key", "user-0", "--bootstrap", bootstrap],
    }
    processes = []
    figures: dict[str, Any] = {}
    try:
        started = {}
        for name, extra in roles.items():
            command = [sys.executable, "-m", "p2pnode", "join", "--network", str(tmp_path / "genesis.json"),
                       "--data-dir", str(tmp_path / name), "--no-progress", "--log-level", "info",
                       "--api-port", str(API), *extra]
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            processes.append(subprocess.Popen(["ip", "netns", "exec", ns(name), *command], stdout=log,
                                              stderr=subprocess.STDOUT))
            started[name] = time.monotonic()
            if name == "v0":  # the others bootstrap from it (they would retry every 10 s anyway)
                wait_until(lambda: status("v0"), 120, "the bootstrap peer to start")

        def reach(name: str) -> str | None:
            s = status(name)
            return None if s is None else s["network"]["reachability"]

        wait_until(lambda: reach("v0") == "public" and reach("v1") == "public", 240, "AutoNAT: validators public")
        wait_until(lambda: reach("miner") == "private", 240, "AutoNAT: the miner private")
        miner = wait_until(lambda: (s := status("miner")) and len(s["network"]["relay_reservations"]) == 2 and s,
                           120, "the miner to hold reservations on both relays")
        figures["join_to_reachable_through_relay_s"] = round(time.monotonic() - started["miner"], 1)
        announced = miner["network"]["announced_addrs"]
        assert announced and all("/p2p-circuit/" in a for a in announced), announced
        assert not any("192.168." in a or "0.0.0.0" in a for a in announced)
        assert miner["network"]["dht_mode"] == "client"
        v0 = status("v0")
        assert v0 is not None and any(a.startswith(f"/ip4/{PUBLIC['v0']}/tcp/{DEFAULT_P2P_PORT}/") for a in
                                      v0["network"]["announced_addrs"])
        assert not any("0.0.0.0" in a or "/ip6/::1/" in a for a in v0["network"]["announced_addrs"])

        # the home-B peer queries the miner: only a relay connects them
        def query_from(name: str) -> dict[str, Any] | None:
            answer = api(name, "/query", {"netuid": 1, "input": "hello wor"}, timeout=60)
            return answer if answer and answer["body"].get("response") is not None else None

        first = wait_until(lambda: query_from("home"), 240, "the home-B peer's query to be answered")
        answered_at = time.monotonic()
        figures["first_relayed_query_s"] = round(first["took_s"], 3)
        miner_id = peer_id_from_seed(dev_keypair("miner-0-hot").seed)
        home_id = peer_id_from_seed(dev_keypair("user-0").seed)
        assert first["body"]["peer_id"] == miner_id

        # hole punching: the relayed connection between the two homes becomes a direct one, each
        # end seeing the other's router at the fixed port (both NATs kept the listen port)
        def direct_addrs(name: str, peer: str) -> list[str] | None:
            answer = api(name, f"/peers/{peer}")
            addrs = [] if answer is None else answer["body"]["connection_addrs"]
            return [a for a in addrs if "/p2p-circuit" not in a] or None

        punched = wait_until(lambda: direct_addrs("home", miner_id), 90, "a direct connection home B -> miner")
        figures["hole_punched_after_first_answer_s"] = round(time.monotonic() - answered_at, 1)
        assert any(a.startswith(f"/ip4/{PUBLIC['ra']}/tcp/{DEFAULT_P2P_PORT}") for a in punched), punched
        from_miner = wait_until(lambda: direct_addrs("miner", home_id), 30, "the miner's side of it")
        assert any(a.startswith(f"/ip4/{PUBLIC['rb']}/tcp/{DEFAULT_P2P_PORT}") for a in from_miner), from_miner
        figures["hole_punches_miner"] = status("miner")["network"]["hole_punches"]  # type: ignore[index]

        punched_queries, direct = [], []
        # The home peer has no stake: the miner admits it 1 request/s (burst 5), and a query may
        # ask a miner more than once (hedging). Let the burst refill, then pace.
        time.sleep(5)
        for _ in range(5):
            time.sleep(2)
            punched_queries.append(query_from("home"))
            direct.append(query_from("v1"))
        assert all(punched_queries) and all(direct), ERRORS[-3:]
        figures["hole_punched_query_s"] = sorted(round(a["took_s"], 3) for a in punched_queries)  # type: ignore[index]
        figures["direct_query_s"] = sorted(round(a["took_s"], 3) for a in direct)  # type: ignore[index]

        # the validators score it: it earns incentive
        def miner_incentive() -> float | None:
            answer = api("v1", "/metagraph/1")
            if answer is None:
                return None
            rows = [r for r in answer["body"] if r["hotkey"] == dev_keypair("miner-0-hot").address]
            return rows[0]["incentive"] if rows and rows[0]["incentive"] > 0 else None

        figures["miner_incentive"] = wait_until(miner_incentive, 400, "the NATed miner to earn incentive")

        # v1 challenges the miner when the relay is the only path: router A resets every
        # connection between home A and v1, so v1 reaches the miner through v0's relay
        in_ns("ra", "nft", f"add table ip cut; add chain ip cut block {{ type filter hook forward priority -10; }}; "
              f"add rule ip cut block ip daddr {PUBLIC['v1']} meta l4proto tcp reject with tcp reset; "
              f"add rule ip cut block ip saddr {PUBLIC['v1']} meta l4proto tcp reject with tcp reset")
        answered_before = challenges_answered("v1")
        figures["relayed_queries_failed"] = 0

        def relayed_query() -> dict[str, Any] | None:
            # On a loaded machine a relay that answers its probe late is dropped, and the
            # circuits through it with it: a query then fails and the next one is relayed afresh.
            answer = query_from("v1")
            if answer is None:
                figures["relayed_queries_failed"] += 1
            return answer if answer and relayed_only("v1", miner_id) else None

        relayed_queries = [wait_until(relayed_query, 180, "v1 to reach the miner through the relay")]
        for _ in range(4):
            time.sleep(2)
            relayed_queries.append(wait_until(relayed_query, 60, "another query through the relay"))
        figures["relayed_query_s"] = sorted(round(a["took_s"], 3) for a in relayed_queries)
        wait_until(lambda: challenges_answered("v1") > answered_before and relayed_only("v1", miner_id), 180,
                   "v1's challenge answered through the relay")
        in_ns("ra", "nft", "delete table ip cut")

        # cut v0 (bootstrap and relay) off: the miner keeps the v1 reservation and stays reachable
        set_link("v0", up=False)
        wait_until(lambda: (s := status("miner")) and s["network"]["relay_reservations"]
                   and all(r != v0_id for r in s["network"]["relay_reservations"]), 180,
                   "the miner to drop the lost relay")
        after_cut = wait_until(lambda: query_from("home"), 240, "a query through the remaining relay")
        figures["query_after_relay_cut_s"] = round(after_cut["took_s"], 3)
    finally:
        stop_processes(processes)
        print("figures:", json.dumps(figures))
        if REPORT is not None:
            REPORT.write_text(json.dumps(figures, indent=2))
            for name in roles:
                shutil.copy(tmp_path / f"{name}.log", REPORT.parent / f"{name}.log")
