"""Where a submitted transaction is (what `p2pnode transfer` and friends wait on): pending, pending
but failing now (and why), included (and finalized or not), or unknown."""

from __future__ import annotations

from pathlib import Path

from p2pnode.chain import consensus
from p2pnode.chain.genesis import GenesisSubnet
from p2pnode.chain.params import TAO
from p2pnode.chain.types import Register, SignedTx, Transfer
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.clock import TrioClock
from p2pnode.testing.factories import bound, make_genesis, open_chain, signed, user_keys, validator_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec

OWNER_COLD, OWNER_HOT = dev_keypair("status-owner-cold"), dev_keypair("status-owner-hot")
COLD_A, HOT_A = dev_keypair("status-cold-a"), dev_keypair("status-hot-a")
COLD_B, HOT_B = dev_keypair("status-cold-b"), dev_keypair("status-hot-b")
PROPOSERS = {hot.public_key: hot for _, hot in validator_keys(4)}
# One registration per (long) interval.
TIGHT = {"max_regs_per_interval": 1, "adjustment_interval": 1000, "commit_reveal_enabled": 0}


def produce(node: ChainService, txs: list[SignedTx]) -> None:
    """A block by the slot's proposer holding exactly `txs` (not the node's mempool)."""
    chain = node.chain
    slot = chain.head.slot + 1
    proposer = PROPOSERS[consensus.proposer_for_slot(chain.head_state(), slot)]
    chain.import_block(chain.build_block(proposer, slot, txs))
    node.mempool.remove_applied(chain.head_state())


async def test_pending_failing_included_and_unknown(tmp_path: Path) -> None:
    extra = tuple((k.public_key, 1_000 * TAO) for k in (OWNER_COLD, COLD_A, COLD_B))
    genesis = make_genesis(4, 2, subnets=(GenesisSubnet(OWNER_COLD.public_key, OWNER_HOT.public_key, "text", TIGHT),),
                           extra_balances=extra)
    node = ChainService(open_chain(tmp_path / "chain.sqlite", genesis), MemoryHub().add_peer("status-peer"), TrioClock())
    mine = signed(COLD_A, 0, Register(netuid=1, hotkey=HOT_A.public_key, max_burn=10 * TAO,
                                      hotkey_sig=bound(HOT_A, COLD_A)))
    admission = await node.submit_tx(codec.encode(mine))
    assert admission.added
    assert node.tx_status(admission.tx_id, 0) == {"status": "pending", "problem": None}

    # Someone else's registration takes the interval's only slot first: ours would now be refused.
    produce(node, [signed(COLD_B, 0, Register(netuid=1, hotkey=HOT_B.public_key, max_burn=10 * TAO,
                                              hotkey_sig=bound(HOT_B, COLD_B)))])
    assert node.tx_status(admission.tx_id, 0) == {"status": "pending", "problem": "too_many_registrations"}

    # A later nonce waits for the earlier one, and says so.
    later = await node.submit_tx(codec.encode(signed(COLD_A, 1, Transfer(to=COLD_B.public_key, amount=1))))
    assert later.added
    assert node.tx_status(later.tx_id, 0) == {"status": "pending", "problem": "waiting for nonce 0 of the sender first"}

    # Included: found in the canonical chain from `since` on, with its block; not finalized yet.
    alice, bob = user_keys(2)
    transfer = signed(alice, 0, Transfer(to=bob.public_key, amount=5))
    assert (await node.submit_tx(codec.encode(transfer))).added
    since = node.chain.head.height
    produce(node, [transfer])
    status = node.tx_status(transfer.id, since)
    assert status == {"status": "included", "height": since + 1, "block": node.chain.head.hash.hex(), "finalized": False}
    # Looking only after its block, or for an id nobody sent: unknown.
    assert node.tx_status(transfer.id, since + 2) == {"status": "unknown"}
    assert node.tx_status(bytes(32), 0) == {"status": "unknown"}
