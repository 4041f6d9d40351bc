"""The dashboard in a real browser (headless Chromium driven by selenium) against a real peer.

It loads the page, finds the metagraph rows and the SVG charts with data, sees new blocks arrive
over the live event stream without reloading, checks that a miner's model name made of markup is
shown as text (and runs nothing), and saves a screenshot. It skips, saying why, only where the
browser or its driver is not installed (`apt-get install chromium chromium-driver`; `pip install
selenium`); scripts/test.sh installs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.chain.types import Serve, SignedTx, make_tx
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.browser import csp_violations, headless_chromium, keep_screenshot, shown_head, svg_points
from p2pnode.testing.live_peer import LivePeer, json_request, module_peer_fixture, raw_request, wait_until
from protocols import codec

pytestmark = pytest.mark.timeout(300)

XSS_MODEL = '<img src=x onerror="document.title=\'pwned\'">model'
MINER_HOT = dev_keypair("miner-1-hot")


peer = module_peer_fixture("dashboard")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver, why_not = headless_chromium()
    if driver is None:
        pytest.skip(why_not)
    yield driver
    driver.quit()


def serve_markup_model(peer: LivePeer) -> None:
    status = json_request(peer, "GET", "/status")[1]
    account = json_request(peer, "GET", f"/accounts/{MINER_HOT.address}")[1]
    tx = make_tx(status["chain_id"], MINER_HOT.public_key, account["nonce"] + account["pending_txs"], status["min_fee"],
                 Serve(netuid=1, peer_id="12D3KooWmarkup", model=XSS_MODEL))
    got, reply = json_request(peer, "POST", "/tx", codec.encode(SignedTx(tx=tx, sig=MINER_HOT.sign(tx.signing_bytes()))))
    assert got == 200, reply
    wait_until(lambda: any(r["model"] == XSS_MODEL for r in json_request(peer, "GET", "/metagraph/1")[1]), 60,
             "the serve transaction")


def chart_points(peer: LivePeer, path: str) -> int:
    return svg_points(raw_request(peer, "GET", path)[2])


def test_the_live_dashboard_in_a_browser(peer: LivePeer, browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    serve_markup_model(peer)
    browser.get(peer.api + "/")
    wait = WebDriverWait(browser, 90, poll_frequency=0.25)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#metagraph tr[data-uid]")) >= 2)
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")

    # The model name is shown as the literal text the miner chose; it became no element and ran nothing.
    # (Read in one script: the page re-renders the table on every epoch.)
    models = browser.execute_script(
        "return [...document.querySelectorAll('#metagraph tr[data-uid] td:last-child')].map(c => c.textContent)")
    assert XSS_MODEL in models
    assert not browser.find_elements(By.CSS_SELECTOR, "#metagraph img")
    assert browser.title == "p2pnode"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    # New blocks arrive over the event stream, without reloading the page.
    marker = browser.execute_script("window.__notReloaded = true; return 1")
    first = wait.until(shown_head)
    wait.until(lambda d: shown_head(d) >= first + 2)
    assert browser.execute_script("return window.__notReloaded === true") and marker == 1
    wait.until(lambda d: d.find_element(By.ID, "finalized-height").text not in ("", "–"))

    # Charts: images from the node that loaded, drawn from data (lines with points).
    wait.until(lambda d: d.execute_script("return document.getElementById('finality-chart').naturalWidth") > 0)
    assert chart_points(peer, "/charts/finality.svg") >= 2
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events li.event-epoch"))
    wait.until(lambda _: chart_points(peer, "/charts/incentive/1") >= 1)
    wait.until(lambda d: d.execute_script("return document.getElementById('incentive-chart').naturalWidth") > 0)
    assert browser.find_element(By.ID, "incentive-chart").get_attribute("src").startswith(peer.api + "/charts/")

    # A uid's receipt: how it was paid in the latest epoch, checked against the chain's commitment.
    browser.execute_script("document.querySelector('#metagraph tr[data-uid]').click()")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#uid-detail table.facts tr"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#uid-detail ul.checks li"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#uid-detail ul.checks li.failed")

    # The page keeps to its own policy: nothing it does was blocked.
    assert csp_violations(browser) == []

    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img.chart')].every(i => i.complete && i.naturalWidth > 0)"))
    shot = keep_screenshot(browser, tmp_path / "dashboard.png")
    assert shot.stat().st_size > 10_000
