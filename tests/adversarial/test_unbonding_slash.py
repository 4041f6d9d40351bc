"""An offender cannot withdraw its stake before the evidence against it lands: removed stake waits
`unbonding_blocks` (longer than the evidence window) and a slashing meanwhile burns its share."""

from __future__ import annotations

from p2pnode.chain import consensus, unbonding
from p2pnode.chain.params import GLOBAL_PARAMS, TAO
from p2pnode.chain.types import Header, RemoveStake, SignedHeader, SlashDoubleProposal, body_root
from p2pnode.testing.factories import make_genesis, validator_keys
from p2pnode.testing.harness import ChainHarness

VALS = validator_keys(4)
OFFENDER_COLD, OFFENDER_HOT = VALS[0]
REPORTER = VALS[1][0]
UNBONDING = GLOBAL_PARAMS["unbonding_blocks"].low


def harness() -> ChainHarness:
    return ChainHarness(make_genesis(4, 1, params={"unbonding_blocks": UNBONDING}))


def evidence(slot: int) -> SlashDoubleProposal:
    """Two different headers of the offender for one slot (the chain core never checks signatures)."""
    def header(state_root: bytes) -> SignedHeader:
        h = Header(chain="p2pnode-test", version=1, height=slot, slot=slot, parent=bytes(32),
                   proposer=OFFENDER_HOT.public_key, state_root=state_root, tx_root=body_root((), ()),
                   timestamp_ms=slot * 1000, randao_reveal=bytes(64))
        return SignedHeader(header=h, sig=bytes(64))

    return SlashDoubleProposal(first=header(b"\x01" * 32), second=header(b"\x02" * 32))


def test_the_evidence_window_is_shorter_than_any_unbonding_delay() -> None:
    assert GLOBAL_PARAMS["evidence_max_age_slots"].high < GLOBAL_PARAMS["unbonding_blocks"].low


def test_removed_stake_is_paid_only_after_the_delay() -> None:
    h = harness()
    cold = OFFENDER_COLD.public_key
    balance, locked = h.state.balance(cold), h.state.supply().locked
    h.block([h.tx(OFFENDER_COLD, RemoveStake(hotkey=OFFENDER_HOT.public_key, amount=100 * TAO))])
    removed_at = h.height
    assert h.state.balance(cold) == balance - 1_000  # only the fee: the stake is not paid yet
    assert h.state.supply().locked == locked + 100 * TAO
    assert unbonding.unbonding_of(h.state, cold, OFFENDER_HOT.public_key) == (100 * TAO, removed_at + UNBONDING)
    while h.height < removed_at + UNBONDING - 1:
        h.block()
    assert h.state.balance(cold) == balance - 1_000
    h.block()
    assert h.state.balance(cold) == balance - 1_000 + 100 * TAO
    assert h.state.supply().locked == locked
    assert unbonding.entries(h.state, OFFENDER_HOT.public_key) == []
    assert h.conservation()[0] == h.conservation()[1]


def test_evidence_landing_during_unbonding_slashes_the_withdrawn_stake_too() -> None:
    h = harness()
    cold, hot = OFFENDER_COLD.public_key, OFFENDER_HOT.public_key
    h.block()
    offence_slot = h.slot
    staked = h.state.stake(cold, hot)
    # The offender equivocates, then withdraws everything before anyone reports it.
    h.block([h.tx(OFFENDER_COLD, RemoveStake(hotkey=hot, amount=staked))])
    removed_at = h.height
    assert h.state.stake(cold, hot) == 0
    permille = h.state.param("slash_permille")
    for _ in range(h.state.param("evidence_max_age_slots") - 3):
        h.block()
    burned_before = h.state.supply().burned
    h.block([h.tx(REPORTER, evidence(offence_slot))])
    cut = staked * permille // 1000
    assert h.state.supply().burned == burned_before + cut
    assert unbonding.unbonding_of(h.state, cold, hot) == (staked - cut, removed_at + UNBONDING)
    balance = h.state.balance(cold)
    while h.height < removed_at + UNBONDING:
        h.block()
    assert h.state.balance(cold) == balance + staked - cut
    assert h.conservation()[0] == h.conservation()[1]


def test_evidence_older_than_the_window_is_refused() -> None:
    h = harness()
    h.block()
    offence_slot = h.slot
    for _ in range(h.state.param("evidence_max_age_slots")):
        h.block()
    assert h.reject_reason(h.tx(REPORTER, evidence(offence_slot))) == "evidence_expired"
    h.block([h.tx(REPORTER, evidence(offence_slot + 1))])  # one slot younger: just inside the window
    assert consensus.is_slashed(h.state, OFFENDER_HOT.public_key)
