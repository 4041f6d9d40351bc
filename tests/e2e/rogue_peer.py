"""A rogue peer for the e2e tests: joins a network and floods it with invalid gossip.

It publishes garbage bytes and a block with a bad signature on the blocks topic, transactions with
bad signatures on the txs topic, and messages over the size limit, until it is cut off. Prints its
PeerID first, then one line per round.
Usage: rogue_peer.py GENESIS_CHAIN_ID BOOTSTRAP_MULTIADDR
"""

from __future__ import annotations

import os
import sys

import trio

from p2pnode.chain.types import Transfer
from p2pnode.net.host import LibP2PNetwork
from p2pnode.testing.factories import signed, user_keys
from protocols import codec, topics
from protocols.network import Verdict


async def main(chain_id: str, bootstrap: str) -> None:
    net = LibP2PNetwork(os.urandom(32), bootstrap=[bootstrap])
    names = {kind: topics.topic(chain_id, kind) for kind in topics.TOPIC_KINDS}

    async def ignore(peer: str, data: bytes) -> None:
        return None

    for name in names.values():
        net.subscribe(name, lambda peer, data: Verdict.ACCEPT, ignore)
    forged = signed(user_keys(1)[0], 0, Transfer(to=bytes(32), amount=1), chain_id=chain_id)
    bad_sig = codec.encode(type(forged)(tx=forged.tx, sig=bytes(64)))
    async with net:
        print(net.peer_id, flush=True)
        for round_no in range(10_000):
            for payload, kind in ((os.urandom(200), "blocks"), (bad_sig, "stake"), (b"\xa0" * 700_000, "blocks")):
                try:
                    # straight to pubsub: the adapter's own size check would stop the oversized one
                    await net.pubsub.publish(names[kind], payload + round_no.to_bytes(4, "big"))
                except Exception as exc:  # the rogue keeps going whatever happens
                    print(f"publish failed: {type(exc).__name__}", flush=True)
            print(f"round {round_no} peers {len(net.connected_peers())}", flush=True)
            await trio.sleep(0.2)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
