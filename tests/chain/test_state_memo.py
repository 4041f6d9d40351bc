"""The state overlay's memos (base reads, the accumulator, element hashes) never change an answer."""

from __future__ import annotations

from p2pnode.chain import accumulator
from p2pnode.chain.encoding import encode
from p2pnode.chain.state import DictReader, State


def fresh_accumulator(items: dict[bytes, bytes]) -> int:
    acc = accumulator.EMPTY
    for key, value in items.items():
        acc = accumulator.add(acc, accumulator.element_hash(key, value))
    return acc


def test_accumulator_follows_every_write() -> None:
    reader = DictReader()
    base = {b"a": b"1", b"b": b"2", b"c": b"3"}
    reader.apply(dict(base))
    state = State(reader, fresh_accumulator(base))
    assert state.get_raw(b"a") == b"1"
    state.put(b"a", 5)
    first = state.accumulator()
    assert first == state.accumulator()  # memoised
    state.delete(b"b")  # a write after the memo
    second = state.accumulator()
    child = state.child()
    child.put(b"d", 7)
    child.commit_into_parent()  # a child's writes reach the parent
    third = state.accumulator()
    state.put(b"c", "three")
    fourth = state.accumulator()
    assert first == fresh_accumulator({b"a": encode(5), b"b": b"2", b"c": b"3"})
    assert second == fresh_accumulator({b"a": encode(5), b"c": b"3"})
    assert third == fresh_accumulator({b"a": encode(5), b"c": b"3", b"d": encode(7)})
    assert fourth == fresh_accumulator({b"a": encode(5), b"c": encode("three"), b"d": encode(7)})
    assert state.changes() == {b"a": encode(5), b"b": None, b"c": encode("three"), b"d": encode(7)}


def test_element_hash_memo_is_bounded_and_exact() -> None:
    first = accumulator.element_hash(b"key", b"value")
    for i in range(accumulator._MEMO_MAX + 10):
        accumulator.element_hash(b"k%d" % i, b"v")
    assert len(accumulator._memo) <= accumulator._MEMO_MAX
    assert (b"key", b"value") not in accumulator._memo  # the oldest went first
    assert accumulator.element_hash(b"key", b"value") == first
