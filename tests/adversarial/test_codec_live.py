"""Issue 13 items 2 and 3 against a real peer process on loopback, through `POST /tx` (raw CBOR).

Item 2: at c068d92 each 60 KiB tag-4 transaction cost the peer ~0.35 s of CPU inside cbor2 (6 s at
256 KiB over gossip). Item 3: each transaction with an invalid UTF-8 text leaked its input inside
cbor2 (800 of them: ~47 MiB here, ~99 MiB in the issue's run). The peer's own CPU time and RSS are
read from /proc.
"""

from __future__ import annotations

import os

import pytest
from test_codec_hostile_bytes import tag4_bignum, tx_with_field

from p2pnode.testing.live_peer import LivePeer, json_request, module_peer_fixture

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads the peer's CPU and RSS from /proc"),
]

REFUSED = (400, 422)


peer = module_peer_fixture("codec-live", market=False)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def post_tx(peer: LivePeer, data: bytes) -> tuple[int, dict]:
    status, body = json_request(peer, "POST", "/tx", data)
    assert status in REFUSED, (status, body)
    return status, body


def test_tag4_transactions_cost_the_peer_no_cpu(peer: LivePeer) -> None:
    message = tx_with_field(tag4_bignum(60 * 1024))
    post_tx(peer, message)  # warm up the route
    before = cpu_seconds(peer.process.pid)
    for _ in range(20):
        post_tx(peer, message)
    spent = cpu_seconds(peer.process.pid) - before
    print(f"20 tag-4 transactions: {spent:.2f} s of the peer's CPU")
    # cbor2 needed ~0.35 s each (7 s for 20); what is left is HTTP and the peer's own slots.
    assert spent < 3.0, f"20 refused transactions cost the peer {spent:.2f} s of CPU"
    assert json_request(peer, "GET", "/status")[0] == 200


def test_invalid_utf8_transactions_do_not_grow_the_peer(peer: LivePeer) -> None:
    size = 60 * 1024
    bad_text = b"\x79" + size.to_bytes(2, "big") + b"\xc3\x28" * (size // 2)
    messages = (tx_with_field(bad_text[:-4] + n.to_bytes(4, "big")) for n in range(850))
    for _ in range(50):  # warm up the server's buffers before measuring
        post_tx(peer, next(messages))
    before = rss_bytes(peer.process.pid)
    for data in messages:
        post_tx(peer, data)
    grown = rss_bytes(peer.process.pid) - before
    print(f"800 invalid UTF-8 transactions: RSS {grown / 2**20:+.1f} MiB")
    assert grown < 20 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 800 refused transactions"
    assert json_request(peer, "GET", "/status")[0] == 200
