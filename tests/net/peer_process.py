"""A p2pnode network peer in its own process, for multi-process tests.

Usage: python peer_process.py NAME [BOOTSTRAP_ADDR ...]

Prints one JSON line {"peer_id", "addrs"} when ready, then one {"gossip": text} line per message
received on the test topic. Serves the echo protocol and a raw handler that raises on bad JSON.
Exits when its stdin closes.
"""

from __future__ import annotations

import json
import sys

import trio
from libp2p.abc import INetStream
from netutil import ECHO, TOPIC, accept_all, echo, node

RAW_JSON = "/attack/json/1"


async def main(name: str, bootstrap: list[str]) -> None:
    network = node(name, bootstrap)

    async def on_gossip(peer: str, data: bytes) -> None:
        print(json.dumps({"gossip": data.decode(errors="replace"), "from": peer}), flush=True)

    async def parse_json(stream: INetStream) -> None:
        json.loads(await stream.read(1024))

    network.subscribe(TOPIC, accept_all, on_gossip)
    network.set_request_handler(ECHO, echo, max_request_bytes=1024)
    network.host.set_stream_handler(RAW_JSON, parse_json)  # type: ignore[arg-type]
    async with network:
        print(json.dumps({"peer_id": network.peer_id, "addrs": network.listen_addrs()}), flush=True)
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        while await stdin.receive_some():
            pass


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2:])
