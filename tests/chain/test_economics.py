"""Subnet economics as state transitions, emission, and conservation of every rao."""

from __future__ import annotations

import random

import pytest

from p2pnode.chain.emission import block_emission
from p2pnode.chain.params import TAO
from p2pnode.chain.subnet_epochs import root_shares
from p2pnode.chain.subnets import commit_hash
from p2pnode.chain.types import (
    AddStake,
    CommitWeights,
    CreateSubnet,
    Register,
    RemoveStake,
    RevealWeights,
    Serve,
    SetHyperparameter,
    SetTake,
    SetWeights,
    Transfer,
)
from p2pnode.testing.factories import SUBNET_OWNER_COLD, SUBNET_OWNER_HOT, bound, neuron_keys, subnet_genesis
from p2pnode.testing.harness import ChainHarness

OWNER_COLD, OWNER_HOT = SUBNET_OWNER_COLD, SUBNET_OWNER_HOT
COLD, HOT = neuron_keys(6)


def harness(hyper: dict[str, int] | None = None, **params: int) -> ChainHarness:
    return ChainHarness(subnet_genesis(6, hyper or {}, users=2, params=params))


def register_all(h: ChainHarness, n: int, netuid: int = 1) -> None:
    h.block([h.tx(COLD[i], Register(netuid=netuid, hotkey=HOT[i].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[i], COLD[i]))) for i in range(n)])


def test_halving_schedule() -> None:
    cap = 21_000_000 * TAO
    assert block_emission(0, TAO, cap) == TAO
    assert block_emission(cap // 2 - 1, TAO, cap) == TAO
    assert block_emission(cap // 2, TAO, cap) == TAO // 2
    assert block_emission(cap * 3 // 4, TAO, cap) == TAO // 4
    assert block_emission(cap, TAO, cap) == 0


def test_create_subnet_locks_cost_and_registers_owner() -> None:
    h = harness()
    before = h.state.balance(COLD[0].public_key)
    h.block([h.tx(COLD[0], CreateSubnet(hotkey=HOT[0].public_key, task="forecast", max_lock=1000 * TAO, hotkey_sig=bound(HOT[0], COLD[0])))])
    s = h.state
    assert s.netuids() == [0, 1, 2]
    sn = s.subnet(2)
    assert sn.owner_coldkey == COLD[0].public_key and sn.task == "forecast"
    assert s.uid_of(2, HOT[0].public_key) == 0
    lock = s.param("subnet_lock_cost")
    assert s.balance(COLD[0].public_key) == before - lock - 1_000
    assert s.supply().locked == lock
    assert h.reject_reason(h.tx(COLD[1], CreateSubnet(hotkey=HOT[1].public_key, task="text", max_lock=1, hotkey_sig=bound(HOT[1], COLD[1])))) == "lock_cost_too_high"
    assert h.reject_reason(h.tx(COLD[1], CreateSubnet(hotkey=HOT[1].public_key, task="poetry", max_lock=10**15, hotkey_sig=bound(HOT[1], COLD[1])))) == "unknown_task"
    assert h.reject_reason(h.tx(COLD[1], CreateSubnet(hotkey=HOT[0].public_key, task="text", max_lock=10**15, hotkey_sig=bound(HOT[0], COLD[1])))) == "not_hotkey_owner"


def test_registration_burns_and_assigns_uids() -> None:
    h = harness()
    burned = h.state.supply().burned
    register_all(h, 3)
    s = h.state
    assert [s.uid_of(1, HOT[i].public_key) for i in range(3)] == [1, 2, 3]
    assert s.supply().burned == burned + 3 * s.subnet(1).hyperparams["registration_burn"]
    assert h.reject_reason(h.tx(COLD[0], Register(netuid=1, hotkey=HOT[0].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[0], COLD[0])))) == "already_registered"
    assert h.reject_reason(h.tx(COLD[4], Register(netuid=1, hotkey=HOT[4].public_key, max_burn=1, hotkey_sig=bound(HOT[4], COLD[4])))) == "burn_too_high"
    assert h.reject_reason(h.tx(COLD[4], Register(netuid=9, hotkey=HOT[4].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[4], COLD[4])))) == "unknown_subnet"
    assert h.reject_reason(h.tx(COLD[4], Register(netuid=0, hotkey=HOT[0].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[0], COLD[4])))) == "not_hotkey_owner"


def test_full_subnet_replaces_lowest_emission_non_immune_uid() -> None:
    h = harness({"max_allowed_uids": 3, "immunity_period": 5})
    register_all(h, 2)  # uids 1, 2 (owner is uid 0)
    h.blocks(5)
    # give uid 1 emission so uid 2 is the lowest
    s = h.state
    neuron = s.neuron(1, 1)
    neuron.emission = 10
    s.set_neuron(1, 1, neuron)
    h.acc = s.accumulator()
    h.reader.apply(s.changes())
    h.block([h.tx(COLD[3], Register(netuid=1, hotkey=HOT[3].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[3], COLD[3])))])
    s = h.state
    assert s.uid_of(1, HOT[3].public_key) == 2
    assert s.uid_of(1, HOT[1].public_key) is None
    assert s.neuron(1, 2).registered_block == h.height
    # uid 2 is now immune and uid 1 is not: uid 1 goes next although its emission is higher
    h.block([h.tx(COLD[4], Register(netuid=1, hotkey=HOT[4].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[4], COLD[4])))])
    assert h.state.uid_of(1, HOT[4].public_key) == 1


def test_full_subnet_of_immune_uids_replaces_the_lowest_emission_one_never_the_owner() -> None:
    h = harness({"max_allowed_uids": 3, "immunity_period": 1000})
    register_all(h, 2)
    h.block([h.tx(COLD[3], Register(netuid=1, hotkey=HOT[3].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[3], COLD[3])))])
    s = h.state
    assert s.uid_of(1, HOT[3].public_key) == 1  # equal emission and age: the lowest uid
    assert s.uid_of(1, OWNER_HOT.public_key) == 0
    h2 = harness({"max_allowed_uids": 1})
    reason = h2.reject_reason(h2.tx(COLD[3], Register(netuid=1, hotkey=HOT[3].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[3], COLD[3]))))
    assert reason == "subnet_full"  # the only uid is the owner's


def test_the_chain_prunes_with_the_golden_tested_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from p2pnode.chain import subnets, yuma

    calls: list[tuple[object, ...]] = []
    golden = yuma.select_uid_to_prune

    def spy(*args: object, **kwargs: object) -> int | None:
        calls.append(args)
        return golden(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subnets.yuma, "select_uid_to_prune", spy)
    h = harness({"max_allowed_uids": 2})
    register_all(h, 1)
    h.block([h.tx(COLD[3], Register(netuid=1, hotkey=HOT[3].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[3], COLD[3])))])
    assert len(calls) == 1 and h.state.uid_of(1, HOT[3].public_key) == 1


def test_serve_announces_peer_id_and_model() -> None:
    h = harness()
    assert h.reject_reason(h.tx(HOT[0], Serve(netuid=1, peer_id="12D3KooWx", model="text-bigram"))) == "not_registered"
    register_all(h, 1)
    h.block([h.tx(HOT[0], Serve(netuid=1, peer_id="12D3KooWx", model="text-bigram"))])
    assert h.state.neuron(1, 1).peer_id == "12D3KooWx"


def test_set_weights_rules() -> None:
    h = harness({"min_allowed_weights": 2, "weights_rate_limit": 3, "weights_version_key": 5})
    register_all(h, 3)
    h.block([h.tx(COLD[0], AddStake(hotkey=HOT[0].public_key, amount=100 * TAO, hotkey_sig=bound(HOT[0], COLD[0])))])
    w = lambda uids, vals, v=5: SetWeights(netuid=1, uids=tuple(uids), values=tuple(vals), version_key=v)  # noqa: E731
    assert h.reject_reason(h.tx(HOT[0], w([1, 2], [1, 1]))) == "no_validator_permit"
    h.blocks(10)  # an epoch gives the staked uid a permit
    assert h.state.neuron(1, 1).validator_permit
    assert h.reject_reason(h.tx(HOT[0], w([2, 3], [1, 1], v=4))) == "version_key_too_low"
    assert h.reject_reason(h.tx(HOT[0], w([2], [1]))) == "too_few_weights"
    assert h.reject_reason(h.tx(HOT[0], w([2, 2], [1, 1]))) == "duplicate_uid"
    assert h.reject_reason(h.tx(HOT[0], w([2, 9], [1, 1]))) == "uid_out_of_range"
    assert h.reject_reason(h.tx(HOT[5], w([2, 3], [1, 1]))) == "not_registered"
    h.block([h.tx(HOT[0], w([3, 2], [100, 50]))])
    assert h.state.neuron(1, 1).weights == ((2, 32768), (3, 65535))  # sorted by uid, max-upscaled
    assert h.reject_reason(h.tx(HOT[0], w([2, 3], [1, 1]))) == "weights_rate_limited"
    h.blocks(3)
    h.block([h.tx(HOT[0], w([2, 3], [1, 1]))])


def test_max_weight_limit() -> None:
    h = harness({"max_weight_limit": 40000})
    register_all(h, 3)
    assert h.reject_reason(h.tx(OWNER_HOT, SetWeights(netuid=1, uids=(1, 2), values=(65535, 1), version_key=0))) == "weight_exceeds_max_limit"
    h.block([h.tx(OWNER_HOT, SetWeights(netuid=1, uids=(1, 2), values=(10, 10), version_key=0))])


def test_commit_then_reveal() -> None:
    h = harness({"commit_reveal_enabled": 1, "reveal_period_epochs": 1})
    register_all(h, 2)
    uids, vals, salt = (1, 2), (5, 10), b"pepper"
    digest = commit_hash(OWNER_HOT.public_key, 1, uids, vals, salt, 0)
    reveal = RevealWeights(netuid=1, uids=uids, values=vals, salt=salt, version_key=0)
    assert h.reject_reason(h.tx(OWNER_HOT, SetWeights(netuid=1, uids=uids, values=vals, version_key=0))) == "commit_reveal_enabled"
    h.block([h.tx(OWNER_HOT, CommitWeights(netuid=1, commit_hash=digest))])
    assert h.state.neuron(1, 0).last_update == h.height
    assert h.reject_reason(h.tx(OWNER_HOT, reveal)) == "reveal_too_early"
    wrong = RevealWeights(netuid=1, uids=uids, values=(5, 11), salt=salt, version_key=0)
    while h.state.subnet(1).epoch_index < 1:
        h.block()
    assert h.reject_reason(h.tx(OWNER_HOT, wrong)) == "no_matching_commit"
    assert h.state.neuron(1, 0).weights == ()  # unrevealed weights are never applied
    h.block([h.tx(OWNER_HOT, reveal)])
    assert h.state.neuron(1, 0).weights == ((1, 32768), (2, 65535))
    assert h.reject_reason(h.tx(OWNER_HOT, reveal)) == "no_matching_commit"


def test_expired_commits_are_dropped() -> None:
    h = harness({"commit_reveal_enabled": 1, "reveal_period_epochs": 1})
    register_all(h, 1)
    reveal = RevealWeights(netuid=1, uids=(1,), values=(1,), salt=b"s", version_key=0)
    h.block([h.tx(OWNER_HOT, CommitWeights(netuid=1, commit_hash=commit_hash(OWNER_HOT.public_key, 1, (1,), (1,), b"s", 0)))])
    start = h.state.subnet(1).epoch_index
    while h.state.subnet(1).epoch_index < start + 2:
        h.block()
    assert h.reject_reason(h.tx(OWNER_HOT, reveal)) == "no_matching_commit"


def test_hyperparameters_by_owner_within_bounds() -> None:
    h = harness()
    ok = SetHyperparameter(netuid=1, name="tempo", value=20)
    assert h.reject_reason(h.tx(COLD[0], ok)) == "not_subnet_owner"
    assert h.reject_reason(h.tx(OWNER_COLD, SetHyperparameter(netuid=1, name="tempo", value=1))) == "hyperparameter_out_of_bounds"
    assert h.reject_reason(h.tx(OWNER_COLD, SetHyperparameter(netuid=1, name="kappa", value=1))) == "hyperparameter_out_of_bounds"
    assert h.reject_reason(h.tx(OWNER_COLD, SetHyperparameter(netuid=1, name="nope", value=1))) == "hyperparameter_out_of_bounds"
    h.block([h.tx(OWNER_COLD, ok)])
    assert h.state.subnet(1).hyperparams["tempo"] == 20


def test_better_miner_earns_more_and_validators_earn_dividends() -> None:
    h = harness()
    register_all(h, 4)  # uids 1,2 validators (staked); 3,4 miners
    h.block([h.tx(COLD[0], AddStake(hotkey=HOT[0].public_key, amount=1000 * TAO, hotkey_sig=bound(HOT[0], COLD[0]))),
             h.tx(COLD[1], AddStake(hotkey=HOT[1].public_key, amount=500 * TAO, hotkey_sig=bound(HOT[1], COLD[1])))])
    h.blocks(10)  # first epoch: permits
    h.block([h.tx(HOT[0], SetWeights(netuid=1, uids=(3, 4), values=(60000, 20000), version_key=0)),
             h.tx(HOT[1], SetWeights(netuid=1, uids=(3, 4), values=(50000, 20000), version_key=0))])
    stake_before = {i: h.state.total_stake(HOT[i].public_key) for i in range(4)}
    h.blocks(30)
    s = h.state
    n3, n4 = s.neuron(1, 3), s.neuron(1, 4)
    assert n3.incentive > n4.incentive > 0
    gained = {i: s.total_stake(HOT[i].public_key) - stake_before[i] for i in range(4)}
    assert gained[2] > gained[3] > 0  # miners paid as stake, the better one more
    assert gained[0] > 0 and gained[1] > 0 and s.neuron(1, 1).dividends > 0
    total, expected = h.conservation()
    assert total == expected


def test_delegators_share_dividends_after_take() -> None:
    h = harness()
    register_all(h, 2)
    delegator = COLD[5]
    h.block([h.tx(COLD[0], AddStake(hotkey=HOT[0].public_key, amount=300 * TAO, hotkey_sig=bound(HOT[0], COLD[0]))),
             h.tx(delegator, AddStake(hotkey=HOT[0].public_key, amount=100 * TAO, hotkey_sig=bound(HOT[0], delegator))),
             h.tx(COLD[0], SetTake(hotkey=HOT[0].public_key, take=6553))])  # 10%
    h.blocks(10)
    h.block([h.tx(HOT[0], SetWeights(netuid=1, uids=(2,), values=(1,), version_key=0))])
    own0, del0 = h.state.stake(COLD[0].public_key, HOT[0].public_key), h.state.stake(delegator.public_key, HOT[0].public_key)
    h.blocks(20)
    own_gain = h.state.stake(COLD[0].public_key, HOT[0].public_key) - own0
    del_gain = h.state.stake(delegator.public_key, HOT[0].public_key) - del0
    assert del_gain > 0
    # the owner gets its 3/4 share plus the take: strictly more than 3x the delegator's gain
    assert own_gain > 3 * del_gain


def test_emission_split_equally_without_root_weights_then_by_root() -> None:
    h = harness()
    h.block([h.tx(COLD[0], CreateSubnet(hotkey=HOT[0].public_key, task="forecast", max_lock=10**15, hotkey_sig=bound(HOT[0], COLD[0])))])
    s = h.state
    assert root_shares(s, [1, 2]) == [2**31, 2**31]
    h.block([h.tx(COLD[1], Register(netuid=0, hotkey=HOT[1].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT[1], COLD[1]))),
             h.tx(COLD[1], AddStake(hotkey=HOT[1].public_key, amount=10 * TAO, hotkey_sig=bound(HOT[1], COLD[1])))])
    h.block([h.tx(HOT[1], SetWeights(netuid=0, uids=(1, 2), values=(3, 1), version_key=0))])
    shares = root_shares(h.state, [1, 2])
    assert shares[0] == 3 * shares[1] or abs(shares[0] - 3 * shares[1]) < 4


def test_conservation_over_a_long_randomised_run() -> None:
    rng = random.Random(7)
    h = harness({"tempo": 7})
    register_all(h, 5)
    keys = [*COLD[:5]]
    for _ in range(120):
        txs = []
        for cold_i in rng.sample(range(5), 2):
            action = rng.random()
            cold, hot = COLD[cold_i], HOT[cold_i]
            if action < 0.3:
                txs.append(h.tx(cold, AddStake(hotkey=HOT[rng.randrange(5)].public_key, amount=rng.randint(1, 50) * TAO)))
            elif action < 0.45 and h.state.stake(cold.public_key, hot.public_key) > TAO:
                txs.append(h.tx(cold, RemoveStake(hotkey=hot.public_key, amount=TAO)))
            elif action < 0.6:
                txs.append(h.tx(cold, Transfer(to=rng.choice(keys).public_key, amount=rng.randint(1, 10**9))))
            elif action < 0.8 and h.state.neuron(1, cold_i + 1).validator_permit:
                uids = tuple(sorted(rng.sample(range(6), 3)))
                txs.append(h.tx(hot, SetWeights(netuid=1, uids=uids, values=tuple(rng.randint(0, 65535) for _ in uids), version_key=0)))
        try:
            h.block(txs)
        except Exception:
            h.block()
        total, expected = h.conservation()
        assert total == expected, f"height {h.height}: off by {total - expected}"
    assert h.state.supply().emitted > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_two_runs_give_identical_roots(seed: int) -> None:
    roots = []
    for _ in range(2):
        h = harness()
        register_all(h, 3)
        h.block([h.tx(COLD[0], AddStake(hotkey=HOT[0].public_key, amount=seed * 100 * TAO, hotkey_sig=bound(HOT[0], COLD[0])))])
        h.blocks(25)
        roots.append(h.root())
    assert roots[0] == roots[1]
