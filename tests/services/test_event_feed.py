"""The chain's event feed: what a head change publishes, reorganisations included."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.chain.types import Transfer
from p2pnode.services.api.events import ChainEventFeed, EventHub
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys

ALICE, BOB = user_keys(2)
GENESIS = make_genesis(4, 4)


def drain(client) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    out = []
    while True:
        try:
            event = client.receive.receive_nowait()
        except trio.WouldBlock:
            return out
        out.append((event.kind, event.data))


def test_heads_and_included_transactions_follow_the_canonical_chain(tmp_path: Path) -> None:
    a = open_chain(tmp_path / "a.sqlite", GENESIS)
    b = open_chain(tmp_path / "b.sqlite", GENESIS)
    hub = EventHub()
    client = hub.subscribe(["head", "tx_included"])
    feed = ChainEventFeed(a, hub)

    to_bob_5 = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=5))
    build_and_import(a, 1, [to_bob_5])
    build_and_import(a, 2)
    feed.report()
    events = drain(client)
    assert [kind for kind, _ in events] == ["tx_included", "head"]
    assert events[0][1]["tx"] == to_bob_5.id.hex() and events[0][1]["height"] == 1
    assert events[1][1]["height"] == 2 and events[1][1]["reorg"] is False
    feed.report()
    assert drain(client) == []  # nothing moved, nothing said

    # A longer fork replaces both blocks: only its own transactions are reported, once.
    to_bob_7 = signed(ALICE, 0, Transfer(to=BOB.public_key, amount=7))
    fork = [build_and_import(b, 2, [to_bob_7]), build_and_import(b, 3), build_and_import(b, 4)]
    for block in fork:
        a.import_block(block)
    assert a.head.hash == fork[-1].hash
    feed.report()
    events = drain(client)
    included = [data for kind, data in events if kind == "tx_included"]
    assert [d["tx"] for d in included] == [to_bob_7.id.hex()] and included[0]["height"] == 1
    head = [data for kind, data in events if kind == "head"]
    assert len(head) == 1 and head[0]["height"] == 3 and head[0]["hash"] == fork[-1].hash.hex()
    assert head[0]["reorg"] is True  # longer than the old head, yet it replaced blocks


def test_the_feed_keeps_a_bounded_history(tmp_path: Path) -> None:
    a = open_chain(tmp_path / "a.sqlite", GENESIS)
    feed = ChainEventFeed(a, EventHub())
    for slot in range(1, 6):
        build_and_import(a, slot)
        feed.report()
    lag = feed.history.finality_lag()
    assert [height for height, _ in lag] == [0, 1, 2, 3, 4, 5]


def test_without_a_stream_for_transactions_no_block_is_read_whole(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = open_chain(tmp_path / "a.sqlite", GENESIS)
    b = open_chain(tmp_path / "b.sqlite", GENESIS)
    hub = EventHub()
    client = hub.subscribe(["head"])
    feed = ChainEventFeed(a, hub)
    read: list[bytes] = []
    real_block = a.store.block
    monkeypatch.setattr(a.store, "block", lambda h: read.append(h) or real_block(h))
    build_and_import(a, 1, [signed(ALICE, 0, Transfer(to=BOB.public_key, amount=5))])
    feed.report()
    assert read == []
    fork = [build_and_import(b, 2), build_and_import(b, 3)]
    for block in fork:
        a.import_block(block)
    read.clear()  # the reorganisation itself reads the block it rolls back
    feed.report()
    assert read == [], "a head change read no block whole"
    heads = [data for kind, data in drain(client) if kind == "head"]
    assert [(h["height"], h["reorg"]) for h in heads] == [(1, False), (2, True)]
    assert not hub.wants("tx_included") and hub.wants("head")
