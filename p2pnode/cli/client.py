"""The one client for a node's local HTTP API, used by every CLI command.

Every failure (unreachable node, an error status, an answer that is not JSON or too large) becomes
one `ApiError` whose message is a single line: what was asked, and the node's named error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from p2pnode.chain.encoding import encode as canonical_encode

DEFAULT_API = "http://127.0.0.1:8545"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


class ApiError(Exception):
    """The node could not be reached or answered with an error; the message is one line."""


def get_json(api: str, path: str, timeout: float = 10.0) -> Any:
    return request(api, "GET", path, timeout=timeout)


def post_bytes(api: str, path: str, data: bytes, timeout: float = 10.0) -> Any:
    return request(api, "POST", path, data, "application/cbor", timeout=timeout)


def post_txs(api: str, encoded_txs: list[bytes], timeout: float = 30.0) -> Any:
    """POST /txs: a batch of encoded SignedTxs in one request; the node's per-transaction results."""
    return post_bytes(api, "/txs", canonical_encode(list(encoded_txs)), timeout=timeout)


def post_json(api: str, path: str, body: Any, timeout: float = 30.0) -> Any:
    return request(api, "POST", path, json.dumps(body).encode(), "application/json", timeout=timeout)


def request(api: str, method: str, path: str, data: bytes | None = None, content_type: str | None = None,
            *, timeout: float = 10.0) -> Any:
    """One exchange with the node's API; the decoded JSON answer, or `ApiError`."""
    base = api.rstrip("/")
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if content_type is not None:
        req.add_header("Content-Type", content_type)
    with _named_errors(method, path, base), urllib.request.urlopen(req, timeout=timeout) as reply:
        raw = reply.read(MAX_RESPONSE_BYTES + 1)
    if len(raw) > MAX_RESPONSE_BYTES:
        raise ApiError(f"{method} {path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(f"the node's API at {base} answered {method} {path} with something that is not JSON") from None


@contextmanager
def _named_errors(method: str, path: str, base: str) -> Iterator[None]:
    """A failed exchange with the node's API as an `ApiError`: the node's named error, or why it
    could not be reached."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{method} {path} failed ({exc.code}): {_error_detail(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the node's API at {base}: {reason} (is `p2pnode join` running?)") from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The node's named error (`{"error": NAME, "message": TEXT}`) as one line."""
    try:
        body = json.loads(exc.read(MAX_ERROR_BYTES))
    except (ValueError, OSError):
        return str(exc.reason)
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return str(exc.reason)
    parts = [body["error"]] + ([body["message"]] if isinstance(body.get("message"), str) and body["message"] else [])
    return " ".join(": ".join(parts).split())[:500]


MAX_EVENT_LINE_BYTES = 64 * 1024


def stream_events(api: str, kinds: list[str] | None = None, *, idle_timeout: float = 60.0
                  ) -> Iterator[tuple[str, Any]]:
    """(event type, data) from the node's GET /events until the node closes the stream.

    The node sends a comment at least every 15 s, so `idle_timeout` without a line means it is gone.
    """
    path = "/events" + ("?types=" + ",".join(kinds) if kinds else "")
    return stream(api, "GET", path, idle_timeout=idle_timeout)


def stream(api: str, method: str, path: str, body: Any | None = None, *, idle_timeout: float = 60.0
           ) -> Iterator[tuple[str, Any]]:
    """(event type, data) of a server-sent event stream (GET /events, POST /generate) until it ends."""
    base = api.rstrip("/")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "text/event-stream"} | ({"Content-Type": "application/json"} if data else {})
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with _named_errors(method, path, base):
        # The timeout bounds the connection and every read after it.
        reply = urllib.request.urlopen(req, timeout=idle_timeout)
    return _events(reply, method, path, base)


def _events(reply: Any, method: str, path: str, base: str) -> Iterator[tuple[str, Any]]:
    with reply:
        kind, data = "message", list[str]()
        try:
            while True:
                raw = reply.readline(MAX_EVENT_LINE_BYTES + 1)
                if not raw:
                    return
                if len(raw) > MAX_EVENT_LINE_BYTES:
                    raise ApiError(f"{method} {path}: an event line longer than {MAX_EVENT_LINE_BYTES} bytes")
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line == "":
                    if data:
                        yield kind, _event_data("\n".join(data))
                    kind, data = "message", []
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except (OSError, TimeoutError) as exc:
            raise ApiError(f"the event stream from {base} broke off: {exc}") from None


def _event_data(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
