"""The node's local HTTP API server: starlette routes served by hypercorn's trio worker (127.0.0.1 only).

Handlers are plain `async (Request) -> Response` functions registered by method and first path
segment (`route("GET", "blocks", handler)` serves GET /blocks and /blocks/...); this module turns
them into starlette routes and keeps the limits that make the API safe to leave running: guards
(loopback `Host`, same-origin writes) before any routing, a bounded body, a deadline per request
(reading its body included), idle connections closed, and a JSON error with a name for every
failure. A handler that raises answers 500 and the server carries on. `GET /openapi.json`
describes every route.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, unquote

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("p2pnode.api")

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1 << 20
REQUEST_DEADLINE_S = 10.0
# A connection with no complete request head within this time (idle, or trickling headers) is
# closed. hypercorn's own read timeout is left off: it counts silence from the client even while an
# answer streams, and would cut every event stream. A trickled body meets the request deadline.
KEEP_ALIVE_TIMEOUT_S = 5.0
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@dataclass
class Request:
    method: str
    path: str
    parts: list[str]
    query: dict[str, str]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value, indent=None, sort_keys=False).encode() + b"\n")

    @classmethod
    def error(cls, status: int, name: str, message: str) -> Response:
        return cls.json({"error": name, "message": message}, status)


Handler = Callable[[Request], Awaitable[Response]]
# A streaming handler returns the chunks of an open-ended answer (server-sent events).
StreamHandler = Callable[[Request], Awaitable[AsyncIterator[bytes]]]
# A guard sees (method, lower-cased headers) before routing and raises HttpError to refuse.
Guard = Callable[[str, dict[str, str]], None]


class HttpError(Exception):
    """Raised by handlers and guards for an expected error response."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


@dataclass(frozen=True)
class RouteDoc:
    method: str
    path: str
    summary: str
    content_type: str


def _starlette_response(response: Response) -> StarletteResponse:
    headers = {**SECURITY_HEADERS, **response.headers}
    return StarletteResponse(response.body, response.status, headers=headers, media_type=response.content_type)


def _error(status: int, name: str, message: str) -> StarletteResponse:
    return _starlette_response(Response.error(status, name, message))


def _headers_of(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


class _GuardMiddleware:
    """Runs the guards on every HTTP request before routing (so refused requests learn nothing)."""

    def __init__(self, app: ASGIApp, guards: list[Guard]) -> None:
        self.app, self.guards = app, guards

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                for guard in self.guards:
                    guard(scope["method"], _headers_of(scope))
            except HttpError as exc:
                await _error(exc.status, exc.name, exc.message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CLIENT_GONE = (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError)


class _ClientGone:
    """Ends a request quietly when its client has gone while the answer was being sent.

    hypercorn's trio worker closes a connection the client has closed without taking its send lock,
    so an answer still being written meets `BusyResourceError`; nothing is wrong with the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except _CLIENT_GONE:
            log.debug("client went away during %s", scope.get("path"))
        except BaseExceptionGroup as group:
            _, rest = group.split(_CLIENT_GONE)
            if rest is not None:
                raise rest from None


async def _read_body(request: StarletteRequest) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isascii() or not declared.isdigit()):
        raise HttpError(400, "bad_content_length", "content-length is not a number")
    if declared is not None and int(declared) > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, "body_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    return bytes(body)


async def _plain_request(request: StarletteRequest) -> Request:
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.decode("latin-1")
    parts = [unquote(p, errors="replace") for p in path.split("/") if p]
    query = {k: v[-1] for k, v in parse_qs(request.scope.get("query_string", b"").decode("latin-1")).items()}
    body = await _read_body(request) if request.method not in ("GET", "HEAD") else b""
    return Request(request.method, path, parts, query, body, dict(request.headers.items()))


class HttpApi:
    """Routes requests to handlers: `route("GET", "status", handler)` serves GET /status[/...]."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        self._streams: dict[tuple[str, str], StreamHandler] = {}
        self._deadlines: dict[Handler, float] = {}
        self._stream_types: dict[StreamHandler, str] = {}
        self._docs: list[RouteDoc] = []
        self.guards: list[Guard] = []
        self.port: int | None = None
        self.deadline_s = REQUEST_DEADLINE_S
        self.keep_alive_timeout_s = KEEP_ALIVE_TIMEOUT_S
        self.title = "p2pnode local API"

    def route(self, method: str, first_segment: str, handler: Handler, *, path: str | None = None,
              summary: str = "", content_type: str = "application/json", deadline_s: float | None = None) -> None:
        """Serve `method /first_segment[/...]` with `handler`; `path` and `summary` document it.

        `deadline_s` replaces the API's deadline for a handler that waits on others (miners).
        """
        self._routes[(method, first_segment)] = handler
        if deadline_s is not None:
            self._deadlines[handler] = deadline_s
        self._docs.append(RouteDoc(method, path or f"/{first_segment}", summary, content_type))

    def stream(self, method: str, first_segment: str, handler: StreamHandler, *, summary: str = "",
               content_type: str = "text/event-stream") -> None:
        """Serve an open-ended answer: the handler returns an async iterator of chunks."""
        self._streams[(method, first_segment)] = handler
        self._stream_types[handler] = content_type
        self._docs.append(RouteDoc(method, f"/{first_segment}", summary, content_type))

    # ---------------------------------------------------------------- describing

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for doc in sorted(self._docs, key=lambda d: (d.path, d.method)):
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"{(\w+)}", doc.path)]
            error = {"description": "a named error",
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            paths.setdefault(doc.path, {})[doc.method.lower()] = {
                "summary": doc.summary, "parameters": params,
                "responses": {"200": {"description": "OK", "content": {doc.content_type: {}}},
                              "4XX": error, "5XX": error},
            }
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": "1"},
            "servers": [{"url": f"http://127.0.0.1:{self.port}"}] if self.port else [],
            "paths": paths,
            "components": {"schemas": {"Error": {
                "type": "object", "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}}},
        }

    # ---------------------------------------------------------------- serving

    async def _run(self, handler: Handler, request: Request) -> Response:
        deadline_s = self._deadlines.get(handler, self.deadline_s)
        try:
            with trio.fail_after(deadline_s):
                return await handler(request)
        except HttpError as exc:
            return Response.error(exc.status, exc.name, exc.message)
        except trio.TooSlowError:
            return Response.error(503, "deadline_exceeded", f"no answer within {deadline_s:g} s")
        except Exception as exc:  # a failing handler answers 500; the server carries on
            log.exception("API handler failed: %s %s", request.method, request.path)
            return Response.error(500, type(exc).__name__, str(exc)[:200])

    async def _read(self, request: StarletteRequest) -> Request:
        """The request as handlers see it, read within the deadline (a 408 `HttpError` if not)."""
        try:
            with trio.fail_after(self.deadline_s):
                return await _plain_request(request)
        except trio.TooSlowError:
            raise HttpError(408, "request_timeout", f"the request was not sent within {self.deadline_s:g} s") from None

    def _endpoint(self, handler: Handler) -> Callable[[StarletteRequest], Awaitable[StarletteResponse]]:
        async def endpoint(request: StarletteRequest) -> StarletteResponse:
            try:
                plain = await self._read(request)
            except HttpError as exc:
                return _error(exc.status, exc.name, exc.message)
            return _starlette_response(await self._run(handler, plain))
        return endpoint

    def _stream_endpoint(self, handler: StreamHandler, content_type: str
                         ) -> Callable[[StarletteRequest], Awaitable[StarletteResponse]]:
        async def endpoint(request: StarletteRequest) -> StarletteResponse:
            try:
                chunks = await handler(await self._read(request))
            except HttpError as exc:
                return _error(exc.status, exc.name, exc.message)
            except Exception as exc:  # as for plain handlers: a named 500, and the server carries on
                log.exception("API stream handler failed: %s %s", request.method, request.url.path)
                return _error(500, type(exc).__name__, str(exc)[:200])
            return StreamingResponse(chunks, media_type=content_type, headers=SECURITY_HEADERS)
        return endpoint

    def app(self) -> ASGIApp:
        """The ASGI application: one starlette route per registered (method, first segment)."""
        routes: list[BaseRoute] = []

        async def openapi(request: StarletteRequest) -> StarletteResponse:
            return _starlette_response(Response.json(self.openapi()))

        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        grouped: dict[str, dict[str, Callable[[StarletteRequest], Awaitable[StarletteResponse]]]] = {}
        for (method, segment), handler in self._routes.items():
            grouped.setdefault(segment, {})[method] = self._endpoint(handler)
        for (method, segment), stream in self._streams.items():
            grouped.setdefault(segment, {})[method] = self._stream_endpoint(stream, self._stream_types[stream])
        for segment, by_method in grouped.items():
            endpoint = _by_method(by_method)
            base = f"/{segment}" if segment else "/"
            routes.append(Route(base, endpoint, methods=list(by_method)))
            if segment:
                routes.append(Route(base + "/{rest:path}", endpoint, methods=list(by_method)))

        async def http_error(request: StarletteRequest, exc: Exception) -> StarletteResponse:
            assert isinstance(exc, HTTPException)
            if exc.status_code == 405:
                return _error(405, "method_not_allowed", f"{request.method} {request.url.path}")
            if exc.status_code == 404:
                return _error(404, "not_found", request.url.path)
            return _error(exc.status_code, "http_error", str(exc.detail)[:200])

        app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
        app.add_middleware(_GuardMiddleware, guards=self.guards)
        return _ClientGone(app)

    async def serve(self, port: int, *, host: str = "127.0.0.1",
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.read_timeout = None
        config.keep_alive_timeout = self.keep_alive_timeout_s
        config.h11_max_incomplete_size = MAX_HEADER_BYTES
        config.include_server_header = False
        config.accesslog = None
        config.errorlog = log
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            bound: list[str] = await nursery.start(partial(hypercorn_serve, self.app(), config))  # type: ignore[arg-type]
            self.port = int(bound[0].rsplit(":", 1)[1])
            task_status.started(self.port)


def _by_method(endpoints: dict[str, Callable[[StarletteRequest], Awaitable[StarletteResponse]]]
               ) -> Callable[[StarletteRequest], Awaitable[StarletteResponse]]:
    async def endpoint(request: StarletteRequest) -> StarletteResponse:
        # starlette lets HEAD through wherever GET is allowed; it is answered as GET (without a body).
        method = "GET" if request.method == "HEAD" and "HEAD" not in endpoints else request.method
        if method not in endpoints:
            return _error(405, "method_not_allowed", f"{request.method} {request.url.path}")
        return await endpoints[method](request)
    return endpoint
