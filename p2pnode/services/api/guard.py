"""Who may talk to the local API: loopback names only, and no state change from another origin.

The API listens on 127.0.0.1, but a web page in the operator's browser can still reach it: through
DNS rebinding (an attacker's name that resolves to 127.0.0.1, so the browser sends that name as
`Host`) or by posting a form or a `fetch` to it (a "simple" cross-origin request is sent before any
CORS check). So every request must name a loopback host, a state-changing request that says where
it comes from must come from the API's own origin, and a browser's read from another site is
refused unless it is a plain navigation.
"""

from __future__ import annotations

import re

from p2pnode.services.api.http import HttpError

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST = re.compile(r"(\[::1\]|[A-Za-z0-9.\-]{1,253})(?::([0-9]{1,5}))?")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values a browser sends for the page's own origin or a typed-in address.
SAME_SITE_FETCH = frozenset({"same-origin", "none"})


def check_host(host: str | None) -> str:
    """The `Host` header if it names a loopback address (with an optional port), else a named 403.

    A request without `Host` (HTTP/1.0 tools) cannot come from a browser and is let through.
    """
    if host is None:
        return ""
    match = _HOST.fullmatch(host.strip())
    if match is None or match.group(1).lower() not in LOOPBACK_NAMES:
        raise HttpError(403, "forbidden_host", "the API answers only to 127.0.0.1, localhost and [::1]")
    return host.strip().lower()


def check_origin(method: str, host: str, origin: str | None, fetch_site: str | None,
                 fetch_mode: str | None = None) -> None:
    """Refuse what a page of another site sends (named 403).

    State-changing requests must come from the API's own origin. Reads from another site are
    refused too, except a top-level navigation (a link to the dashboard): a foreign page has no use
    for them, and each open event stream holds one of a bounded number of slots.
    """
    site = None if fetch_site is None else fetch_site.strip().lower()
    if method in SAFE_METHODS:
        navigating = fetch_mode is not None and fetch_mode.strip().lower() == "navigate"
        if site is not None and site not in SAME_SITE_FETCH and not navigating:
            raise HttpError(403, "cross_origin", f"{method} from another site ({fetch_site}) refused")
        return
    if site is not None and site not in SAME_SITE_FETCH:
        raise HttpError(403, "cross_origin", f"{method} from another site ({fetch_site}) refused")
    if origin is not None and origin.strip().lower() != f"http://{host}":
        raise HttpError(403, "cross_origin", f"{method} from origin {origin[:100]} refused")


def check_request(method: str, headers: dict[str, str]) -> None:
    """Both checks on a request's (lower-cased) headers."""
    host = check_host(headers.get("host"))
    check_origin(method, host, headers.get("origin"), headers.get("sec-fetch-site"), headers.get("sec-fetch-mode"))
