"""Dynamic registration burn: it rises with registrations in an interval, decays without them, and
an interval accepts a bounded number of registrations, so evicting a subnet's miners gets dearer."""

from __future__ import annotations

from p2pnode.chain.genesis import GenesisSubnet
from p2pnode.chain.params import TAO
from p2pnode.chain.subnets import adjusted_burn
from p2pnode.chain.types import Register
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.api.views import subnets_view
from p2pnode.testing.factories import bound, make_genesis
from p2pnode.testing.harness import ChainHarness

OWNER_COLD, OWNER_HOT = dev_keypair("burn-owner-cold"), dev_keypair("burn-owner-hot")
COLD = dev_keypair("burn-cold")
HOTS = [dev_keypair(f"burn-hot-{i}") for i in range(8)]
HYPER = {"adjustment_interval": 10, "target_regs_per_interval": 1, "max_regs_per_interval": 3,
         "registration_burn": 1 * TAO, "min_burn": TAO // 4, "max_burn": 3 * TAO, "immunity_period": 0}


def test_the_adjustment_rule() -> None:
    hp = {"target_regs_per_interval": 2, "min_burn": 100, "max_burn": 10_000}
    assert adjusted_burn(1_000, 2, hp) == 1_000  # at the target: unchanged
    assert adjusted_burn(1_000, 6, hp) == 2_000  # three times the target: doubled
    assert adjusted_burn(1_000, 0, hp) == 500  # none: halved
    assert adjusted_burn(150, 0, hp) == 100 and adjusted_burn(9_000, 100, hp) == 10_000  # clamped


def register(h: ChainHarness, i: int) -> object:
    return h.tx(COLD, Register(netuid=1, hotkey=HOTS[i].public_key, max_burn=10 * TAO, hotkey_sig=bound(HOTS[i], COLD)))


def test_burn_rises_with_demand_is_capped_per_interval_and_decays() -> None:
    subnet = GenesisSubnet(OWNER_COLD.public_key, OWNER_HOT.public_key, "text", HYPER)
    h = ChainHarness(make_genesis(4, 1, subnets=(subnet,), extra_balances=((COLD.public_key, 1_000 * TAO),)))
    assert h.state.subnet(1).registration_burn == 1 * TAO
    burned = h.state.supply().burned
    h.block([register(h, 0), register(h, 1), register(h, 2)])
    assert h.state.supply().burned == burned + 3 * TAO
    assert h.reject_reason(register(h, 3)) == "too_many_registrations"
    while h.height < 10:  # the interval ends: 3 registrations against a target of 1
        h.block()
    assert h.state.subnet(1).registration_burn == 2 * TAO
    view = next(s for s in subnets_view(h.state) if s["netuid"] == 1)
    assert view["registration_burn"] == 2 * TAO and view["registrations_this_interval"] == 0
    balance = h.state.balance(COLD.public_key)
    h.block([register(h, 3)])
    assert h.state.balance(COLD.public_key) == balance - 2 * TAO - 1_000
    assert h.reject_reason(h.tx(COLD, Register(netuid=1, hotkey=HOTS[4].public_key, max_burn=TAO,
                                               hotkey_sig=bound(HOTS[4], COLD)))) == "burn_too_high"
    while h.height < 20:  # one registration, the target: unchanged
        h.block()
    assert h.state.subnet(1).registration_burn == 2 * TAO
    while h.height < 50:  # three quiet intervals: halved each time, never below min_burn
        h.block()
    assert h.state.subnet(1).registration_burn == TAO // 4
