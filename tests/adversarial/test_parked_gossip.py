"""A gossiped transaction refused by a full pool is parked and admitted after the next block frees
room, not lost to this peer until the 30 s re-gossip; the parked set is bounded."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.types import SignedTx, Transfer
from p2pnode.services.chain.chain_service import ChainService, NodeConfig
from p2pnode.services.chain.mempool import Mempool, MempoolConfig
from p2pnode.services.clock import TrioClock
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec
from protocols.network import Verdict

ALICE, BOB, CAROL, DAVE = user_keys(4)
GENESIS = make_genesis(4, 4)


def pay(sender, nonce: int, fee: int = 1_000) -> SignedTx:  # noqa: ANN001
    return signed(sender, nonce, Transfer(to=DAVE.public_key, amount=1), fee=fee)


def forged(stx: SignedTx) -> SignedTx:
    return SignedTx(tx=stx.tx, sig=bytes(64))


def node_with_pool(tmp_path: Path, max_txs: int, **parked: int) -> ChainService:
    config = NodeConfig(mempool=MempoolConfig(max_txs=max_txs, **parked))
    return ChainService(open_chain(tmp_path / "node.sqlite", GENESIS), MemoryHub().add_peer("node"), TrioClock(),
                        config=config)


async def test_gossip_refused_by_a_full_pool_is_admitted_after_the_next_block(tmp_path: Path) -> None:
    node = node_with_pool(tmp_path, max_txs=4)
    fillers = [pay(ALICE, n) for n in range(4)]
    assert all(a.added for a in await node.submit_txs([codec.encode(t) for t in fillers]))
    # Bob's five transfers arrive by gossip while the pool is full: refused (and not relayed).
    late = [pay(BOB, n) for n in range(5)]
    checked = node._guard_tx_batch("relay", canonical_encode([codec.encode(t) for t in late]))
    assert checked.verdict == Verdict.IGNORE
    assert not any(t.id in node.mempool for t in late)
    assert node.mempool.parked_count == 5
    # A block with two of Alice's transfers frees two places: Bob's first two nonces take them,
    # at once, with no re-gossip; the other three wait for the next block.
    other = open_chain(tmp_path / "other.sqlite", GENESIS)
    node._import_one(build_and_import(other, 1, fillers[:2]))
    assert node.head.height == 1
    assert [t.id in node.mempool for t in late] == [True, True, False, False, False]
    assert node.mempool.parked_count == 3
    node._import_one(build_and_import(other, 2, fillers[2:] + late[:2]))
    assert node.head.hash == other.head.hash
    assert all(t.id in node.mempool for t in late[2:]) and len(node.mempool) == 3
    assert node.mempool.parked_count == 0
    assert node.network.penalties == []


async def test_a_transaction_with_a_bad_signature_is_rejected_not_parked(tmp_path: Path) -> None:
    node = node_with_pool(tmp_path, max_txs=2)
    assert all(a.added for a in await node.submit_txs([codec.encode(pay(ALICE, n)) for n in range(2)]))
    # Refused for want of room before the pool checks its signature; parking checks it.
    checked = node._guard_stake_tx("liar", codec.encode(forged(pay(BOB, 0))))
    assert (checked.verdict, checked.reason) == (Verdict.REJECT, "bad_signature")
    assert node.mempool.parked_count == 0
    node._import_one(build_and_import(open_chain(tmp_path / "a.sqlite", GENESIS), 1, [pay(ALICE, 0)]))
    assert len(node.mempool) == 1 and node.network.penalties == []


def test_parking_is_bounded(chain) -> None:  # noqa: ANN001
    state = chain.head_state()
    pool = Mempool(MempoolConfig(max_txs=1, max_per_sender=3, max_parked=5, max_parked_bytes=1 << 20))

    def park(stx: SignedTx, source: str = "p", now: int = 0) -> bool:
        data = codec.encode(stx)
        return pool.park(stx, data, stx.id, source, now).added

    assert [park(pay(ALICE, n)) for n in range(4)] == [True, True, True, False], "per-sender quota"
    assert not park(pay(ALICE, 0)), "the same transaction twice"
    assert not park(pay(ALICE, 1, fee=999)) and park(pay(ALICE, 1, fee=2_000)), "one per nonce, the higher fee"
    assert pool.parked_count == 3
    assert [park(pay(BOB, n)) for n in range(3)] == [True, True, False], "the whole set's bound"
    small = Mempool(MempoolConfig(max_parked_bytes=2 * len(codec.encode(pay(ALICE, 0)))))
    assert [small.park(t, codec.encode(t), t.id, "p", 0).added for t in (pay(ALICE, 0), pay(BOB, 0), pay(CAROL, 0))] == [
        True, True, False], "the bytes bound"
    # Expired, or already used on chain: dropped at the retry without an admission.
    ctx = chain_ctx(chain)
    assert pool.readmit_parked(state, ctx, 60_001) == []
    assert pool.parked_count == 0 and len(pool) == 0


def chain_ctx(chain):  # noqa: ANN001, ANN201
    from p2pnode.chain.context import BlockContext

    return BlockContext(height=chain.head.height + 1, slot=chain.head.slot + 1, proposer=bytes(32), timestamp_ms=0)


def test_readmission_keeps_nonce_order_and_what_still_finds_no_room(chain) -> None:  # noqa: ANN001
    state, ctx = chain.head_state(), chain_ctx(chain)
    pool = Mempool(MempoolConfig(max_txs=3))
    # Parked newest nonce first (gossip order is not guaranteed); the retry takes nonce order.
    for stx in (pay(BOB, 2), pay(BOB, 1), pay(BOB, 0), pay(CAROL, 0)):
        assert pool.park(stx, codec.encode(stx), stx.id, "p", 0).added
    results = pool.readmit_parked(state, ctx, 1)
    assert [a.reason for _, a in results] == ["added", "added", "added"]
    assert [s.tx.nonce for s in pool.ordered(state)] == [0, 0, 1]  # Bob 0, Carol 0 (turns), Bob 1
    assert pool.parked_count == 1, "Bob's nonce 2 found no room and stays parked"


async def test_a_forged_copy_cannot_displace_a_parked_transaction(tmp_path: Path) -> None:
    """Anyone who sees Bob's parked transfer can forge one of the same sender and nonce at a higher
    fee (no key needed): it must not take the honest one's place, and its relay pays at once."""
    node = node_with_pool(tmp_path, max_txs=2)
    assert all(a.added for a in await node.submit_txs([codec.encode(pay(ALICE, n, fee=5_000)) for n in range(2)]))
    honest = pay(BOB, 0)
    assert node._guard_stake_tx("relay", codec.encode(honest)).verdict == Verdict.IGNORE
    assert node.mempool.parked_count == 1
    # Outranks nothing in the pool (so refused for room before a signature check), outbids the parked one.
    fake = forged(pay(BOB, 0, fee=2_000))
    checked = node._guard_stake_tx("liar", codec.encode(fake))
    assert (checked.verdict, checked.reason) == (Verdict.REJECT, "bad_signature")  # gossip scores the REJECT
    assert node.mempool.parked_count == 1
    node._import_one(build_and_import(open_chain(tmp_path / "a.sqlite", GENESIS), 1,
                                      [pay(ALICE, 0, fee=5_000)]))
    assert honest.id in node.mempool, "the honest transfer was readmitted, not the forgery"


def test_a_parked_replacement_must_outbid_by_the_pool_replacement_margin(chain) -> None:  # noqa: ANN001
    """Otherwise one key re-parks the same nonce at fee + 1 without end, each a free decode and a
    signature check for us and nothing paid by the sender."""
    pool = Mempool(MempoolConfig(max_txs=1))
    first = pay(ALICE, 0, fee=1_000)
    assert pool.park(first, codec.encode(first), first.id, "p", 0).added
    bumped = pay(ALICE, 0, fee=1_001)
    assert pool.park(bumped, codec.encode(bumped), bumped.id, "p", 0).reason == "underpriced_replacement"
    enough = pay(ALICE, 0, fee=1_100)
    assert pool.park(enough, codec.encode(enough), enough.id, "p", 0).reason == "replaced"
    assert pool.parked_count == 1


def test_a_forged_transaction_is_never_parked(chain) -> None:  # noqa: ANN001
    """A parked transaction holds a place others could use for 60 s: only verified ones take one."""
    pool = Mempool(MempoolConfig(max_txs=1))
    fake = forged(pay(BOB, 0))
    assert pool.park(fake, codec.encode(fake), fake.id, "p", 0).reason == "bad_signature"
    assert pool.parked_count == 0


def test_a_full_parked_set_gives_way_to_a_higher_fee(chain) -> None:  # noqa: ANN001
    """Funded keys whose parked transactions can never be admitted (future nonces past their quota)
    would otherwise hold the whole set for free; as in the pool, a newcomer that pays more takes
    the place of the lowest fee (the newest of those first), and one that pays no more is refused."""
    pool = Mempool(MempoolConfig(max_txs=1, max_parked=3))

    def park(stx: SignedTx) -> str:
        return pool.park(stx, codec.encode(stx), stx.id, "p", 0).reason

    assert [park(pay(ALICE, n, fee=1_000)) for n in range(3)] == ["parked"] * 3
    assert park(pay(BOB, 0, fee=1_000)) == "parked_full", "no more than the lowest: refused"
    assert park(pay(BOB, 0, fee=1_500)) == "parked"
    assert pool.parked_count == 3
    assert park(pay(CAROL, 0, fee=1_200)) == "parked"
    assert park(pay(CAROL, 1, fee=1_100)) == "parked"
    assert park(pay(DAVE, 0, fee=1_100)) == "parked_full", "the lowest left pays 1,100"
    assert set(pool._parked) == {(BOB.public_key, 0), (CAROL.public_key, 0), (CAROL.public_key, 1)}
    assert pool.parked_count == 3 and pool._parked_bytes == sum(len(p.data) for p in pool._parked.values())
