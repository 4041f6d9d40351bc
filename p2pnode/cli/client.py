"""A client for a node's local HTTP API (used by the CLI): JSON reads and transaction submission."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_API = "http://127.0.0.1:8545"


class ApiError(Exception):
    """The node could not be reached or answered with an error; the message is one line."""


def get_json(api: str, path: str, timeout: float = 10.0) -> Any:
    return _call(api, path, None, timeout)


def post_bytes(api: str, path: str, data: bytes, timeout: float = 10.0) -> Any:
    return _call(api, path, data, timeout)


def _call(api: str, path: str, data: bytes | None, timeout: float) -> Any:
    url = api.rstrip("/") + path
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/cbor")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
            message = f"{body.get('error')}: {body.get('message')}"
        except (ValueError, AttributeError):
            message = f"HTTP {exc.code}"
        raise ApiError(message) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the node API at {api}: {reason}") from None
    except ValueError:
        raise ApiError(f"the node API at {api} answered with something that is not JSON") from None
