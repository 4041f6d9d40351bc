"""Issue 13 item 1 against a real peer process on loopback: a libp2p peer that advertises a better
head and serves a block carrying a transaction whose chain id is 64 four-byte characters.

At c068d92 the syncing peer's process died of OverflowError (`signing_message` wrote the id's
UTF-8 length in one byte). Now the block is malformed at decoding, the server is penalised and the
peer goes on producing blocks and answering its API.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from test_sync_hostile_peer import EVIL, WIDE_CHAIN_ID

from p2pnode.chain import types as t
from p2pnode.net.host import LibP2PNetwork
from p2pnode.testing.live_peer import LivePeer, json_request, start_live_peer
from protocols import codec, sync, topics

pytestmark = pytest.mark.timeout(300)

SERVED_DEADLINE_S = 90.0
PRODUCE_DEADLINE_S = 60.0


def poisoned_block(chain_id: str, height: int, slot: int) -> t.Block:
    tx = t.Tx(chain=WIDE_CHAIN_ID, kind="transfer", sender=EVIL.public_key, nonce=0, fee=1,
              body=t.Transfer(to=bytes(32), amount=1))
    stx = t.SignedTx(tx=tx, sig=bytes(64))
    header = t.Header(chain=chain_id, version=1, height=height, slot=slot, parent=bytes(32),
                      proposer=EVIL.public_key, state_root=bytes(32), tx_root=t.body_root((stx,), ()),
                      timestamp_ms=0, randao_reveal=EVIL.sign(t.randao_message(chain_id, slot)))
    return t.Block(header=header, sig=EVIL.sign(header.signing_bytes()), txs=(stx,), votes=())


def api_status(peer: LivePeer) -> dict[str, Any]:
    status, body = json_request(peer, "GET", "/status")
    assert status == 200, body
    return body


async def attack(peer: LivePeer, listen_addr: str, chain_id: str) -> dict[str, Any]:
    """Lie about a better head, serve poisoned blocks, then watch the peer keep producing."""
    net = LibP2PNetwork(os.urandom(32), listen_addrs=["/ip4/127.0.0.1/tcp/0"])
    served: list[int] = []
    asked = trio.Event()

    async def serve_status(peer_id: str, request: bytes) -> bytes:
        theirs = sync.decode_status(request)
        claim = poisoned_block(chain_id, theirs.head_height + 1, theirs.head_slot + 1)
        lie = dataclasses.replace(theirs, chain=chain_id, head_height=theirs.head_height + 1,
                                  head_slot=theirs.head_slot + 1, head_hash=claim.hash,
                                  justified_epoch=theirs.justified_epoch + 5)
        return sync.encode_status(lie)

    async def serve_range(peer_id: str, request: bytes) -> bytes:
        req = codec.decode(sync.BlocksByRangeRequest, request)
        served.append(req.start)
        asked.set()
        blocks = tuple(codec.encode(poisoned_block(chain_id, req.start + i, req.start + i)) for i in range(req.count))
        return codec.encode(sync.BlocksByRangeResponse(blocks=blocks[:4]))

    net.set_request_handler(topics.status_protocol(chain_id), serve_status, sync.MAX_STATUS_BYTES)
    net.set_request_handler(topics.blocks_by_range_protocol(chain_id), serve_range, sync.MAX_RANGE_REQUEST_BYTES)
    async with net:
        await net.connect(listen_addr)
        with trio.move_on_after(SERVED_DEADLINE_S):
            await asked.wait()
        after_attack = (await trio.to_thread.run_sync(api_status, peer))["head_height"]
        height = after_attack
        # Another process's state: poll it with a deadline, while this host stays connected.
        with trio.move_on_after(PRODUCE_DEADLINE_S):
            while peer.process.poll() is None and height < after_attack + 3:
                await trio.sleep(0.5)
                height = (await trio.to_thread.run_sync(api_status, peer))["head_height"]
    return {"served": served, "after_attack": after_attack, "height": height}


def test_a_live_peer_survives_a_sync_source_serving_poisoned_blocks(tmp_path: Path) -> None:
    peer = start_live_peer(tmp_path, market=False)
    try:
        listen_addr = json.loads((tmp_path / "ready.json").read_text())["listen_addrs"][0]
        chain_id = api_status(peer)["chain_id"]
        result = trio.run(attack, peer, listen_addr, chain_id)
        assert result["served"], "the peer never asked the hostile peer for blocks"
        assert peer.process.poll() is None, f"the peer died:\n{peer.log.read_text()[-3000:]}"
        assert result["height"] >= result["after_attack"] + 3, result  # it kept producing blocks
    finally:
        peer.stop()
