"""Decoding cost of the strict codec against cbor2 on the messages a node receives.

For each message: `cbor2.loads` alone (C, no checks), the previous parse (`cbor2.loads` plus a
canonical re-encode compared byte for byte), our strict schema-less decoder (`codec.decode_plain`),
the previous whole decode (previous parse, then the schema's `from_plain`) and today's
`codec.decode` (read straight into the schema). Medians of several rounds, CPU
microseconds per message. Also the hostile inputs that motivated the decoder: a 256 KiB tag-4 item and a text
string with invalid UTF-8.

    python benchmarks/bench_codec.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cbor2

from p2pnode.chain import types as t
from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.schema import from_plain
from p2pnode.testing.factories import signed, user_keys
from protocols import codec, sync


def _previous_decode_plain(data: bytes) -> object:
    value = cbor2.loads(data)
    if canonical_encode(value) != data:
        raise ValueError("not canonical")
    return value


def _messages() -> dict[str, tuple[type, bytes]]:
    key = user_keys(1)[0]
    tx = signed(key, 7, t.Transfer(to=bytes(32), amount=123_456_789))
    weights = signed(key, 8, t.SetWeights(netuid=1, uids=tuple(range(256)), values=tuple(range(256)), version_key=0))
    cp = t.Checkpoint(epoch=3, height=96, hash=bytes(32))
    vote = t.SignedVote(vote=t.FinalityVote(chain="dev", validator=bytes(32), source=cp, target=cp), sig=bytes(64))
    header = t.Header(chain="dev", version=1, height=1000, slot=1002, parent=bytes(32), proposer=bytes(32),
                      state_root=bytes(32), tx_root=bytes(32), timestamp_ms=1_700_000_000_000,
                      randao_reveal=bytes(64))
    block = t.Block(header=header, sig=bytes(64), txs=tuple([tx] * 256), votes=tuple([vote] * 16))
    status = sync.Status(chain="dev", genesis=bytes(32), head_height=10, head_slot=12, head_hash=bytes(32),
                         justified_epoch=1, finalized_epoch=0, finalized_height=0, finalized_hash=bytes(32))
    return {
        "SignedTx (transfer)": (t.SignedTx, codec.encode(tx)),
        "SignedTx (256 weights)": (t.SignedTx, codec.encode(weights)),
        "SignedVote": (t.SignedVote, codec.encode(vote)),
        "Status": (sync.Status, codec.encode(status)),
        "Block (256 txs, 16 votes)": (t.Block, codec.encode(block)),
    }


def _per_call_us(fn, data: bytes, rounds: int) -> float:
    number = max(1, int(20_000 / max(1, len(data) // 100)))
    samples = []
    for _ in range(rounds):
        start = time.process_time()  # CPU time: the machine is shared, wall time would count others' work
        for _ in range(number):
            fn(data)
        samples.append((time.process_time() - start) / number * 1e6)
    return statistics.median(samples)


def _cpu_ms(fn, data: bytes) -> float:
    start = time.process_time()
    try:
        fn(data)
    except Exception:  # noqa: BLE001 - the cost of refusing is what is measured
        pass
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("| message | bytes | cbor2.loads µs | previous parse (cbor2 + re-encode) µs | strict decode_plain µs "
          "| previous decode (parse + schema) µs | codec.decode µs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (cls, data) in _messages().items():
        row = [
            _per_call_us(cbor2.loads, data, args.rounds),
            _per_call_us(_previous_decode_plain, data, args.rounds),
            _per_call_us(codec.decode_plain, data, args.rounds),
            _per_call_us(lambda d, cls=cls: from_plain(cls, _previous_decode_plain(d)), data, args.rounds),
            _per_call_us(lambda d, cls=cls: codec.decode(cls, d, max_bytes=sync.MAX_BLOCK_BYTES), data, args.rounds),
        ]
        print(f"| {name} | {len(data)} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    tag4 = b"\xc4\x82\x19\xff\xff\xc2\x5a" + (256 * 1024).to_bytes(4, "big") + b"\xff" * (256 * 1024)
    print()
    print(f"256 KiB tag-4 item: strict decoder {_cpu_ms(codec.decode_plain, tag4):.3f} ms CPU to refuse")
    bad_utf8 = b"\x7a" + (64 * 1024).to_bytes(4, "big") + b"\xff" * (64 * 1024)
    print(f"64 KiB invalid UTF-8 text: strict decoder {_cpu_ms(codec.decode_plain, bad_utf8):.3f} ms CPU to refuse")


if __name__ == "__main__":
    main()
