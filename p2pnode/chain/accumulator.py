"""An incremental commitment to a key-value set: LtHash with 1024 lanes of 16 bits.

The state root must commit to the whole state yet cost O(changed keys) per block, never
O(state size). LtHash (Bellare–Micciancio; Lewi et al., "Securing update propagation with
homomorphic hashing", 2019) does that: the digest of a set is the lane-wise sum (mod 2^16) of an
extendable-output hash of each element, so adding or removing one element is one hash and one
vector addition. Trade-off recorded in docs/decisions.md: no per-key inclusion proofs.

Lanes are kept in one Python int, each 16-bit lane in a 32-bit slot, so that lane sums never carry
into the next lane and a single mask reduces all lanes at once.
"""

from __future__ import annotations

import hashlib

LANES = 1024
_SLOT_BITS = 32
_LANE_MASK = int.from_bytes(b"\x00\x00\xff\xff" * LANES, "big")
_ONES = int.from_bytes(b"\x00\x00\x00\x01" * LANES, "big")
_DOMAIN = b"p2pnode/state-element/v1\x00"


# Recent elements' lane vectors (4 KiB each, at most _MEMO_MAX of them, oldest dropped first): a
# value written by one block is subtracted when the next block changes the key again, and a
# proposer's root and its own import hash the same elements.
_MEMO_MAX = 2048
_memo: dict[tuple[bytes, bytes], int] = {}


def element_hash(key: bytes, value: bytes) -> int:
    """The lane vector of one (key, value) element."""
    item = (key, value)
    lanes = _memo.get(item)
    if lanes is None:
        h = hashlib.shake_256(_DOMAIN + len(key).to_bytes(2, "big") + key + value)
        lanes = int.from_bytes(h.digest(LANES * 4), "big") & _LANE_MASK
        if len(_memo) >= _MEMO_MAX:
            del _memo[next(iter(_memo))]
        _memo[item] = lanes
    return lanes


def add(acc: int, element: int) -> int:
    return (acc + element) & _LANE_MASK


def sub(acc: int, element: int) -> int:
    # -x per lane is (0xFFFF - x) + 1 = (x XOR mask) + 1
    return (acc + ((element ^ _LANE_MASK) + _ONES)) & _LANE_MASK


def digest(acc: int) -> bytes:
    """The 32-byte root of an accumulator."""
    lanes = acc.to_bytes(LANES * 4, "big")
    return hashlib.sha256(b"p2pnode/state-root/v1\x00" + lanes).digest()


def to_bytes(acc: int) -> bytes:
    return acc.to_bytes(LANES * 4, "big")


def from_bytes(data: bytes) -> int:
    if len(data) != LANES * 4:
        raise ValueError("accumulator must be 4096 bytes")
    acc = int.from_bytes(data, "big")
    if acc & ~_LANE_MASK:
        raise ValueError("accumulator has bits outside its lanes")
    return acc


EMPTY = 0
