"""The local HTTP API server: routing, bounds and errors that never take it down."""

from __future__ import annotations

import json

import trio

from p2pnode.services.api.http import MAX_BODY_BYTES, HttpApi, Request, Response


async def raw_request(port: int, data: bytes) -> tuple[int, dict]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = bytearray()
        while chunk := await stream.receive_some(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def start_api(nursery: trio.Nursery) -> int:
    api = HttpApi()

    async def status(req: Request) -> Response:
        return Response.json({"ok": True, "parts": req.parts, "query": req.query})

    async def echo(req: Request) -> Response:
        return Response.json({"length": len(req.body)})

    async def broken(req: Request) -> Response:
        raise ZeroDivisionError("boom")

    api.route("GET", "status", status)
    api.route("POST", "tx", echo)
    api.route("GET", "broken", broken)
    return await nursery.start(api.serve, 0)


async def test_routes_errors_and_bounds() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_api(nursery)
        status, body = await raw_request(port, b"GET /status/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 200 and body == {"ok": True, "parts": ["status", "x"], "query": {"y": "1"}}
        status, body = await raw_request(port, b"GET /nope HTTP/1.1\r\n\r\n")
        assert (status, body["error"]) == (404, "not_found")
        status, body = await raw_request(port, b"DELETE /status HTTP/1.1\r\n\r\n")
        assert (status, body["error"]) == (405, "method_not_allowed")
        status, body = await raw_request(port, b"POST /tx HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        assert (status, body) == (200, {"length": 5})
        big = f"POST /tx HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        status, body = await raw_request(port, big)
        assert (status, body["error"]) == (413, "body_too_large")
        status, body = await raw_request(port, b"garbage\r\n\r\n")
        assert (status, body["error"]) == (400, "bad_request_line")
        status, body = await raw_request(port, b"GET /status HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert (status, body["error"]) == (400, "bad_content_length")
        status, body = await raw_request(port, b"GET /broken HTTP/1.1\r\n\r\n")
        assert (status, body["error"]) == (500, "ZeroDivisionError")
        status, _ = await raw_request(port, b"GET /status HTTP/1.1\r\n\r\n")
        assert status == 200  # still serving after a failing handler
        nursery.cancel_scope.cancel()
