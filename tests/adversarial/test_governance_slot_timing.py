"""Issue 13 item 10: governance cannot halt the chain by changing how slots are counted.

At c068d92 a proposal could set `slot_ms` or `epoch_slots`; a node restarted after enactment counted
slots from genesis with the new value and proposed nothing for as long as the chain had existed.
Both are now fixed at genesis: the proposal is refused, even when every validator would vote for it,
and the parameters stay what genesis said.
"""

from __future__ import annotations

import pytest

from p2pnode.chain.types import Propose
from p2pnode.testing.factories import make_genesis, validator_keys
from p2pnode.testing.harness import ChainHarness

VALS = validator_keys(4)
GOV = {"voting_period": 10, "enactment_delay": 5, "quorum_permille": 300, "pass_permille": 500}


@pytest.mark.parametrize(("param", "value"), [("slot_ms", 2_000), ("slot_ms", 1), ("epoch_slots", 16), ("epoch_slots", 1)])
def test_slot_timing_cannot_be_changed_by_governance(param: str, value: int) -> None:
    h = ChainHarness(make_genesis(4, 2, params=GOV))
    before = h.state.param(param)
    body = Propose(action="set_param", param=param, value=value, owner=b"", task="", version=0,
                   activation_height=0, text="")
    for cold, _ in VALS:  # any validator, whatever its stake
        assert h.reject_reason(h.tx(cold, body)) == "immutable_param"
    for _ in range(GOV["voting_period"] + GOV["enactment_delay"] + 2):
        h.block()
    assert h.state.param(param) == before
