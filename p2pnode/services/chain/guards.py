"""The one rule at every remote entry point of the chain services: remote input never kills a task.

Each entry point (a gossip topic's guard, a request handler, the import of a block a peer sent)
turns any exception into a named refusal plus a penalty for the peer that sent the input. Gossip
guards get this from `protocols.network.run_guard`, which every network adapter applies; request
handlers are wrapped by `guard_request`; block import catches in `ChainService._import_one`.
An unexpected exception is a bug here or an input nobody foresaw: it is logged with its traceback
once per (entry point, exception type), then only counted, so a flood cannot fill the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from protocols import codec
from protocols.network import RequestHandler

log = logging.getLogger(__name__)

PENALTY_MALFORMED_REQUEST = 20.0
PENALTY_FAILED_INPUT = 20.0

# (entry point, exception type) -> times seen; bounded by the code's entry points and types.
failures: Counter[tuple[str, str]] = Counter()
_MAX_FAILURE_KEYS = 1024


class Refused(Exception):
    """A request was refused; `reason` is a stable snake_case name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def record_failure(entry_point: str, exc: BaseException) -> None:
    """Count an unexpected exception at `entry_point`; log its traceback the first time only."""
    key = (entry_point, type(exc).__name__)
    first = key not in failures
    if first and len(failures) >= _MAX_FAILURE_KEYS:
        return
    failures[key] += 1
    if first:
        log.error("%s failed on remote input (logged once per exception type)", entry_point, exc_info=exc)


Penalise = Callable[[str, str, float], None]


def guard_request(entry_point: str, handler: RequestHandler, penalise: Penalise) -> RequestHandler:
    """`handler` under the rule: malformed requests and unexpected exceptions become `Refused`
    (the network answers an error on that stream only) and the requesting peer is penalised."""

    async def guarded(peer_id: str, request: bytes) -> bytes:
        try:
            return await handler(peer_id, request)
        except Refused:
            raise
        except codec.MalformedMessage as exc:
            penalise(peer_id, "malformed_request", PENALTY_MALFORMED_REQUEST)
            raise Refused("malformed_request", str(exc)) from None
        except Exception as exc:
            record_failure(entry_point, exc)
            penalise(peer_id, "request_failed", PENALTY_FAILED_INPUT)
            raise Refused("request_failed", type(exc).__name__) from None

    guarded.__qualname__ = f"guarded {entry_point}"
    return guarded


class RefusalCounter:
    """Counts a peer's refused inputs per time window; says when it crossed `limit` (once per window).

    For inputs that are refused without being provably invalid (a transaction the head state cannot
    afford, say), which cost a peer nothing: one is forgiven, a flood is penalised. Bounded: at most
    `max_peers` peers are tracked, the longest-untouched forgotten first.
    """

    def __init__(self, limit: int, window_ms: int, max_peers: int = 1024) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.max_peers = max_peers
        self._windows: dict[str, tuple[int, int]] = {}  # peer -> (window start, refusals in it)

    def __len__(self) -> int:
        return len(self._windows)

    def refused(self, peer_id: str, now_ms: int) -> bool:
        """Count one refusal; True exactly when the peer's count in this window reaches `limit`."""
        start, count = self._windows.pop(peer_id, (now_ms, 0))
        if now_ms - start >= self.window_ms:
            start, count = now_ms, 0
        count += 1
        self._windows[peer_id] = (start, count)  # re-inserted last: dicts keep insertion order
        if len(self._windows) > self.max_peers:
            del self._windows[next(iter(self._windows))]
        return count == self.limit
