"""Helpers for tests that drive real peer processes through the real CLI and HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from p2pnode.cli.client import ApiError, get_json
from p2pnode.testing.live_peer import (
    wait_until as wait_until,  # re-exported: the e2e tests import it from here
)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "p2pnode", *args], capture_output=True, text=True,
                            timeout=timeout, env=dict(os.environ, **(env or {})))
    if check and result.returncode != 0:
        raise AssertionError(f"p2pnode {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def cli_json(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    return json.loads(cli(*args, "--json", env=env, timeout=timeout).stdout)


def api(url: str, path: str) -> Any:
    return get_json(url, path, timeout=5.0)


def try_api(url: str, path: str) -> Any | None:
    try:
        return api(url, path)
    except ApiError:
        return None


def nodes(run_dir: Path) -> list[dict[str, Any]]:
    return list(json.loads((run_dir / "testnet.json").read_text())["nodes"])
