"""Issue 13 item 14 (API part) against a real peer on loopback: hostile paths and bodies get a named
4xx, never a 500, and the node keeps serving."""

from __future__ import annotations

import json
import re

import pytest

from p2pnode.testing.live_peer import LivePeer, json_request, module_peer_fixture, raw_request

pytestmark = pytest.mark.timeout(300)

U64 = 1 << 64


peer = module_peer_fixture("api-paths")


@pytest.mark.parametrize(("path", "status", "error"), [
    ("/blocks/%C2%B2", 400, "bad_height"),          # a superscript two: str.isdigit() says yes
    ("/blocks/%D9%A3", 400, "bad_height"),          # an Arabic-Indic three: int() says yes
    ("/blocks/-1", 400, "bad_height"),
    (f"/blocks/{U64}", 400, "bad_height"),
    (f"/blocks/{U64 - 1}", 404, "unknown_block"),   # beyond SQLite's INTEGER: no such block, no overflow
    ("/blocks/" + "f" * 64, 404, "unknown_block"),
    ("/blocks/" + "g" * 64, 400, "bad_height"),
    ("/metagraph/-1", 400, "bad_netuid"),
    ("/metagraph/65536", 400, "bad_netuid"),
    ("/metagraph/%C2%B9", 400, "bad_netuid"),
    ("/metagraph/65535", 404, "unknown_subnet"),
    ("/epochs/1e3", 400, "bad_netuid"),
    ("/explain/70000/0", 400, "bad_netuid"),
    ("/explain/1/70000", 400, "bad_uid"),
    ("/explain/1", 400, "bad_uid"),
    ("/explain/1/65535", 404, "unknown_uid"),
    (f"/proposals/{U64}", 400, "bad_proposal"),
    (f"/proposals/{U64 - 1}", 404, "unknown_proposal"),
    ("/proposals/0x10", 400, "bad_proposal"),
    ("/accounts/not-an-address", 400, "bad_address"),
    ("/accounts", 400, "missing_address"),
    ("/nowhere", 404, "not_found"),
    ("/static/../peer.py", 404, "not_found"),
])
def test_hostile_paths_get_a_named_4xx(peer: LivePeer, path: str, status: int, error: str) -> None:
    got, body = json_request(peer, "GET", path)
    assert (got, body["error"]) == (status, error), body


@pytest.mark.parametrize(("body", "error"), [
    (b"[" * 100_000 + b"]" * 100_000, "bad_query"),           # nesting deeper than the parser's recursion
    (b'{"netuid": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "bad_query"),
    (b'{"netuid": 1e999, "input": "x"}', "bad_netuid"),
    (b'{"netuid": 70000, "input": "x"}', "bad_netuid"),
    (b'{"netuid": true, "input": "x"}', "bad_netuid"),
    (b'{"netuid": "1", "input": "x"}', "bad_netuid"),
    (b'{"netuid": 1, "input": {"deep": [[[]]]}}', "bad_input"),
    (json.dumps({"netuid": 1, "input": "x" * 70_000}).encode(), "bad_input"),
    (b'{"netuid": 1, "input": "\xff"}', "bad_query"),
    (b'{"netuid": 1, "input": "x", "uid": -1}', "bad_uid"),
    (b'{"netuid": 1, "input": "x", "uid": "2"}', "bad_uid"),
    (b"not json", "bad_query"),
    (b'"just a string"', "bad_query"),
])
def test_bad_query_bodies_get_a_named_400(peer: LivePeer, body: bytes, error: str) -> None:
    got, reply = json_request(peer, "POST", "/query", body, headers={"Content-Type": "application/json"})
    assert (got, reply["error"]) == (400, error), reply


@pytest.mark.parametrize(("body", "error"), [
    (b"", "bad_batch"),
    (b"\xff", "bad_batch"),
    (b"\x81\x07", "bad_batch"),      # [7]: an item that is not a byte string
    (b"\x9f\x40\xff", "bad_batch"),  # an indefinite-length array (not canonical)
    (b"\x80", "empty_batch"),
])
def test_bad_tx_batches_get_a_named_400(peer: LivePeer, body: bytes, error: str) -> None:
    got, reply = json_request(peer, "POST", "/txs", body, headers={"Content-Type": "application/cbor"})
    assert (got, reply["error"]) == (400, error), reply


def test_a_batch_answers_per_transaction(peer: LivePeer) -> None:
    # Two items that are not transactions: each refused by name, the batch itself answered.
    got, reply = json_request(peer, "POST", "/txs", b"\x82\x41\x00\x40", headers={"Content-Type": "application/cbor"})
    assert got == 200 and reply["added"] == 0
    assert [r["reason"] for r in reply["results"]] == ["malformed", "malformed"]


def test_an_oversized_body_is_refused_before_it_is_read(peer: LivePeer) -> None:
    got, reply = json_request(peer, "POST", "/query", b"", headers={"Content-Length": str(64 << 20)})
    assert (got, reply["error"]) == (413, "body_too_large")


def test_the_node_keeps_serving(peer: LivePeer) -> None:
    got, status = json_request(peer, "GET", "/status")
    assert got == 200 and status["halted"] is None
    assert peer.process.poll() is None
    assert "Traceback" not in peer.log.read_text()


def test_openapi_describes_the_live_routes(peer: LivePeer) -> None:
    got, doc = json_request(peer, "GET", "/openapi.json")
    assert got == 200 and doc["openapi"].startswith("3.")
    assert {"/status", "/blocks/{height_or_hash}", "/metagraph/{netuid}", "/explain/{netuid}/{uid}",
            "/tx", "/txs", "/query", "/metrics", "/"} <= set(doc["paths"])
    assert "post" in doc["paths"]["/tx"] and "get" in doc["paths"]["/blocks/{height_or_hash}"]


HOSTILE_SEGMENTS = ["%C2%B2", "-1", "9" * 30, "x" * 300, "%00", "%FF%FE", "..", "0x1", "1e3", "%201", "%20", "%2F"]


def test_no_route_answers_500_to_hostile_path_segments(peer: LivePeer) -> None:
    """Every route the API describes, with each path parameter replaced by hostile text."""
    _, doc = json_request(peer, "GET", "/openapi.json")
    tried = 0
    for template, methods in doc["paths"].items():
        if "get" not in methods or "{" not in template or template.startswith("/events"):
            continue
        for segment in HOSTILE_SEGMENTS:
            path = re.sub(r"{\w+}", segment, template)
            status, _, body = raw_request(peer, "GET", path)
            assert status < 500, (path, status, body[:200])
            tried += 1
    assert tried >= 10 * len(HOSTILE_SEGMENTS)
    assert peer.process.poll() is None
