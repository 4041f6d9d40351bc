"""The local HTTP API over one chain service alone, for tests and benchmarks of the routes that
read nothing else of a peer (transaction submission, chain views)."""

from __future__ import annotations

import trio

from p2pnode.services.api.http import HttpApi
from p2pnode.services.api.routes import ApiBackend, install_routes
from p2pnode.services.chain.chain_service import ChainService


async def serve_chain_api(nursery: trio.Nursery, node: ChainService) -> str:
    """Serve the API's routes over `node` on a free loopback port in `nursery`; the base URL.
    The parts of a peer that `node` is not (network, roles, market, history) are absent."""
    api = HttpApi()
    backend = ApiBackend(chain=node.chain, store=node.chain.store, service=node, network=None, hotkey_address="",
                         roles={}, started_at=0.0, pid=0, halted=lambda: None, answer_query=None, arrivals=list,
                         epoch_records=None, metrics=None, own_tx_refusals=dict, data_dir="", events=None,
                         history=None)
    install_routes(api, backend)
    port = await nursery.start(api.serve, 0)
    return f"http://127.0.0.1:{port}"
