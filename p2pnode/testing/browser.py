"""Headless Chromium for the dashboard's browser tests (Debian's chromium and chromium-driver, selenium)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# Where tests also copy their screenshots (CI keeps them; docs show them).
SCREENSHOT_DIR_ENV = "P2PNODE_SCREENSHOT_DIR"


def headless_chromium() -> tuple[Any | None, str]:
    """(a selenium Chrome driver, "") or (None, why there is none)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        return None, "headless Chromium is not installed (apt-get install chromium chromium-driver)"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,2200", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options), ""


def keep_screenshot(driver: Any, path: Path) -> Path:
    """Save a screenshot to `path` and, if $P2PNODE_SCREENSHOT_DIR is set, a copy there."""
    driver.save_screenshot(str(path))
    if os.environ.get(SCREENSHOT_DIR_ENV):
        target = Path(os.environ[SCREENSHOT_DIR_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def csp_violations(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def svg_points(svg: bytes) -> int:
    """The most points in any line of a chart the node drew."""
    lines = svg.split(b"<polyline")[1:]
    return max((len(line.split(b'points="', 1)[1].split(b'"', 1)[0].split()) for line in lines), default=0)


def shown_head(driver: Any) -> int:
    """The head height the dashboard shows (0 until it has one)."""
    return int(driver.execute_script("return Number(document.getElementById('head-height').textContent) || 0"))
