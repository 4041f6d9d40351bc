"""The inference wire protocol: round trips, signatures, request ids, every stateless rejection."""

from __future__ import annotations

import dataclasses

import pytest
from marketutil import CHAIN, NETUID, WALL_NOW, key, peer_of, signed_request

from protocols.codec import MalformedMessage, encode
from protocols.inference import (
    DOMAIN_RESPONSE,
    MAX_PAYLOAD_BYTES,
    MAX_REQUEST_BYTES,
    Code,
    InferenceRejected,
    ReplayCache,
    SignedInferenceRequest,
    UntrustedResponse,
    build_response,
    check_request,
    decode_json_payload,
    decode_request,
    decode_response,
    encode_json_payload,
    inference_protocol_id,
    request_id_of,
    verify_response,
)

NOW_MS = int(WALL_NOW * 1000)
CALLER = key("caller")
MINER = key("miner")
MINER_PEER = peer_of(MINER)


def check(signed: SignedInferenceRequest, *, now_ms: int = NOW_MS, miner: str = MINER_PEER) -> None:
    check_request(signed, chain_id=CHAIN, miner=miner, netuid=NETUID, now_ms=now_ms, window_ms=30_000)


def rejection(signed: SignedInferenceRequest, **kwargs: object) -> Code:
    with pytest.raises(InferenceRejected) as info:
        check(signed, **kwargs)  # type: ignore[arg-type]
    return info.value.code


def test_protocol_id_names_the_chain() -> None:
    assert inference_protocol_id("devnet-3") == "/p2pnode/devnet-3/inference/1"


def test_request_round_trip_and_id() -> None:
    signed = signed_request(CALLER, MINER_PEER, {"context": "hello"})
    data = encode(signed)
    assert decode_request(data) == signed
    assert signed.id == request_id_of(data)
    check(signed)  # valid: no exception
    assert decode_json_payload(signed.request.payload) == {"context": "hello"}


def test_response_round_trip_and_verification() -> None:
    data = encode(signed_request(CALLER, MINER_PEER, {"context": "x"}))
    rid = request_id_of(data)
    signed = build_response(
        MINER, chain_id=CHAIN, request_id=rid, code=Code.OK, payload=b'{"a":1}', elapsed_ms=7
    )
    again = decode_response(encode(signed))
    assert again == signed
    response = verify_response(again, chain_id=CHAIN, request_id=rid, miner=MINER.public_key)
    assert (response.code, response.payload, response.elapsed_ms) == (0, b'{"a":1}', 7)

    with pytest.raises(UntrustedResponse, match="another request"):
        verify_response(again, chain_id=CHAIN, request_id=bytes(32), miner=MINER.public_key)
    with pytest.raises(UntrustedResponse, match="another key"):
        verify_response(again, chain_id=CHAIN, request_id=rid, miner=CALLER.public_key)
    with pytest.raises(UntrustedResponse, match="signature"):
        verify_response(again, chain_id="other-chain", request_id=rid, miner=MINER.public_key)
    tampered = dataclasses.replace(again, response=dataclasses.replace(again.response, payload=b'{"a":2}'))
    with pytest.raises(UntrustedResponse, match="signature"):
        verify_response(tampered, chain_id=CHAIN, request_id=rid, miner=MINER.public_key)


def test_response_signature_is_domain_separated() -> None:
    signed = build_response(MINER, chain_id=CHAIN, request_id=bytes(32), code=Code.OK)
    assert signed.response.signing_bytes(CHAIN).startswith(DOMAIN_RESPONSE)
    request = signed_request(CALLER, MINER_PEER, {})
    assert not request.request.signing_bytes().startswith(DOMAIN_RESPONSE)


def test_each_stateless_rejection() -> None:
    good = signed_request(CALLER, MINER_PEER, {"context": "x"})
    assert rejection(signed_request(CALLER, MINER_PEER, {}, chain="other")) is Code.WRONG_CHAIN
    assert rejection(good, miner=peer_of(key("someone-else"))) is Code.WRONG_MINER
    assert rejection(signed_request(CALLER, MINER_PEER, {}, netuid=NETUID + 1)) is Code.UNKNOWN_NETUID
    forged = dataclasses.replace(good, sig=key("mallory").sign(good.request.signing_bytes()))
    assert rejection(forged) is Code.BAD_SIGNATURE
    altered = dataclasses.replace(good, request=dataclasses.replace(good.request, payload=b'{"context":"y"}'))
    assert rejection(altered) is Code.BAD_SIGNATURE
    # The window is inclusive at ±30 s.
    check(good, now_ms=NOW_MS + 30_000)
    check(good, now_ms=NOW_MS - 30_000)
    assert rejection(good, now_ms=NOW_MS + 30_001) is Code.STALE_TIMESTAMP
    assert rejection(good, now_ms=NOW_MS - 30_001) is Code.STALE_TIMESTAMP


def test_decoding_rejects_oversized_and_malformed_requests() -> None:
    big = signed_request(CALLER, MINER_PEER, {"context": "x" * (MAX_PAYLOAD_BYTES - 20)})
    assert len(encode(big)) <= MAX_REQUEST_BYTES
    assert decode_request(encode(big)) == big
    with pytest.raises(InferenceRejected) as info:
        decode_request(b"\x00" * (MAX_REQUEST_BYTES + 1))
    assert info.value.code is Code.TOO_LARGE
    for garbage in (b"", b"\xff\x00garbage", encode(big)[:-1], encode(big) + b"\x00"):
        with pytest.raises(InferenceRejected) as info:
            decode_request(garbage)
        assert info.value.code is Code.BAD_REQUEST


@pytest.mark.parametrize(
    "payload",
    [
        b"NaN",
        b'{"x": Infinity}',
        b'{"x": 1e999}',
        b'{"a": 1, "a": 2}',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,
        b"{",
    ],
)
def test_json_payloads_are_parsed_strictly(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_json_payload(payload)


def test_canonical_json_payload() -> None:
    assert encode_json_payload({"b": [1.5, "é"], "a": 1}) == '{"a":1,"b":[1.5,"é"]}'.encode()
    with pytest.raises(ValueError):
        encode_json_payload({"x": float("nan")})


def test_replay_cache_remembers_for_its_ttl_and_refuses_when_full() -> None:
    cache = ReplayCache(ttl_ms=60_000, max_entries=3)
    caller, other = CALLER.public_key, key("other").public_key
    nonce = bytes(16)
    assert cache.add(caller, nonce, 0) is True
    assert cache.add(caller, nonce, 59_999) is False
    assert cache.add(other, nonce, 1) is True  # nonces are per caller
    assert cache.add(caller, b"\x01" * 16, 2) is True
    assert cache.add(caller, b"\x02" * 16, 3) is None  # full of live entries: refuse, never forget
    assert cache.add(caller, nonce, 60_000) is True  # the first entry expired
    assert len(cache) == 3
