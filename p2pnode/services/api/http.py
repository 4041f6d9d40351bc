"""A small HTTP/1.1 server on trio for the node's local API (127.0.0.1 only).

Deliberately minimal: one request per connection (`Connection: close`), bounded header and body
sizes, a deadline per connection, JSON errors with a name. Routes map (method, first path segment)
to handlers; a handler that raises gets a 500 with the error's name and never takes the server down.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

log = logging.getLogger("p2pnode.api")

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1 << 20
CONNECTION_DEADLINE_S = 10.0


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

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           422: "Unprocessable Entity", 500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    """Raised by handlers for an expected error response."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


async def _read_request(stream: trio.SocketStream) -> Request:
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise HttpError(400, "incomplete_request", "connection closed before the headers ended")
        buffer += chunk
        if len(buffer) > MAX_HEADER_BYTES and b"\r\n\r\n" not in buffer[:MAX_HEADER_BYTES]:
            raise HttpError(413, "headers_too_large", f"headers exceed {MAX_HEADER_BYTES} bytes")
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "bad_request_line", "malformed request line") from None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "bad_header", "malformed header line")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad_content_length", "content-length is not a number") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray(rest)
    while len(body) < length:
        chunk = await stream.receive_some(min(65536, length - len(body)))
        if not chunk:
            raise HttpError(400, "incomplete_body", "connection closed before the body ended")
        body += chunk
    url = urlsplit(target)
    parts = [unquote(p) for p in url.path.split("/") if p]
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    return Request(method.upper(), url.path, parts, query, bytes(body[:length]), headers)


async def _write_response(stream: trio.SocketStream, response: Response) -> None:
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    head = (
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}\r\n"
        f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
        f"X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head + response.body)


class HttpApi:
    """Routes requests to handlers: `route("GET", "status", handler)` serves GET /status[/...]."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        # Checks every request passes before routing (each raises HttpError to refuse it).
        self.guards: list[Callable[[Request], None]] = []
        self.port: int | None = None

    def route(self, method: str, first_segment: str, handler: Handler) -> None:
        self._routes[(method, first_segment)] = handler

    async def dispatch(self, request: Request) -> Response:
        try:
            for guard in self.guards:
                guard(request)
        except HttpError as exc:
            return Response.error(exc.status, exc.name, exc.message)
        key = (request.method, request.parts[0] if request.parts else "")
        handler = self._routes.get(key)
        if handler is None:
            if any(seg == key[1] for _, seg in self._routes):
                return Response.error(405, "method_not_allowed", f"{request.method} {request.path}")
            return Response.error(404, "not_found", request.path)
        try:
            return await handler(request)
        except HttpError as exc:
            return Response.error(exc.status, exc.name, exc.message)
        except Exception as exc:  # a failing handler answers 500; the server carries on
            log.exception("API handler failed: %s %s", request.method, request.path)
            return Response.error(500, type(exc).__name__, str(exc)[:200])

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(CONNECTION_DEADLINE_S):
                try:
                    request = await _read_request(stream)
                except HttpError as exc:
                    await _write_response(stream, Response.error(exc.status, exc.name, exc.message))
                    return
                await _write_response(stream, await self.dispatch(request))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def serve(self, port: int, *, host: str = "127.0.0.1",
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
