"""Issue 13 item 13 against a real peer on loopback: the dashboard cannot run a miner's script, the
API answers only loopback names and same-origin writes, and the data directory is private."""

from __future__ import annotations

import re
import stat
from importlib import resources
from pathlib import Path

import pytest

from p2pnode.chain.types import Serve, SignedTx, Transfer, make_tx
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.live_peer import LivePeer, json_request, module_peer_fixture, raw_request, wait_until
from protocols import codec

pytestmark = pytest.mark.timeout(300)

XSS_MODEL = '<img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'
MINER_HOT = dev_keypair("miner-0-hot")
USER = dev_keypair("user-0")


peer = module_peer_fixture("api-web")


def signed_tx(peer: LivePeer, key, body) -> bytes:  # type: ignore[no-untyped-def]
    _, status = json_request(peer, "GET", "/status")
    _, account = json_request(peer, "GET", f"/accounts/{key.address}")
    tx = make_tx(status["chain_id"], key.public_key, account["nonce"] + account["pending_txs"], status["min_fee"], body)
    return codec.encode(SignedTx(tx=tx, sig=key.sign(tx.signing_bytes())))


def test_a_model_name_with_markup_is_shown_as_text_under_a_strict_policy(peer: LivePeer) -> None:
    status, reply = json_request(peer, "POST", "/tx", signed_tx(peer, MINER_HOT, Serve(netuid=1, peer_id="12D3KooWx", model=XSS_MODEL)))
    assert status == 200 and reply["added"], reply

    def served() -> dict | None:
        rows = json_request(peer, "GET", "/metagraph/1")[1]
        return next((row for row in rows if row["model"] == XSS_MODEL), None)

    wait_until(served, 60, "the serve transaction to land")
    # The API hands the name out only as JSON, which a browser will not sniff into HTML.
    status, headers, _ = raw_request(peer, "GET", "/metagraph/1")
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"

    status, headers, page = raw_request(peer, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script would need 'unsafe-inline'"
    for script in re.findall(rb'<script[^>]*src="([^"]+)"', page):
        status, headers, code = raw_request(peer, "GET", script.decode())
        assert status == 200 and "content-security-policy" in headers
        # Data reaches the page only as text: no HTML parsing sinks, no code from strings.
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval(", b"Function("):
            assert sink not in code, f"{script!r} uses {sink!r}"
        assert b"textContent" in code


def test_the_packaged_dashboard_has_no_html_sinks() -> None:
    static = resources.files("p2pnode.services.api").joinpath("static")
    scripts = [f for f in static.iterdir() if f.name.endswith(".js")]
    assert scripts
    for script in scripts:
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script.read_text())


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8545", "127.0.0.1.evil.example", "localhost.evil",
                                  "[::2]:80", "127.0.0.2", "", "127.0.0.1:99999x"])
def test_a_foreign_host_is_refused(peer: LivePeer, host: str) -> None:
    status, body = json_request(peer, "GET", "/status", headers={"Host": host})
    assert (status, body["error"]) == (403, "forbidden_host")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}"])
def test_loopback_hosts_are_served(peer: LivePeer, host: str) -> None:
    status, body = json_request(peer, "GET", "/status", headers={"Host": host.format(port=peer.port)})
    assert status == 200 and body["chain_id"] == "p2pnode-local"


def test_a_cross_origin_post_changes_nothing(peer: LivePeer) -> None:
    before = json_request(peer, "GET", f"/accounts/{USER.address}")[1]
    tx = signed_tx(peer, USER, Transfer(to=MINER_HOT.public_key, amount=1))
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "http://localhost:1"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": f"http://127.0.0.1:{peer.port}"}):
        status, body = json_request(peer, "POST", "/tx", tx, headers=headers)
        assert (status, body["error"]) == (403, "cross_origin"), headers
        status, body = json_request(peer, "POST", "/query", b'{"netuid": 1, "input": "x"}', headers=headers)
        assert (status, body["error"]) == (403, "cross_origin"), headers
    assert json_request(peer, "GET", f"/accounts/{USER.address}")[1]["pending_txs"] == before["pending_txs"]
    # The same transaction from the API's own origin (the dashboard) or a tool that sends no Origin goes in.
    status, body = json_request(peer, "POST", "/tx", tx, headers={"Origin": f"http://127.0.0.1:{peer.port}",
                                                                   "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and body["added"], body


def test_another_site_cannot_read_or_hold_event_streams(peer: LivePeer) -> None:
    for path in ("/events", "/status", "/charts/finality.svg"):
        status, body = json_request(peer, "GET", path, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})
        assert (status, body["error"]) == (403, "cross_origin"), path
    # A link to the dashboard from elsewhere still opens it; the page's own requests are same-origin.
    status, _, _ = raw_request(peer, "GET", "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert status == 200
    status, _ = json_request(peer, "GET", "/status", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    assert status == 200


def test_data_directory_and_databases_are_owner_only(peer: LivePeer) -> None:
    assert stat.S_IMODE(peer.data_dir.stat().st_mode) == 0o700
    databases = [p for p in Path(peer.data_dir).iterdir() if ".sqlite" in p.name]
    names = {p.name for p in databases}
    assert {"chain.sqlite", "signing.sqlite"} <= names, names
    for path in databases:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
