"""Pure pieces of p2pnode.net: identities, topic names, framing, rate limits, verdict mapping."""

from __future__ import annotations

import hashlib

import pytest
import trio
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from netutil import seed_for

from p2pnode.net.gossip import (
    MAX_TOPIC_MESSAGE_BYTES,
    GossipConfig,
    GossipTopics,
    message_id,
)
from p2pnode.net.host import peer_id_from_pubkey, peer_id_from_seed
from p2pnode.net.libp2p_workarounds import _buffered_read_varint_prefixed_bytes_limited as read_pubsub_frame
from p2pnode.net.reqresp import (
    FrameError,
    FrameReader,
    ResponseStatus,
    encode_error,
    encode_request,
    encode_response,
    encode_uvarint,
)
from protocols.crypto import keypair_from_seed
from protocols.network import Checked, Verdict

pytestmark = pytest.mark.timeout(10)


# -- identity ----------------------------------------------------------------------------------


def test_peer_id_is_derived_from_the_hotkey_seed() -> None:
    seed = seed_for("alice")
    peer_id = peer_id_from_seed(seed)
    assert peer_id.startswith("12D3KooW")  # ed25519, identity multihash
    assert peer_id == peer_id_from_seed(seed)
    assert peer_id == peer_id_from_pubkey(keypair_from_seed(seed).public_key)
    assert peer_id != peer_id_from_seed(seed_for("bob"))
    with pytest.raises(ValueError):
        peer_id_from_seed(b"short")
    with pytest.raises(ValueError):
        peer_id_from_pubkey(b"\x00" * 31)


# -- topics and message ids --------------------------------------------------------------------


def test_message_id_is_sha256_of_payload_only() -> None:
    a = rpc_pb2.Message(data=b"block", from_id=b"peer-a", seqno=b"1")
    b = rpc_pb2.Message(data=b"block", from_id=b"peer-b", seqno=b"9")
    assert message_id(a) == message_id(b) == hashlib.sha256(b"block").digest()


# -- framing -----------------------------------------------------------------------------------


class ChunkedStream:
    """Delivers bytes in fixed-size chunks, then EOF (b"")."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = data
        self._chunk = chunk
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        size = min(self._chunk, n or self._chunk)
        out, self._data = self._data[:size], self._data[size:]
        return out


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**21, 2**32])
def test_uvarint_roundtrip(value: int) -> None:
    async def decode() -> int:
        return await FrameReader(ChunkedStream(encode_uvarint(value), 1)).read_uvarint()  # type: ignore[arg-type]

    assert trio.run(decode) == value


async def test_frames_survive_any_chunking() -> None:
    payload = bytes(range(256)) * 40
    for chunk in (1, 3, 1000, 100_000):
        reader = FrameReader(ChunkedStream(encode_response(ResponseStatus.OK, payload), chunk))  # type: ignore[arg-type]
        assert await reader.read_status() is ResponseStatus.OK
        assert await reader.read_exactly(await reader.read_uvarint()) == payload
    request = FrameReader(ChunkedStream(encode_request(b"req"), 2))  # type: ignore[arg-type]
    assert await request.read_exactly(await request.read_uvarint()) == b"req"


async def test_reader_reads_in_chunks_not_bytes() -> None:
    stream = ChunkedStream(encode_response(ResponseStatus.OK, b"x" * 5000), 100_000)
    reader = FrameReader(stream)  # type: ignore[arg-type]
    await reader.read_status()
    await reader.read_exactly(await reader.read_uvarint())
    assert stream.reads == 1


async def test_malformed_frames() -> None:
    with pytest.raises(FrameError):
        await FrameReader(ChunkedStream(b"\xff" * 8, 8)).read_uvarint()  # type: ignore[arg-type]
    with pytest.raises(FrameError):
        await FrameReader(ChunkedStream(b"\x09\x00", 8)).read_status()  # type: ignore[arg-type]
    with pytest.raises(EOFError):
        await FrameReader(ChunkedStream(b"\x05ab", 8)).read_exactly(5)  # type: ignore[arg-type]


def test_error_reasons_are_truncated() -> None:
    frame = encode_error(ResponseStatus.SERVER_ERROR, "x" * 1000)
    assert frame[0] == ResponseStatus.SERVER_ERROR
    assert len(frame) == 1 + 2 + 256


# -- verdict mapping ---------------------------------------------------------------------------


def _peer(name: str) -> ID:
    return ID.from_base58(peer_id_from_seed(seed_for(name)))


def _message(data: bytes, origin: ID) -> rpc_pb2.Message:
    return rpc_pb2.Message(data=data, from_id=origin.to_bytes(), seqno=b"\x00" * 8, topicIDs=["t"])


async def _noop(peer: str, data: bytes) -> None:
    pass


def test_verdicts_map_to_libp2p_booleans_and_penalties() -> None:
    local, remote = _peer("local"), _peer("remote")
    penalties: list[tuple[str, str]] = []
    topics = GossipTopics(local, GossipConfig(), lambda p, r: penalties.append((p, r)))

    def app_validator(peer: str, data: bytes) -> Verdict:
        if data == b"boom":
            raise RuntimeError("validator bug")
        return {b"ok": Verdict.ACCEPT, b"later": Verdict.IGNORE}.get(data, Verdict.REJECT)

    topics.add("t", app_validator, _noop, max_message_bytes=100)
    validate = topics.libp2p_validator("t")
    assert validate(remote, _message(b"ok", remote)) is True
    assert validate(remote, _message(b"later", remote)) is False
    assert penalties == []
    assert validate(remote, _message(b"boom", remote)) is False  # exception -> reject, penalised
    assert penalties == [(remote.to_base58(), "invalid_message")]
    assert validate(remote, _message(b"forged", remote)) is False
    assert penalties[-1] == (remote.to_base58(), "invalid_message") and len(penalties) == 2
    assert validate(remote, _message(b"x" * 101, remote)) is False
    assert penalties[-1] == (remote.to_base58(), "oversized_message")
    # Our own publishes skip the application validator (it would reject b"forged").
    assert validate(local, _message(b"forged", local)) is True
    assert (topics.rejected, topics.ignored, topics.validator_errors) == (3, 1, 1)


async def test_the_guards_decoded_object_reaches_the_handler_with_its_forwarder() -> None:
    local, remote = _peer("local"), _peer("remote")
    topics = GossipTopics(local, GossipConfig(), lambda p, r: None)
    delivered: list[tuple[str, object]] = []
    got_one = trio.Event()

    async def handler(peer: str, value: object) -> None:
        delivered.append((peer, value))
        got_one.set()

    topics.add("t", lambda p, d: Checked(Verdict.ACCEPT, {"decoded": d}), handler, None)
    assert topics.libp2p_validator("t")(remote, _message(b"ok", remote)) is True
    raw_send, raw_receive = trio.open_memory_channel[rpc_pb2.Message](4)
    raw_send.send_nowait(_message(b"ok", remote))  # libp2p's own copy: drained, not delivered
    async with trio.open_nursery() as nursery:
        nursery.start_soon(topics.deliver, "t", raw_receive)
        with trio.fail_after(5):
            await got_one.wait()
        nursery.cancel_scope.cancel()
    assert delivered == [(remote.to_base58(), {"decoded": b"ok"})]


def test_per_origin_rate_limit_ignores_without_penalty() -> None:
    local, remote = _peer("local"), _peer("remote")
    penalties: list[tuple[str, str]] = []
    topics = GossipTopics(local, GossipConfig(origin_burst=3, origin_rate_per_s=0.001), lambda p, r: penalties.append((p, r)))
    topics.add("t", lambda p, d: Verdict.ACCEPT, _noop, None)
    validate = topics.libp2p_validator("t")
    results = [validate(remote, _message(bytes([i]), remote)) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert penalties == []


def test_topic_size_limits() -> None:
    topics = GossipTopics(_peer("local"), GossipConfig(), lambda p, r: None)
    topics.check_publish("t", b"x" * (512 * 1024))
    with pytest.raises(ValueError):
        topics.check_publish("t", b"x" * (512 * 1024 + 1))
    topics.set_max_message_bytes("t", 10)
    with pytest.raises(ValueError):
        topics.check_publish("t", b"x" * 11)
    with pytest.raises(ValueError):
        topics.set_max_message_bytes("t", MAX_TOPIC_MESSAGE_BYTES + 1)
    with pytest.raises(ValueError):
        GossipConfig(default_max_message_bytes=MAX_TOPIC_MESSAGE_BYTES + 1)


# -- pubsub frame reader (CPU fix) -------------------------------------------------------------


async def test_buffered_pubsub_frames_match_upstream_semantics() -> None:
    frames = [b"", b"a", b"b" * 300, b"c" * 70_000]
    wire = b"".join(encode_uvarint(len(f)) + f for f in frames)
    for chunk in (1, 7, 100_000):
        stream = ChunkedStream(wire, chunk)
        read = [await read_pubsub_frame(stream, 1 << 20) for _ in frames]  # type: ignore[arg-type]
        assert read == frames
        with pytest.raises(IncompleteReadError):
            await read_pubsub_frame(stream, 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(MessageTooLarge):
        await read_pubsub_frame(ChunkedStream(encode_uvarint(2000) + b"x" * 2000, 64), 1000)  # type: ignore[arg-type]
    with pytest.raises(IncompleteReadError):
        await read_pubsub_frame(ChunkedStream(encode_uvarint(10) + b"x" * 3, 64), 1000)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        await read_pubsub_frame(ChunkedStream(b"\xff" * 11, 64), 1000)  # type: ignore[arg-type]
