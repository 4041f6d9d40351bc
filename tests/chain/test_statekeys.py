"""One module owns the state-key layout: every key the chain writes belongs to one of its tables."""

from __future__ import annotations

from p2pnode.chain import statekeys
from p2pnode.testing.harness import busy_chain


def test_tables_are_distinct_and_no_table_is_a_prefix_of_another() -> None:
    assert len(set(statekeys.TABLES)) == len(statekeys.TABLES)
    for a in statekeys.TABLES:
        for b in statekeys.TABLES:
            assert a == b or not b.startswith(a), (a, b)


def test_every_key_a_busy_chain_writes_belongs_to_a_table() -> None:
    h = busy_chain("keys")
    tables = {statekeys.table_of(key) for key in h.reader.data}
    assert None not in tables
    for table in (statekeys.ACCOUNT, statekeys.STAKE, statekeys.SUBNET, statekeys.NEURON, statekeys.UID,
                  statekeys.COMMITS, statekeys.PROPOSAL, statekeys.VOTE, statekeys.VOTE_LOCK,
                  statekeys.UNBONDING, statekeys.UNBONDING_DUE, statekeys.FREE_DUTY, statekeys.GLOBAL):
        assert table in tables, table
