"""Request/response over libp2p streams: one stream per request, framed, bounded, timed.

Wire format (one exchange per stream; the protocol id is negotiated by multistream-select):

    request  = uvarint(len) || payload                       client -> server, then the client reads
    response = status(1 byte) || uvarint(len) || payload     server -> client, then the server closes

`status` is a `ResponseStatus`; for anything but OK the payload is a short UTF-8 reason
(at most `MAX_ERROR_MESSAGE_BYTES`). This is the shape of Ethereum's req/resp (result byte first,
then a length-prefixed payload), minus compression.

Limits: the server refuses requests over the size registered with the handler (INVALID_REQUEST),
answers RESOURCE_UNAVAILABLE when the requesting peer already has `max_inbound_per_peer` streams
in flight (or the node `max_inbound_total`), and bounds reading, handling and writing with
timeouts. A handler that raises or times out gets SERVER_ERROR on its own stream; nothing else is
affected. The client bounds the whole exchange with its timeout and the response size with
`max_response_bytes`; every failure becomes `protocols.network.RequestError`.

py-libp2p's own `libp2p.request_response` helper was not used: it has no status code, only a
per-protocol (not per-peer) concurrency limit, and reads the length prefix one byte per await.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol

from p2pnode.net.identity import parse_peer_id
from protocols.network import RequestError, RequestHandler, RequestTimeout

logger = logging.getLogger(__name__)

MAX_ERROR_MESSAGE_BYTES = 256
# A uvarint for any length we accept fits in 5 bytes (< 2**35); longer prefixes are malformed.
_MAX_UVARINT_BYTES = 5
_READ_CHUNK = 64 * 1024


class ResponseStatus(enum.IntEnum):
    OK = 0
    INVALID_REQUEST = 1  # oversized or malformed request: the requester's fault
    SERVER_ERROR = 2  # the handler raised or timed out: the server's fault
    RESOURCE_UNAVAILABLE = 3  # over the per-peer or total concurrency limit: retry later


@dataclass(frozen=True, slots=True)
class ReqRespLimits:
    max_inbound_per_peer: int = 8
    max_inbound_total: int = 64
    # Reading one request (slow-loris bound), running the handler, writing the response.
    request_read_timeout_s: float = 10.0
    handler_timeout_s: float = 30.0
    response_write_timeout_s: float = 30.0
    # Hard ceilings, whatever a handler or caller asks for.
    max_request_bytes: int = 4 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024


class FrameError(Exception):
    """The remote broke the framing: an over-long varint or an unknown status byte."""


# -- framing (pure) ----------------------------------------------------------------------------


def encode_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uvarint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_request(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


def encode_response(status: ResponseStatus, payload: bytes) -> bytes:
    return bytes([status]) + encode_uvarint(len(payload)) + payload


def encode_error(status: ResponseStatus, reason: str) -> bytes:
    return encode_response(status, reason.encode("utf-8")[:MAX_ERROR_MESSAGE_BYTES])


class FrameReader:
    """Buffered exact reads from a stream: one await per chunk, not one per varint byte."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            # Over-reading is harmless: a stream carries exactly one frame each way.
            chunk = await self._stream.read(max(size - len(self._buffer), _READ_CHUNK))
            if not chunk:
                raise EOFError(f"stream ended after {len(self._buffer)} of {size} bytes")
            self._buffer += chunk

    async def read_exactly(self, size: int) -> bytes:
        await self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_uvarint(self) -> int:
        value = 0
        for index in range(_MAX_UVARINT_BYTES):
            await self._fill(index + 1)
            byte = self._buffer[index]
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                del self._buffer[: index + 1]
                return value
        raise FrameError("length prefix longer than 5 bytes")

    async def read_status(self) -> ResponseStatus:
        raw = (await self.read_exactly(1))[0]
        try:
            return ResponseStatus(raw)
        except ValueError:
            raise FrameError(f"unknown response status {raw}") from None


# -- server ------------------------------------------------------------------------------------

Penaliser = Callable[[str, str], None]
BanCheck = Callable[[str], bool]


@dataclass(slots=True)
class _Registration:
    handler: RequestHandler
    max_request_bytes: int


class RequestResponseServer:
    """Serves registered protocols on a host with per-peer and total inbound limits."""

    def __init__(self, limits: ReqRespLimits, penalise: Penaliser, is_banned: BanCheck) -> None:
        self.limits = limits
        self._penalise = penalise
        self._is_banned = is_banned
        self._handlers: dict[str, _Registration] = {}
        self._inbound_per_peer: dict[str, int] = {}
        self._inbound_total = 0
        self._host: IHost | None = None
        # Inbound requests by (protocol, outcome), for metrics; bounded by the registered protocols.
        self.served: Counter[tuple[str, str]] = Counter()

    def attach(self, host: IHost) -> None:
        self._host = host
        for protocol_id in self._handlers:
            self._register_with_host(protocol_id)

    def set_handler(self, protocol_id: str, handler: RequestHandler, max_request_bytes: int) -> None:
        if not 0 < max_request_bytes <= self.limits.max_request_bytes:
            raise ValueError(f"max_request_bytes must be in 1..{self.limits.max_request_bytes}")
        self._handlers[protocol_id] = _Registration(handler, max_request_bytes)
        if self._host is not None:
            self._register_with_host(protocol_id)

    def inbound_in_flight(self, peer: str | None = None) -> int:
        return self._inbound_total if peer is None else self._inbound_per_peer.get(peer, 0)

    def _register_with_host(self, protocol_id: str) -> None:
        assert self._host is not None

        async def serve(stream: INetStream) -> None:
            await self._serve(protocol_id, stream)

        self._host.set_stream_handler(TProtocol(protocol_id), serve)

    async def _serve(self, protocol_id: str, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        registration = self._handlers.get(protocol_id)
        if registration is None or self._is_banned(peer):
            if registration is not None:
                self.served[(protocol_id, "banned_peer")] += 1
            await _reset_quietly(stream)
            return
        if (
            self._inbound_per_peer.get(peer, 0) >= self.limits.max_inbound_per_peer
            or self._inbound_total >= self.limits.max_inbound_total
        ):
            self.served[(protocol_id, "rate_limited")] += 1
            self._penalise(peer, "rate_limited")
            await self._reply(stream, encode_error(ResponseStatus.RESOURCE_UNAVAILABLE, "too many requests"))
            return
        self._inbound_per_peer[peer] = self._inbound_per_peer.get(peer, 0) + 1
        self._inbound_total += 1
        try:
            await self._serve_admitted(peer, protocol_id, registration, stream)
        finally:
            self._inbound_total -= 1
            remaining = self._inbound_per_peer[peer] - 1
            if remaining:
                self._inbound_per_peer[peer] = remaining
            else:
                del self._inbound_per_peer[peer]

    async def _serve_admitted(
        self, peer: str, protocol_id: str, registration: _Registration, stream: INetStream
    ) -> None:
        reader = FrameReader(stream)
        try:
            with trio.fail_after(self.limits.request_read_timeout_s):
                length = await reader.read_uvarint()
                if length > registration.max_request_bytes:
                    self._penalise(peer, "bad_request")
                    await self._reply(stream, encode_error(ResponseStatus.INVALID_REQUEST, "request too large"))
                    return
                request = await reader.read_exactly(length)
        except FrameError:
            self._penalise(peer, "protocol_violation")
            await _reset_quietly(stream)
            return
        except Exception as exc:  # TooSlowError, EOFError, StreamReset...
            # The requester went away or stalled: not worth a penalty (its own timeout may have
            # fired), but the stream is dead. Reset it and keep the connection serving.
            logger.debug("%s: could not read request from %s: %r", protocol_id, peer, exc)
            await _reset_quietly(stream)
            return
        response = await self._run_handler(peer, protocol_id, registration, request)
        self.served[(protocol_id, "ok" if response[0] == ResponseStatus.OK else "error")] += 1
        await self._reply(stream, response)

    async def _run_handler(self, peer: str, protocol_id: str, registration: _Registration, request: bytes) -> bytes:
        try:
            with trio.fail_after(self.limits.handler_timeout_s):
                payload = await registration.handler(peer, request)
        except trio.TooSlowError:
            logger.warning("%s: handler timed out serving %s", protocol_id, peer)
            return encode_error(ResponseStatus.SERVER_ERROR, "handler timed out")
        except Exception as exc:
            logger.warning("%s: handler failed serving %s: %r", protocol_id, peer, exc)
            logger.debug("handler failure detail", exc_info=True)
            return encode_error(ResponseStatus.SERVER_ERROR, "handler failed")
        if not isinstance(payload, bytes | bytearray | memoryview):
            logger.warning("%s: handler returned %s, not bytes", protocol_id, type(payload).__name__)
            return encode_error(ResponseStatus.SERVER_ERROR, "handler failed")
        if len(payload) > self.limits.max_response_bytes:
            logger.warning("%s: handler response of %d bytes is over the limit", protocol_id, len(payload))
            return encode_error(ResponseStatus.SERVER_ERROR, "response too large")
        return encode_response(ResponseStatus.OK, bytes(payload))

    async def _reply(self, stream: INetStream, frame: bytes) -> None:
        try:
            with trio.fail_after(self.limits.response_write_timeout_s):
                await stream.write(frame)
                await stream.close()
        except Exception as exc:
            logger.debug("could not deliver response: %r", exc)
            await _reset_quietly(stream)


async def _reset_quietly(stream: INetStream | None) -> None:
    if stream is None:
        return
    # Shielded and bounded: cleanup must finish even while the caller is being cancelled.
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        try:
            await stream.reset()
        except Exception:
            logger.debug("stream reset failed", exc_info=True)


# -- client ------------------------------------------------------------------------------------


async def send_request(
    host: IHost,
    peer_id: str,
    protocol_id: str,
    data: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 (NetworkAPI.request passes its timeout through)
    max_response_bytes: int,
    limits: ReqRespLimits,
    penalise: Penaliser,
) -> bytes:
    """One request/response exchange; raises `RequestError` on any failure.

    Penalties: a timeout counts as a soft `timeout`, broken framing as `protocol_violation`.
    An error status, a reset or a closed stream is not penalised: the application judges content
    and calls `penalise` itself.
    """
    if len(data) > limits.max_request_bytes:
        raise RequestError(f"request of {len(data)} bytes is over the {limits.max_request_bytes} byte limit")
    if not 0 < max_response_bytes <= limits.max_response_bytes:
        raise RequestError(f"max_response_bytes must be in 1..{limits.max_response_bytes}")
    try:
        peer = parse_peer_id(peer_id)
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    if peer == host.get_id():
        raise RequestError("cannot send a request to ourselves")

    stream: INetStream | None = None
    completed = False
    try:
        with trio.fail_after(timeout):
            stream = await host.new_stream(peer, [TProtocol(protocol_id)])
            await stream.write(encode_request(data))
            reader = FrameReader(stream)
            status = await reader.read_status()
            length = await reader.read_uvarint()
            limit = max_response_bytes if status is ResponseStatus.OK else MAX_ERROR_MESSAGE_BYTES
            if length > limit:
                raise RequestError(f"response of {length} bytes is over the {limit} byte limit")
            payload = await reader.read_exactly(length)
        completed = True
    except trio.TooSlowError as exc:
        penalise(peer_id, "timeout")
        raise RequestTimeout(f"{protocol_id} to {peer_id} timed out after {timeout} s") from exc
    except FrameError as exc:
        penalise(peer_id, "protocol_violation")
        raise RequestError(f"{protocol_id} to {peer_id}: malformed response: {exc}") from exc
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError(f"{protocol_id} to {peer_id} failed: {exc!r}") from exc
    finally:
        if not completed:
            await _reset_quietly(stream)
    # The exchange is complete; a close that fails changes nothing for the caller.
    with trio.move_on_after(1):
        try:
            await stream.close()
        except Exception:
            logger.debug("closing a finished request stream failed", exc_info=True)
    if status is not ResponseStatus.OK:
        reason = payload.decode("utf-8", errors="replace")
        raise RequestError(f"{protocol_id} to {peer_id}: {status.name}: {reason}")
    return payload
