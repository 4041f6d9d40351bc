"""GET /events and `p2pnode watch` against a real peer: heads, finality, included and refused transactions."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from p2pnode.chain.types import Propose, SignedTx, Transfer, make_tx
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.live_peer import LivePeer, json_request, module_peer_fixture
from protocols import codec

pytestmark = pytest.mark.timeout(300)

USER = dev_keypair("user-1")
NOBODY = dev_keypair("an-unfunded-key")


peer = module_peer_fixture("events")


@contextmanager
def watching(peer: LivePeer, *args: str) -> Iterator[queue.Queue[str]]:
    """`p2pnode watch` against the peer, its output lines as they come; killed when the block ends."""
    process = subprocess.Popen([sys.executable, "-m", "p2pnode", "watch", "--api", peer.api, *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        yield lines_of(process)
    finally:
        process.kill()
        process.wait()


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def next_event(lines: queue.Queue[str], kind: str, deadline: float, match: Any = None) -> dict[str, Any]:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind} event in time")
        try:
            event = json.loads(lines.get(timeout=remaining))
        except queue.Empty:
            continue
        if event["event"] == kind and (match is None or match(event["data"])):
            return event["data"]  # type: ignore[no-any-return]


def transfer(peer: LivePeer, key, nonce_offset: int = 0) -> bytes:  # type: ignore[no-untyped-def]
    status = json_request(peer, "GET", "/status")[1]
    account = json_request(peer, "GET", f"/accounts/{key.address}")[1]
    tx = make_tx(status["chain_id"], key.public_key, account["nonce"] + account["pending_txs"] + nonce_offset,
                 status["min_fee"], Transfer(to=USER.public_key, amount=1))
    return codec.encode(SignedTx(tx=tx, sig=key.sign(tx.signing_bytes())))


def test_watch_prints_new_heads_in_order(peer: LivePeer) -> None:
    result = subprocess.run([sys.executable, "-m", "p2pnode", "watch", "--api", peer.api, "--json", "--types", "head",
                             "--count", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    heads = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["event"] for h in heads] == ["head"] * 3
    heights = [h["data"]["height"] for h in heads]
    assert heights == sorted(heights) and len(set(heights)) == 3


def test_watch_sees_finality_and_transactions_included_and_refused(peer: LivePeer) -> None:
    with watching(peer, "--json", "--types", "head,finalized,tx_included,tx_refused") as lines:
        deadline = time.monotonic() + 120
        next_event(lines, "head", deadline)  # the stream is open: everything from here on is seen
        sender = dev_keypair("user-2")
        status, reply = json_request(peer, "POST", "/tx", transfer(peer, sender))
        assert status == 200, reply
        included = next_event(lines, "tx_included", deadline, lambda d: d["tx"] == reply["tx"])
        assert included["kind"] == "transfer" and included["sender"] == sender.address
        status, refused_reply = json_request(peer, "POST", "/tx", transfer(peer, NOBODY))
        assert status == 422, refused_reply
        refused = next_event(lines, "tx_refused", deadline)
        assert refused["source"] == "local" and refused["reason"] == refused_reply["error"]
        finalized = next_event(lines, "finalized", deadline)
        assert finalized["height"] >= 0 and len(finalized["hash"]) == 64


def test_a_new_proposal_is_an_event(peer: LivePeer) -> None:
    with watching(peer, "--json", "--types", "head,proposal") as lines:
        deadline = time.monotonic() + 120
        next_event(lines, "head", deadline)  # the stream is open: everything from here on is seen
        proposer = dev_keypair("user-3")
        status = json_request(peer, "GET", "/status")[1]
        account = json_request(peer, "GET", f"/accounts/{proposer.address}")[1]
        body = Propose(action="signal", param="", value=0, owner=b"", task="", version=0, activation_height=0,
                       text="events test")
        tx = make_tx(status["chain_id"], proposer.public_key, account["nonce"] + account["pending_txs"],
                     status["min_fee"], body)
        got, reply = json_request(peer, "POST", "/tx", codec.encode(SignedTx(tx=tx, sig=proposer.sign(tx.signing_bytes()))))
        assert got == 200, reply
        event = next_event(lines, "proposal", deadline)
        assert event["status"] == "voting" and json_request(peer, "GET", f"/proposals/{event['id']}")[0] == 200


def test_status_counts_open_streams(peer: LivePeer) -> None:
    with watching(peer, "--json", "--types", "head") as lines:
        next_event(lines, "head", time.monotonic() + 60)
        assert json_request(peer, "GET", "/status")[1]["event_streams"] >= 1


def test_watch_without_a_node_is_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "p2pnode", "watch", "--api", "http://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot reach" in result.stderr and result.stderr.count("\n") == 1
