"""Governance: proposals, stake-weighted votes, tally, enactment and protocol upgrades."""

from __future__ import annotations

import dataclasses

import pytest

from p2pnode.chain import governance, statekeys, transition
from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.params import TAO
from p2pnode.chain.types import AddStake, GovVote, Propose, RemoveStake, Transfer
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import bound, make_genesis, validator_keys
from p2pnode.testing.harness import ChainHarness

VALS = validator_keys(4)  # each coldkey has 1,000 TAO staked on its hotkey at genesis
OUTSIDER = dev_keypair("outsider")
GOV = {"voting_period": 10, "enactment_delay": 5, "proposal_deposit": 10 * TAO, "quorum_permille": 300,
       "pass_permille": 500}


def harness() -> ChainHarness:
    return ChainHarness(make_genesis(4, 2, params=GOV, extra_balances=((OUTSIDER.public_key, 10_000 * TAO),)))


def propose(h: ChainHarness, key=None, **fields) -> int:
    body = dict(action="signal", param="", value=0, owner=b"", task="", version=0, activation_height=0, text="")
    body.update(fields)
    h.block([h.tx(key or VALS[0][0], Propose(**body))])
    return h.state.global_value("next_proposal") - 1


def vote(h: ChainHarness, who: int, proposal: int, choice: str) -> None:
    h.block([h.tx(VALS[who][0], GovVote(proposal=proposal, choice=choice))])


def run_until(h: ChainHarness, height: int) -> None:
    while h.height < height:
        h.block()


def test_passing_parameter_change_takes_effect_at_enactment() -> None:
    h = harness()
    pid = propose(h, action="set_param", param="min_fee", value=5_000)
    vote(h, 0, pid, "yes")
    vote(h, 1, pid, "yes")
    prop = governance.proposal(h.state, pid)
    run_until(h, prop.end)
    assert governance.proposal(h.state, pid).status == "passed"
    run_until(h, prop.enact_at - 1)
    assert h.state.param("min_fee") == 1_000
    h.block()
    assert h.state.param("min_fee") == 5_000
    assert governance.proposal(h.state, pid).status == "enacted"
    assert h.reject_reason(h.tx(OUTSIDER, Transfer(to=VALS[0][0].public_key, amount=1), fee=4_999)) == "fee_too_low"


def test_failing_proposal_returns_deposit() -> None:
    h = harness()
    balance = h.state.balance(VALS[0][0].public_key)
    pid = propose(h, action="set_param", param="min_fee", value=5_000)
    vote(h, 0, pid, "yes")
    vote(h, 1, pid, "no")
    vote(h, 2, pid, "no")
    run_until(h, governance.proposal(h.state, pid).enact_at + 1)
    assert governance.proposal(h.state, pid).status == "rejected"
    assert h.state.param("min_fee") == 1_000
    assert h.state.balance(VALS[0][0].public_key) == balance - 2 * 1_000  # two fees, deposit returned
    assert h.conservation()[0] == h.conservation()[1]


def test_under_quorum_burns_deposit() -> None:
    h = harness()
    outsider_hot = dev_keypair("outsider-hot")
    h.block([h.tx(OUTSIDER, AddStake(hotkey=outsider_hot.public_key, amount=1 * TAO,
                                     hotkey_sig=bound(outsider_hot, OUTSIDER)))])
    burned = h.state.supply().burned
    pid = propose(h, key=OUTSIDER, text="more cake")
    h.block([h.tx(OUTSIDER, GovVote(proposal=pid, choice="yes"))])  # 1 TAO of 4,001 staked
    run_until(h, governance.proposal(h.state, pid).end)
    assert governance.proposal(h.state, pid).status == "no_quorum"
    assert h.state.supply().burned == burned + GOV["proposal_deposit"]
    assert h.conservation()[0] == h.conservation()[1]


def test_a_later_vote_replaces_the_earlier_one() -> None:
    h = harness()
    pid = propose(h, text="signal")
    vote(h, 0, pid, "yes")
    vote(h, 0, pid, "no")
    prop = governance.proposal(h.state, pid)
    assert (prop.yes, prop.no, prop.voters) == (0, 1_000 * TAO, 1)


def test_stake_moved_during_a_vote_cannot_count_twice() -> None:
    h = harness()
    pid = propose(h, text="signal")
    vote(h, 0, pid, "yes")
    hot = VALS[0][1].public_key
    reason = h.reject_reason(h.tx(VALS[0][0], RemoveStake(hotkey=hot, amount=1 * TAO)))
    assert reason == "stake_locked_by_vote"
    run_until(h, governance.proposal(h.state, pid).end + 1)
    h.block([h.tx(VALS[0][0], RemoveStake(hotkey=hot, amount=1 * TAO))])  # unlocked after the vote


def test_votes_after_the_end_and_on_unknown_proposals_are_refused() -> None:
    h = harness()
    pid = propose(h, text="x")
    assert h.reject_reason(h.tx(VALS[0][0], GovVote(proposal=99, choice="yes"))) == "unknown_proposal"
    assert h.reject_reason(h.tx(OUTSIDER, GovVote(proposal=pid, choice="yes"))) == "no_stake"
    run_until(h, governance.proposal(h.state, pid).end + 1)
    assert h.reject_reason(h.tx(VALS[0][0], GovVote(proposal=pid, choice="yes"))) == "voting_closed"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (dict(action="set_param", param="min_fee", value=10**13), "param_out_of_bounds"),
        (dict(action="set_param", param="nonsense", value=1), "param_out_of_bounds"),
        (dict(action="set_param", param="protocol_version", value=2), "invalid_proposal"),
        # slots and epochs are counted from genesis with these: a change would stop restarted nodes
        (dict(action="set_param", param="slot_ms", value=2_000), "immutable_param"),
        (dict(action="set_param", param="epoch_slots", value=16), "immutable_param"),
        (dict(action="upgrade", version=1, activation_height=1000), "invalid_proposal"),
        (dict(action="upgrade", version=2, activation_height=3), "invalid_proposal"),
        (dict(action="create_subnet", owner=bytes(32), task="text"), "invalid_proposal"),
        (dict(action="signal"), "invalid_proposal"),
    ],
)
def test_invalid_proposals(fields: dict, reason: str) -> None:
    h = harness()
    body = dict(action="signal", param="", value=0, owner=b"", task="", version=0, activation_height=0, text="")
    body.update(fields)
    assert h.reject_reason(h.tx(VALS[0][0], Propose(**body))) == reason


def test_create_subnet_by_governance() -> None:
    h = harness()
    owner_hot = VALS[3][1].public_key
    pid = propose(h, action="create_subnet", owner=owner_hot, task="forecast")
    for i in range(3):
        vote(h, i, pid, "yes")
    run_until(h, governance.proposal(h.state, pid).enact_at)
    s = h.state
    assert governance.proposal(s, pid).status == "enacted"
    assert s.subnet(1).owner_coldkey == VALS[3][0].public_key and s.subnet(1).task == "forecast"


def test_upgrade_switches_behaviour_exactly_at_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness()
    activation = h.height + 1 + GOV["voting_period"] + GOV["enactment_delay"] + 5
    pid = propose(h, action="upgrade", version=2, activation_height=activation)
    for i in range(3):
        vote(h, i, pid, "yes")
    run_until(h, activation - 2)
    assert governance.pending_upgrade(h.state) == [activation, 2]
    before = h.state.supply().burned
    h.block([h.tx(OUTSIDER, Transfer(to=VALS[0][0].public_key, amount=1), fee=5_000)])  # height activation-1
    assert h.state.supply().burned == before  # version 1: the fee paid the proposer
    assert h.state.param("protocol_version") == 2
    # a node that does not support version 2 refuses the block at the activation height
    snapshot = (dict(h.reader.data), h.acc, h.height, h.slot, h.parent)
    monkeypatch.setattr(transition, "SUPPORTED_PROTOCOL_VERSIONS", frozenset({1}))
    with pytest.raises(BlockInvalid, match="unsupported_version"):
        h.block()
    monkeypatch.undo()
    h.reader.data, h.acc, h.height, h.slot, h.parent = snapshot
    h.block([h.tx(OUTSIDER, Transfer(to=VALS[0][0].public_key, amount=1), fee=5_000)])  # height activation
    assert h.height == activation
    assert h.state.supply().burned == before + 5_000  # version 2: fees are burned
    assert h.conservation()[0] == h.conservation()[1]


def test_a_passed_proposal_never_changes_slot_timing_at_enactment() -> None:
    # Defence in depth: even a stored proposal that names slot_ms (e.g. from before the rule) fails.
    h = harness()
    pid = propose(h, action="set_param", param="min_fee", value=5_000)
    s = h.state
    prop = governance.proposal(s, pid)
    s.put(statekeys.proposal(pid), dataclasses.replace(prop, param="slot_ms", value=2_000).to_state())
    h.acc = s.accumulator()
    h.reader.apply(s.changes())
    vote(h, 0, pid, "yes")
    vote(h, 1, pid, "yes")
    run_until(h, prop.enact_at)
    after = governance.proposal(h.state, pid)
    assert after.status == "failed" and "genesis" in after.result
    assert h.state.param("slot_ms") == 1_000
