"""One module owns the state-key layout: every key the chain writes belongs to one of its tables."""

from __future__ import annotations

from p2pnode.chain import statekeys
from p2pnode.chain.genesis import GenesisSubnet
from p2pnode.chain.params import TAO
from p2pnode.chain.subnets import commit_hash
from p2pnode.chain.types import AddStake, CommitWeights, GovVote, Propose, Register, RemoveStake, Serve
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import bound, make_genesis, validator_keys
from p2pnode.testing.harness import ChainHarness

OWNER_COLD, OWNER_HOT = dev_keypair("keys-owner-cold"), dev_keypair("keys-owner-hot")
COLD, HOT = dev_keypair("keys-cold"), dev_keypair("keys-hot")
VALS = validator_keys(4)


def test_tables_are_distinct_and_no_table_is_a_prefix_of_another() -> None:
    assert len(set(statekeys.TABLES)) == len(statekeys.TABLES)
    for a in statekeys.TABLES:
        for b in statekeys.TABLES:
            assert a == b or not b.startswith(a), (a, b)


def test_every_key_a_busy_chain_writes_belongs_to_a_table() -> None:
    subnet = GenesisSubnet(OWNER_COLD.public_key, OWNER_HOT.public_key, "text", {"tempo": 5, "immunity_period": 0})
    h = ChainHarness(make_genesis(4, 1, subnets=(subnet,), extra_balances=((COLD.public_key, 10_000 * TAO),)))
    h.block([h.tx(COLD, Register(netuid=1, hotkey=HOT.public_key, max_burn=10 * TAO, hotkey_sig=bound(HOT, COLD)))])
    h.block([h.tx(COLD, AddStake(hotkey=HOT.public_key, amount=100 * TAO)),
             h.tx(HOT, Serve(netuid=1, peer_id="12D3KooWkeys", model="m"), fee=0)])
    digest = commit_hash(HOT.public_key, 1, [1], [1], b"salt", 0)
    h.block([h.tx(HOT, CommitWeights(netuid=1, commit_hash=digest), fee=0),
             h.tx(COLD, RemoveStake(hotkey=HOT.public_key, amount=10 * TAO)),
             h.tx(VALS[0][0], Propose(action="signal", param="", value=0, owner=b"", task="", version=0,
                                      activation_height=0, text="hello"))])
    h.block([h.tx(VALS[0][0], GovVote(proposal=1, choice="yes"))])
    h.blocks(12)
    tables = {statekeys.table_of(key) for key in h.reader.data}
    assert None not in tables
    for table in (statekeys.ACCOUNT, statekeys.STAKE, statekeys.SUBNET, statekeys.NEURON, statekeys.UID,
                  statekeys.COMMITS, statekeys.PROPOSAL, statekeys.VOTE, statekeys.VOTE_LOCK,
                  statekeys.UNBONDING, statekeys.UNBONDING_DUE, statekeys.FREE_DUTY, statekeys.GLOBAL):
        assert table in tables, table
