"""A neuron's duties (serve, set/commit/reveal weights) need no fee: a fresh hotkey with no balance
serves and sets weights; fee-free transactions are bounded by a per-hotkey rate limit instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain.context import BlockContext
from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.genesis import GenesisSubnet
from p2pnode.chain.params import TAO
from p2pnode.chain.types import Register, Serve, SetWeights, SignedTx, Transfer, make_tx
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain.mempool import Mempool
from p2pnode.testing.factories import bound, make_genesis, open_chain, signed, validator_keys
from p2pnode.testing.harness import ChainHarness
from protocols import codec

OWNER_COLD, OWNER_HOT = dev_keypair("duty-owner-cold"), dev_keypair("duty-owner-hot")
COLD, FRESH_HOT = dev_keypair("duty-cold"), dev_keypair("duty-fresh-hot")
FAST = {"tempo": 10, "commit_reveal_enabled": 0, "weights_rate_limit": 0, "immunity_period": 0}


def genesis():  # noqa: ANN201
    funded = tuple((k.public_key, 1_000 * TAO) for k in (OWNER_COLD, COLD))
    subnet = GenesisSubnet(OWNER_COLD.public_key, OWNER_HOT.public_key, "text", FAST)
    return make_genesis(4, 1, subnets=(subnet,), extra_balances=funded)


def registered_harness() -> ChainHarness:
    h = ChainHarness(genesis())
    h.block([h.tx(COLD, Register(netuid=1, hotkey=FRESH_HOT.public_key, max_burn=10 * TAO,
                                 hotkey_sig=bound(FRESH_HOT, COLD)))])
    assert h.state.balance(FRESH_HOT.public_key) == 0
    return h


def test_a_fresh_hotkey_with_no_balance_serves_and_sets_weights() -> None:
    h = registered_harness()
    hot = FRESH_HOT.public_key
    h.block([h.tx(FRESH_HOT, Serve(netuid=1, peer_id="12D3KooWfresh", model="text-bigram"), fee=0)])
    h.block([h.tx(FRESH_HOT, SetWeights(netuid=1, uids=(1,), values=(65535,), version_key=0), fee=0)])
    state = h.state
    uid = state.uid_of(1, hot)
    assert state.neuron(1, uid).peer_id == "12D3KooWfresh"
    assert state.neuron(1, uid).weights == ((1, 65535),)
    assert state.balance(hot) == 0 and state.nonce(hot) == 2
    assert h.conservation()[0] == h.conservation()[1]


def test_fee_free_duties_are_rate_limited_per_hotkey_and_other_kinds_still_pay() -> None:
    h = registered_harness()
    serve = Serve(netuid=1, peer_id="12D3KooWfresh", model="m")
    weights = SetWeights(netuid=1, uids=(1,), values=(1,), version_key=0)
    h.block([h.tx(FRESH_HOT, serve, fee=0)])
    # a second fee-free duty in the same block is refused; the next block takes it
    with pytest.raises(BlockInvalid, match="free_duty_rate_limited"):
        h.block([h.tx(FRESH_HOT, serve, fee=0), h.tx(FRESH_HOT, weights, fee=0)])
    assert h.reject_reason(h.tx(FRESH_HOT, Transfer(to=COLD.public_key, amount=0), fee=0)) == "fee_too_low"
    assert h.reject_reason(h.tx(COLD, Transfer(to=FRESH_HOT.public_key, amount=1), fee=999)) == "fee_too_low"
    # a hotkey that pays the minimum fee is not held to the fee-free interval
    h.block([h.tx(COLD, Transfer(to=FRESH_HOT.public_key, amount=1 * TAO))])
    h.block([h.tx(FRESH_HOT, serve, fee=0), h.tx(FRESH_HOT, weights, fee=1_000)])
    assert h.state.balance(FRESH_HOT.public_key) == 1 * TAO - 1_000


def test_the_mempool_admits_a_fee_free_duty_from_an_empty_account(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "chain.db", genesis())
    validators = {hot.public_key: hot for _, hot in validator_keys(4)}
    from p2pnode.chain import consensus

    proposer = validators[consensus.proposer_for_slot(chain.head_state(), 1)]  # type: ignore[index]
    register = signed(COLD, 0, Register(netuid=1, hotkey=FRESH_HOT.public_key, max_burn=10 * TAO,
                                        hotkey_sig=bound(FRESH_HOT, COLD)))
    chain.import_block(chain.build_block(proposer, 1, [register]))
    state = chain.head_state()
    ctx = BlockContext(height=chain.head.height + 1, slot=2, proposer=bytes(32), timestamp_ms=0)
    pool = Mempool()
    tx = make_tx(state.chain_id, FRESH_HOT.public_key, 0, 0, Serve(netuid=1, peer_id="12D3KooWfresh", model="m"))
    serve = SignedTx(tx=tx, sig=FRESH_HOT.sign(tx.signing_bytes()))
    assert pool.add(codec.encode(serve), state, ctx, 0).reason == "added"
    tx = make_tx(state.chain_id, FRESH_HOT.public_key, 1, 0, Transfer(to=COLD.public_key, amount=0))
    assert pool.add(codec.encode(SignedTx(tx=tx, sig=FRESH_HOT.sign(tx.signing_bytes()))), state, ctx, 0).reason == "fee_too_low"
