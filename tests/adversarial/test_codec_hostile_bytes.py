"""Issue 13 items 2 and 3, in process: what one hostile message can cost the decoder.

Item 2: a tag-4 (decimal fraction) item over a 256 KiB bignum made cbor2 spend ~6 s of CPU before
the codec refused it; the strict decoder refuses the tag at its first byte.
Item 3: cbor2 5.9 leaked the input of every text string with invalid UTF-8 (800 bad POST /tx grew a
node by ~99 MiB); the strict decoder allocates nothing it does not return.
"""

from __future__ import annotations

import gc
import os
import time

import pytest

from p2pnode.chain import types as t
from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import to_plain
from p2pnode.testing.factories import signed, user_keys
from protocols import codec
from protocols.codec import MalformedMessage

KEY = user_keys(1)[0]
GOSSIP_LIMIT = 512 * 1024


def tag4_bignum(size: int) -> bytes:
    """A decimal fraction [65535, bignum of `size` bytes]: cheap to send, quadratic for cbor2."""
    return b"\xc4\x82\x19\xff\xff\xc2\x5a" + size.to_bytes(4, "big") + b"\xff" * size


def tx_with_field(raw_value: bytes) -> bytes:
    """A signed transfer's canonical bytes with its `sig` value replaced by `raw_value` (raw CBOR)."""
    plain = to_plain(signed(KEY, 0, t.Transfer(to=bytes(32), amount=1)))
    encoded = canonical_encode(plain)
    sig = canonical_encode(plain["sig"])
    assert encoded.count(sig) == 1
    return encoded.replace(sig, raw_value)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("where", ["whole message", "inside a transaction"])
def test_a_256_kib_tag4_message_is_refused_in_milliseconds(where: str) -> None:
    item = tag4_bignum(256 * 1024)
    data = item if where == "whole message" else tx_with_field(item)
    cpu = []
    for _ in range(3):
        start = time.process_time()
        with pytest.raises(MalformedMessage):
            codec.decode(t.Block, data, max_bytes=GOSSIP_LIMIT) if where == "whole message" else codec.decode(
                t.SignedTx, data, max_bytes=GOSSIP_LIMIT)
        cpu.append(time.process_time() - start)
    assert min(cpu) < 0.050, f"refusing took {min(cpu) * 1000:.1f} ms of CPU"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_invalid_utf8_text_does_not_grow_memory() -> None:
    size = 60 * 1024
    bad_text = b"\x79" + size.to_bytes(2, "big") + b"\xc3\x28" * (size // 2)  # text of 60 KiB, invalid UTF-8
    messages = [tx_with_field(bad_text[:-4] + n.to_bytes(4, "big")) for n in range(800)]
    for data in messages[:50]:  # warm up allocator pools before measuring
        with pytest.raises(MalformedMessage):
            codec.decode(t.SignedTx, data, max_bytes=64 * 1024)
    gc.collect()
    before = rss_bytes()
    for data in messages:
        with pytest.raises(MalformedMessage):
            codec.decode(t.SignedTx, data, max_bytes=64 * 1024)
    gc.collect()
    grown = rss_bytes() - before
    # cbor2 5.9 kept every one of the 800 inputs: ~47 MiB here.
    assert grown < 8 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 800 refused messages"


def test_ten_thousand_refusals_hold_no_memory() -> None:
    import tracemalloc

    junk = [tx_with_field(b"\x62\xff\xfe"), tag4_bignum(1024), b"\x9f" * 64, b"\xbb" + b"\xff" * 8]
    tracemalloc.start()
    try:
        for _ in range(200):
            for data in junk:
                with pytest.raises(MalformedMessage):
                    codec.decode(t.SignedTx, data)
        baseline = tracemalloc.take_snapshot()
        for n in range(10_000):
            with pytest.raises(MalformedMessage):
                codec.decode(t.SignedTx, junk[n % len(junk)])
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(baseline, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"{grown} bytes still held after 10,000 refusals"
