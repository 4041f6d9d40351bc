"""The local HTTP API server: routing, bounds, guards and errors that never take it down."""

from __future__ import annotations

import json

import trio

from p2pnode.services.api.guard import check_request
from p2pnode.services.api.http import MAX_BODY_BYTES, HttpApi, Request, Response


async def raw_request(port: int, data: bytes) -> tuple[int, bytes]:
    """Send `data` as is; the status and body of the (single) answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = bytearray()
        with trio.fail_after(60):
            while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < _length(received):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def _length(received: bytearray) -> int:
    for line in bytes(received).partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


async def json_request(port: int, data: bytes) -> tuple[int, dict]:
    status, body = await raw_request(port, data)
    return status, json.loads(body)


async def start_api(nursery: trio.Nursery) -> int:
    api = HttpApi()

    async def status(req: Request) -> Response:
        return Response.json({"ok": True, "parts": req.parts, "query": req.query})

    async def echo(req: Request) -> Response:
        return Response.json({"length": len(req.body)})

    async def broken(req: Request) -> Response:
        raise ZeroDivisionError("boom")

    async def slow(req: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError

    api.route("GET", "status", status, path="/status/{rest}", summary="echo the path")
    api.route("POST", "tx", echo)
    api.route("GET", "broken", broken)

    async def patient(req: Request) -> Response:
        await trio.sleep(1.0)
        return Response.json({"waited": True})

    api.route("GET", "slow", slow)
    api.route("GET", "patient", patient, deadline_s=5.0)
    api.guards.append(check_request)
    api.deadline_s = 2.0  # short for the stuck handler, long enough to read a 1 MiB body on a busy machine
    return await nursery.start(api.serve, 0)


def get(path: str, host: str = "127.0.0.1") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def test_routes_errors_and_bounds() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_api(nursery)
        status, body = await json_request(port, get("/status/x?y=1"))
        assert status == 200 and body == {"ok": True, "parts": ["status", "x"], "query": {"y": "1"}}
        status, body = await json_request(port, get("/nope"))
        assert (status, body["error"]) == (404, "not_found")
        status, body = await json_request(port, b"DELETE /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (status, body["error"]) == (405, "method_not_allowed")
        status, _ = await raw_request(port, b"HEAD /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status == 200
        status, body = await json_request(port, b"POST /tx HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
        assert (status, body) == (200, {"length": 5})
        big = f"POST /tx HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        status, body = await json_request(port, big)
        assert (status, body["error"]) == (413, "body_too_large")
        # A chunked body declares no length: it is cut off as it grows.
        chunk = b"%x\r\n" % (1 << 16) + b"x" * (1 << 16) + b"\r\n"
        chunked = b"POST /tx HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 17 + b"0\r\n\r\n"
        status, body = await json_request(port, chunked)
        assert (status, body["error"]) == (413, "body_too_large")
        status, _ = await raw_request(port, b"garbage\r\n\r\n")
        assert status == 400
        status, _ = await raw_request(port, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n")
        assert status == 400
        status, body = await json_request(port, get("/broken"))
        assert (status, body["error"]) == (500, "ZeroDivisionError")
        status, body = await json_request(port, get("/slow"))
        assert (status, body["error"]) == (503, "deadline_exceeded")
        status, body = await json_request(port, get("/patient"))  # its own, longer deadline
        assert (status, body) == (200, {"waited": True})
        status, _ = await raw_request(port, get("/status"))
        assert status == 200  # still serving after a failing and a stuck handler
        nursery.cancel_scope.cancel()


async def test_guards_run_before_routing() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_api(nursery)
        for path in ("/status", "/nope"):
            status, body = await json_request(port, get(path, host="rebound.example"))
            assert (status, body["error"]) == (403, "forbidden_host")
        request = b"POST /tx HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Length: 1\r\n\r\nx"
        status, body = await json_request(port, request)
        assert (status, body["error"]) == (403, "cross_origin")
        nursery.cancel_scope.cancel()


async def test_openapi_describes_every_route() -> None:
    async with trio.open_nursery() as nursery:
        port = await start_api(nursery)
        status, doc = await json_request(port, get("/openapi.json"))
        assert status == 200 and doc["openapi"].startswith("3.")
        assert set(doc["paths"]) == {"/status/{rest}", "/tx", "/broken", "/slow", "/patient"}
        assert doc["paths"]["/status/{rest}"]["get"]["summary"] == "echo the path"
        assert doc["paths"]["/status/{rest}"]["get"]["parameters"][0]["name"] == "rest"
        assert "post" in doc["paths"]["/tx"]
        nursery.cancel_scope.cancel()


async def test_slow_clients_are_cut_off_but_streams_are_not() -> None:
    api = HttpApi()
    api.deadline_s = 0.5
    api.keep_alive_timeout_s = 0.5
    release = trio.Event()

    async def echo(req: Request) -> Response:
        return Response.json({"length": len(req.body)})

    async def stream(req: Request):  # type: ignore[no-untyped-def]
        async def chunks():  # type: ignore[no-untyped-def]
            yield b"first\n"
            await release.wait()  # silence from both sides for longer than any timeout above
            yield b"second\n"
        return chunks()

    api.route("POST", "tx", echo)
    api.stream("GET", "events", stream)
    api.stream("POST", "generate", stream)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(api.serve, 0)
        # Headers trickled (never completed): the connection is closed.
        trickle = await trio.open_tcp_stream("127.0.0.1", port)
        await trickle.send_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with trio.fail_after(30):
            while await trickle.receive_some(65536):
                pass
        # A body that never arrives: a named 408 once the deadline passes.
        status, body = await json_request(port, b"POST /tx HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        assert (status, body["error"]) == (408, "request_timeout")
        status, body = await json_request(port, b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        assert (status, body["error"]) == (408, "request_timeout")  # a streamed answer waits for no slow body
        # An event stream outlives both limits while the client only listens.
        reader = await trio.open_tcp_stream("127.0.0.1", port)
        await reader.send_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = bytearray()
        while b"first" not in received:
            received += await reader.receive_some(65536)
        await trio.sleep(1.5)  # the point of the test: time passing with nothing said
        release.set()
        with trio.fail_after(30):
            while b"second" not in received:
                chunk = await reader.receive_some(65536)
                assert chunk, "the server closed a live stream"
                received += chunk
        nursery.cancel_scope.cancel()
