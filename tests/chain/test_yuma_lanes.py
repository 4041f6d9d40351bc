"""The packed-lane magic division the epoch's column loops rely on (`yuma._Lanes.div`).

The column loops divide every entry of a column by the column's sum (or by its largest entry) and
take x_bits = bitlen(divisor), since no entry exceeds its divisor. These cases check that bound is
exact at its edges: entries 0, 1, d - 1 and d, and random entries <= d, for divisors of every size
the loops see (1 .. 2^33).
"""

from __future__ import annotations

import random
from array import array

import pytest

from p2pnode.chain.yuma import _Lanes


def _divide(entries: list[int], divisor: int) -> list[int]:
    lanes = _Lanes(len(entries), 128)
    packed = lanes.pack(array("Q", entries))
    return list(lanes.unpack(lanes.div(packed, divisor, divisor.bit_length())))


@pytest.mark.parametrize("seed", range(4))
def test_division_with_x_bits_of_the_divisor_is_exact_for_entries_up_to_it(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        divisor = rng.randrange(1, 1 << rng.randrange(1, 34)) + (rng.random() < 0.1) * (1 << 32)
        entries = [0, 1, divisor - 1, divisor] + [rng.randrange(0, divisor + 1) for _ in range(28)]
        assert _divide(entries, divisor) == [(x << 32) // divisor for x in entries]


def test_division_by_powers_of_two_and_their_neighbours() -> None:
    for bits in range(0, 34):
        for divisor in {max(1, (1 << bits) - 1), 1 << bits, (1 << bits) + 1}:
            entries = sorted({0, 1, divisor // 2, divisor - 1, divisor})
            assert _divide(entries, divisor) == [(x << 32) // divisor for x in entries]
