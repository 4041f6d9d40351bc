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


class _CountingReader(DictReader):
    """A reader with `get_many`, counting the reads it answers."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        super().__init__(data)
        self.gets = 0
        self.many = 0

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return super().get(key)

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes | None]:
        self.many += 1
        return {key: self.data.get(key) for key in keys}


def test_prefetched_reads_answer_as_single_reads_and_undo_values_come_from_them() -> None:
    reader = _CountingReader({b"a": b"1", b"b": b"2"})
    state = State(reader, fresh_accumulator(reader.data))
    state.prefetch([b"a", b"missing", b"a"])
    assert reader.many == 1
    assert state.get_raw(b"a") == b"1" and state.get_raw(b"missing") is None
    assert reader.gets == 0  # both served from the prefetch
    assert state.get_raw(b"b") == b"2" and reader.gets == 1  # not prefetched: read on demand
    state.prefetch([b"a", b"b"])
    assert reader.many == 1  # nothing left to fetch
    state.put(b"a", 9)
    state.put(b"missing", 1)
    changes = state.changes()
    assert state.values_before(changes) == [[b"a", b"1"], [b"missing", None]]
    assert state.accumulator() == fresh_accumulator({b"a": encode(9), b"b": b"2", b"missing": encode(1)})
