"""A one-line progress bar on a terminal while the node syncs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import trio

BAR_WIDTH = 30


def progress_line(status: dict[str, Any]) -> str:
    target = max(status["current_slot"], 1)
    done = status["head_slot"]
    filled = max(0, min(BAR_WIDTH, BAR_WIDTH * done // target))
    return (f"\rsyncing [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] slot {done}/{target} "
            f"height {status['head_height']}   ")


async def show_sync_progress(status: Callable[[], dict[str, Any]], out: TextIO = sys.stderr,
                             interval_s: float = 1.0) -> None:
    shown = False
    while True:
        current = status()
        if current["syncing"]:
            out.write(progress_line(current))
            out.flush()
            shown = True
        elif shown:
            out.write(f"\rsynced at height {current['head_height']}{' ' * 40}\n")
            out.flush()
            shown = False
        await trio.sleep(interval_s)
