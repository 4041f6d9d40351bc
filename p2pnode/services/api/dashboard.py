"""The dashboard: static files shipped with the package, served with a strict Content-Security-Policy.

The policy allows only this origin's own scripts, styles and API (no inline script, no frames), so
even a string that slipped into the page as markup could not run.
"""

from __future__ import annotations

from importlib import resources

from p2pnode.services.api.http import HttpApi, HttpError, Request, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_cache: dict[str, bytes] = {}


def static_file(name: str) -> Response:
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise HttpError(404, "not_found", f"/static/{name}")
    if name not in _cache:
        _cache[name] = resources.files("p2pnode.services.api").joinpath("static", name).read_bytes()
    return Response(200, _cache[name], content_type, {"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def install(api: HttpApi) -> None:
    async def index(req: Request) -> Response:
        if len(req.parts) > 0:
            raise HttpError(404, "not_found", req.path)
        return static_file("index.html")

    async def static(req: Request) -> Response:
        return static_file(req.parts[1] if len(req.parts) == 2 else "")

    api.route("GET", "", index, summary="the dashboard", content_type="text/html")
    api.route("GET", "static", static, path="/static/{name}", summary="the dashboard's scripts and styles",
              content_type="text/javascript")
