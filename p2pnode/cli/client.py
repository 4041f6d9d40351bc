"""The one client for a node's local HTTP API, used by every CLI command.

Every failure (unreachable node, an error status, an answer that is not JSON or too large) becomes
one `ApiError` whose message is a single line: what was asked, and the node's named error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_API = "http://127.0.0.1:8545"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


class ApiError(Exception):
    """The node could not be reached or answered with an error; the message is one line."""


def get_json(api: str, path: str, timeout: float = 10.0) -> Any:
    return request(api, "GET", path, timeout=timeout)


def post_bytes(api: str, path: str, data: bytes, timeout: float = 10.0) -> Any:
    return request(api, "POST", path, data, "application/cbor", timeout=timeout)


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
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            raw = reply.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{method} {path} failed ({exc.code}): {_error_detail(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the node's API at {base}: {reason} (is `p2pnode join` running?)") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise ApiError(f"{method} {path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(f"the node's API at {base} answered {method} {path} with something that is not JSON") from None


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
