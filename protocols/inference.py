"""The inference protocol: a caller asks one miner to answer one task request, over request/response.

Protocol id ``/p2pnode/<chain_id>/inference/1``. One stream carries one exchange::

    caller ── SignedInferenceRequest (canonical CBOR) ──▶ miner
    caller ◀── SignedInferenceResponse (canonical CBOR) ── miner

The request is signed by the caller's hotkey over ``DOMAIN_REQUEST + chain id + canonical bytes``;
it names the chain, the target miner (PeerID), the subnet, a 16-byte random nonce and the caller's
wall-clock time, so a signed request is valid once, for one miner, on one chain, for a short time.
The response is signed by the miner's hotkey over ``DOMAIN_RESPONSE + chain id + canonical bytes``
and names the request it answers by ``request_id`` (sha256 of the signed request's bytes), so an
old answer replayed to a new request is recognisably wrong.

Every outcome is a signed response with a numeric `Code`; a miner never answers by dropping the
stream. Task requests and responses travel as canonical JSON in ``payload`` (the task's own
schema, see `models.base`), bounded by `MAX_PAYLOAD_BYTES`.

Everything here is pure: time is passed in as ``now_ms``.
"""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict
from typing import Any, ClassVar

from p2pnode.chain.encoding import sha256
from p2pnode.chain.schema import (
    B32,
    B64,
    U16,
    U32,
    U64,
    Bytes,
    ChainObject,
    FieldType,
    Struct,
    Text,
    chain_object,
)
from p2pnode.chain.types import CHAIN_ID, DOMAIN_REQUEST, signing_message
from protocols.codec import MalformedMessage, decode, decode_plain, encode
from protocols.crypto import Keypair, verify

__all__ = [
    "DEFAULT_TIMESTAMP_WINDOW_MS",
    "DOMAIN_RESPONSE",
    "MAX_MESSAGE_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "NONCE_BYTES",
    "Code",
    "InferenceRejected",
    "InferenceRequest",
    "InferenceResponse",
    "ReplayCache",
    "SignedInferenceRequest",
    "SignedInferenceResponse",
    "UntrustedResponse",
    "build_request",
    "build_response",
    "check_request",
    "decode_json_payload",
    "decode_request",
    "decode_response",
    "encode_json_payload",
    "inference_protocol_id",
    "request_id_of",
    "verify_response",
]

# A signature over a response can never be taken for one over a request, block, vote or tx.
DOMAIN_RESPONSE = b"p2pnode/response/v1\x00"

# A task request or response: the built-in tasks need a few KiB at most (1024 characters of
# context, 1024 history values); 64 KiB leaves room for plug-in tasks and bounds a miner's memory.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 256
NONCE_BYTES = 16
MAX_PEER_ID_CHARS = 128
# Whole messages: the payload plus the fixed fields, signature and CBOR framing (well under 1 KiB).
MAX_REQUEST_BYTES = MAX_PAYLOAD_BYTES + 1024
MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES + 1024 + 4 * MAX_MESSAGE_CHARS
# Caller clocks may differ from the miner's by this much either way (also bounds how long a nonce
# must be remembered: a request older than the window is refused for its timestamp).
DEFAULT_TIMESTAMP_WINDOW_MS = 30_000


def inference_protocol_id(chain_id: str) -> str:
    """The request/response protocol id for inference on `chain_id`."""
    return f"/p2pnode/{chain_id}/inference/1"


class Code(enum.IntEnum):
    """Outcome of one inference request (a u16 on the wire; unknown values mean an error)."""

    OK = 0
    BAD_REQUEST = 1  # undecodable message, or a payload the task refuses
    BAD_SIGNATURE = 2  # the caller's signature does not verify
    WRONG_CHAIN = 3  # the request names another chain
    WRONG_MINER = 4  # the request names another miner (PeerID)
    STALE_TIMESTAMP = 5  # the caller's timestamp is outside the miner's window
    REPLAYED_NONCE = 6  # this (caller, nonce) was already seen
    TOO_LARGE = 7  # the request is over the size limit
    RATE_LIMITED = 8  # the caller (unstaked) is over its request rate
    OVERLOADED = 9  # the miner's queue is full
    TIMEOUT = 10  # the miner could not answer in time
    INTERNAL = 11  # the miner's model failed
    UNKNOWN_NETUID = 12  # the miner does not serve that subnet
    WRONG_CALLER = 13  # the caller key is not the key of the peer that sent the request


def clip_message(message: str) -> str:
    """`message` cut to at most MAX_MESSAGE_CHARS bytes of UTF-8, never inside a character."""
    return message.encode("utf-8", "replace")[:MAX_MESSAGE_CHARS].decode("utf-8", "ignore")


class InferenceRejected(Exception):
    """A request is refused with `code`; `message` says why in one line (sent back to the caller)."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = clip_message(message)


@chain_object
class InferenceRequest(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "chain": CHAIN_ID,
        "caller": B32,
        "miner": Text(MAX_PEER_ID_CHARS),
        "netuid": U16,
        "nonce": Bytes(exact=NONCE_BYTES),
        "timestamp_ms": U64,
        "payload": Bytes(max_len=MAX_PAYLOAD_BYTES),
    }
    chain: str
    caller: bytes  # the caller's hotkey (ed25519 public key)
    miner: str  # the target miner's PeerID
    netuid: int
    nonce: bytes
    timestamp_ms: int  # the caller's wall clock (Unix ms)
    payload: bytes  # canonical JSON of the task request

    def signing_bytes(self) -> bytes:
        return signing_message(DOMAIN_REQUEST, self.chain, encode(self))


@chain_object
class SignedInferenceRequest(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"request": Struct(InferenceRequest), "sig": B64}
    request: InferenceRequest
    sig: bytes

    @property
    def id(self) -> bytes:
        """sha256 of the canonical bytes: what a response names in ``request_id``."""
        return sha256(encode(self))


@chain_object
class InferenceResponse(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "request_id": B32,
        "code": U16,
        "message": Text(MAX_MESSAGE_CHARS),
        "payload": Bytes(max_len=MAX_PAYLOAD_BYTES),
        "miner": B32,
        "elapsed_ms": U32,
    }
    request_id: bytes
    code: int
    message: str  # empty on success; one line on failure
    payload: bytes  # canonical JSON of the task response on success; empty otherwise
    miner: bytes  # the miner's hotkey (ed25519 public key)
    elapsed_ms: int  # time from receipt to answer at the miner

    def signing_bytes(self, chain_id: str) -> bytes:
        return signing_message(DOMAIN_RESPONSE, chain_id, encode(self))


@chain_object
class SignedInferenceResponse(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"response": Struct(InferenceResponse), "sig": B64}
    response: InferenceResponse
    sig: bytes


# ---------------------------------------------------------------- JSON payloads


def encode_json_payload(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, finite numbers only (ValueError otherwise)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return result


def decode_json_payload(data: bytes) -> Any:
    """Parse a JSON payload strictly (UTF-8, no NaN/Infinity, no duplicate keys, no overflow to inf).

    Raises MalformedMessage. Any JSON formatting is accepted (other clients may print floats
    differently); what is signed are the bytes, not the parsed value.
    """
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedMessage(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)
    except RecursionError:
        raise MalformedMessage("payload JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"payload is not valid JSON: {exc}") from None
    _check_finite(value, 0)
    return value


def _check_finite(value: Any, depth: int) -> None:
    # "1e999" parses to inf without calling parse_constant.
    if depth > 64:
        raise MalformedMessage("payload JSON nested too deeply")
    if type(value) is float and not math.isfinite(value):
        raise MalformedMessage("payload holds a non-finite number")
    if type(value) is list:
        for item in value:
            _check_finite(item, depth + 1)
    elif type(value) is dict:
        for item in value.values():
            _check_finite(item, depth + 1)


# ---------------------------------------------------------------- requests


def build_request(
    keypair: Keypair,
    *,
    chain_id: str,
    miner: str,
    netuid: int,
    payload: bytes,
    nonce: bytes,
    timestamp_ms: int,
) -> SignedInferenceRequest:
    """A request signed by `keypair` (the caller's hotkey). `nonce` must be fresh random bytes."""
    request = InferenceRequest(
        chain=chain_id,
        caller=keypair.public_key,
        miner=miner,
        netuid=netuid,
        nonce=nonce,
        timestamp_ms=timestamp_ms,
        payload=payload,
    )
    return SignedInferenceRequest(request=request, sig=keypair.sign(request.signing_bytes()))


def request_id_of(data: bytes) -> bytes:
    """The id of a request from its bytes as received (sha256), defined even for garbage."""
    return sha256(data)


def decode_request(data: bytes) -> SignedInferenceRequest:
    """Decode a signed request strictly; raises `InferenceRejected` (TOO_LARGE or BAD_REQUEST)."""
    if len(data) > MAX_REQUEST_BYTES:
        raise InferenceRejected(Code.TOO_LARGE, f"request of {len(data)} bytes exceeds {MAX_REQUEST_BYTES}")
    try:
        return decode(SignedInferenceRequest, data, MAX_REQUEST_BYTES)
    except MalformedMessage as exc:
        if _payload_too_long(data):
            raise InferenceRejected(Code.TOO_LARGE, f"payload exceeds {MAX_PAYLOAD_BYTES} bytes") from None
        raise InferenceRejected(Code.BAD_REQUEST, f"malformed request: {exc.reason}") from None


def _payload_too_long(data: bytes) -> bool:
    # A well-formed request whose only fault is its size deserves TOO_LARGE, not BAD_REQUEST.
    try:
        plain = decode_plain(data, MAX_REQUEST_BYTES)
    except MalformedMessage:
        return False
    request = plain.get("request") if type(plain) is dict else None
    payload = request.get("payload") if type(request) is dict else None
    return type(payload) is bytes and len(payload) > MAX_PAYLOAD_BYTES


def check_request(
    signed: SignedInferenceRequest,
    *,
    chain_id: str,
    miner: str,
    netuid: int,
    now_ms: int,
    window_ms: int = DEFAULT_TIMESTAMP_WINDOW_MS,
) -> None:
    """The stateless checks of a decoded request, cheapest first; raises `InferenceRejected`.

    The signature is checked before the timestamp so that nothing unsigned reaches the caller's
    nonce or rate-limit state (the stateful checks come after this, at the miner).
    """
    request = signed.request
    if request.chain != chain_id:
        raise InferenceRejected(Code.WRONG_CHAIN, f"request is for chain {request.chain!r}, not {chain_id!r}")
    if request.miner != miner:
        raise InferenceRejected(Code.WRONG_MINER, "request is addressed to another miner")
    if request.netuid != netuid:
        raise InferenceRejected(
            Code.UNKNOWN_NETUID, f"this miner serves subnet {netuid}, not {request.netuid}"
        )
    if not verify(request.caller, request.signing_bytes(), signed.sig):
        raise InferenceRejected(Code.BAD_SIGNATURE, "caller signature does not verify")
    skew = request.timestamp_ms - now_ms
    if abs(skew) > window_ms:
        raise InferenceRejected(
            Code.STALE_TIMESTAMP,
            f"timestamp is {skew / 1000:+.1f} s from the miner's clock (window ±{window_ms / 1000:g} s)",
        )


class ReplayCache:
    """The (caller, nonce) pairs seen in the last `ttl_ms`, at most `max_entries` of them.

    A request older than the timestamp window is refused for its timestamp, so a nonce needs to be
    remembered only for the window on either side: `ttl_ms` should be twice the window. When the
    cache is full of unexpired entries it refuses new ones (`add` returns None) rather than forget a
    nonce that could still be replayed.
    """

    def __init__(self, ttl_ms: int, max_entries: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # key -> expiry, in insertion order

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, caller: bytes, nonce: bytes, now_ms: int) -> bool | None:
        """Record the pair: True if new, False if seen before (a replay), None if the cache is full."""
        self._expire(now_ms)
        key = caller + nonce
        if key in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            return None
        self._seen[key] = now_ms + self.ttl_ms
        return True

    def _expire(self, now_ms: int) -> None:
        # Insertion order is expiry order as long as time does not go backwards; if it does, an
        # entry merely lives a little longer.
        seen = self._seen
        while seen:
            key, expiry = next(iter(seen.items()))
            if expiry > now_ms:
                break
            del seen[key]


# ---------------------------------------------------------------- responses


def build_response(
    keypair: Keypair,
    *,
    chain_id: str,
    request_id: bytes,
    code: Code,
    message: str = "",
    payload: bytes = b"",
    elapsed_ms: int = 0,
) -> SignedInferenceResponse:
    """A response signed by `keypair` (the miner's hotkey)."""
    response = InferenceResponse(
        request_id=request_id,
        code=int(code),
        message=clip_message(message),
        payload=payload,
        miner=keypair.public_key,
        elapsed_ms=max(0, min(elapsed_ms, (1 << 32) - 1)),
    )
    return SignedInferenceResponse(response=response, sig=keypair.sign(response.signing_bytes(chain_id)))


def decode_response(data: bytes) -> SignedInferenceResponse:
    """Decode a signed response strictly; raises MalformedMessage."""
    return decode(SignedInferenceResponse, data, MAX_RESPONSE_BYTES)


class UntrustedResponse(ValueError):
    """A response cannot be trusted: wrong signer, bad signature, or it answers another request."""


def verify_response(
    signed: SignedInferenceResponse, *, chain_id: str, request_id: bytes, miner: bytes
) -> InferenceResponse:
    """Check that `signed` is `miner`'s answer to the request `request_id`; raises UntrustedResponse."""
    response = signed.response
    if response.miner != miner:
        raise UntrustedResponse("response is signed by another key than the miner's hotkey")
    if not verify(miner, response.signing_bytes(chain_id), signed.sig):
        raise UntrustedResponse("miner signature does not verify")
    if response.request_id != request_id:
        raise UntrustedResponse("response answers another request (replayed or misrouted)")
    return response
