"""Commits blocks of transfers to a store forever, printing each committed height (crash-test child)."""

from __future__ import annotations

import sys

from p2pnode.chain import consensus
from p2pnode.chain.types import Transfer
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys


def main(path: str) -> None:
    db = open_chain(path, make_genesis(4, 4))
    users = user_keys(4)
    hots = {hot.public_key: hot for _, hot in validator_keys(4)}
    while True:
        state = db.head_state()
        slot = db.head.slot + 1
        sender = users[slot % 4]
        nonce = state.nonce(sender.public_key)
        txs = [signed(sender, nonce + i, Transfer(to=users[(slot + i) % 4 or 1].public_key, amount=1 + i)) for i in range(20)]
        block = db.build_block(hots[consensus.proposer_for_slot(state, slot)], slot, txs)
        db.import_block(block)
        print(db.head.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
