"""The composition root of one peer: store, libp2p network, chain services, roles, local API.

`run_peer(options)` is what `p2pnode join` runs. Everything long-running is a trio task in one
nursery; SIGINT / SIGTERM cancel it, and the store is closed on the way out, so a stop never leaves
anything half-written (each block commits in one SQL transaction anyway).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pnode.chain import governance, transition
from p2pnode.chain.address import AddressError, decode_address, encode_address
from p2pnode.chain.genesis import build_genesis_state
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import Serve, SignedTx, make_tx
from p2pnode.genesis_file import load_genesis
from p2pnode.net.host import LibP2PNetwork
from p2pnode.net.identity import peer_id_from_seed
from p2pnode.services.api import views
from p2pnode.services.clock import SystemClock
from p2pnode.services.api.http import HttpApi, HttpError, Request, Response
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.store import Store
from p2pnode.store.slashing_protection import SlashingProtection
from protocols import codec
from protocols.crypto import Keypair

log = logging.getLogger("p2pnode")

DEFAULT_API_PORT = 8545
PEER_CACHE_INTERVAL_S = 30.0


@dataclass
class PeerOptions:
    genesis: str
    data_dir: Path
    hotkey: Keypair
    validator: bool = False
    miner_model: str | None = None
    miner_netuid: int = 1
    validate_netuid: int | None = None
    validator_round_s: float = 6.0
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    api_port: int = DEFAULT_API_PORT
    progress: bool = True
    ready_file: Path | None = None


class Peer:
    """One running peer: the pieces `run_peer` composes, reachable from the API handlers."""

    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        genesis, genesis_bootstrap = load_genesis(options.genesis)
        reader, acc, header = build_genesis_state(genesis)
        self.store = Store(options.data_dir / "chain.sqlite")
        self.store.initialise(header, reader, acc)
        self.chain = BlockTree(self.store)
        self.hotkey = options.hotkey
        cached = [a for _, addrs in self.store.known_peers(16) for a in addrs]
        own = "/p2p/" + peer_id_from_seed(self.hotkey.seed)
        bootstrap = [a for a in _dedupe([*options.bootstrap, *genesis_bootstrap, *cached]) if not a.endswith(own)]
        self.network = LibP2PNetwork(self.hotkey.seed, listen_addrs=options.listen, bootstrap=bootstrap)
        self.clock = SystemClock()
        signer = None
        if options.validator:
            signer = GuardedSigner(self.hotkey, SlashingProtection(options.data_dir / "signing.sqlite", self.hotkey.public_key))
        self.node = ChainService(self.chain, self.network, self.clock, signer)
        self.api = HttpApi()
        self.miner: Any = None
        self.validator_loop: Any = None
        self.task: Any = None
        self.halted: str | None = None
        # (height, block hash hex, local ms when it became our head): benchmarks measure propagation.
        self.arrivals: list[tuple[int, str, int]] = []
        if os.environ.get("P2PNODE_RECORD_ARRIVALS") == "1":
            self.chain.head_listeners.append(self._record_arrival)
        self.started_at = time.time()
        self._install_routes()

    # ---------------------------------------------------------------- transactions by the hotkey

    async def submit_body(self, body: ChainObject) -> bool:
        """Sign `body` with the hotkey at its next nonce and offer it to the mempool (and gossip)."""
        state = self.chain.head_state()
        nonce = self.node.mempool.next_nonce(self.hotkey.public_key, state)
        tx = make_tx(self.node.chain_id, self.hotkey.public_key, nonce, state.param("min_fee"), body)
        stx = SignedTx(tx=tx, sig=self.hotkey.sign(tx.signing_bytes()))
        admission = await self.node.submit_tx(codec.encode(stx))
        if not admission.added:
            log.warning("own %s transaction refused: %s", tx.kind, admission.reason)
        return admission.added

    # ---------------------------------------------------------------- chain views for the roles

    def metagraph(self, netuid: int) -> list[dict[str, Any]]:
        return views.metagraph_view(self.chain.head_state(), netuid) or []

    def chain_info(self, netuid: int) -> dict[str, Any]:
        state = self.chain.head_state()
        sn = state.subnet(netuid) or {"epoch_index": 0, "hp": {}}
        commits = state.get(b"C" + netuid.to_bytes(2, "big") + self.hotkey.public_key, [])
        return {
            "height": state.height,
            "epoch_index": sn["epoch_index"],
            "hyperparameters": dict(sn["hp"], weights_version=sn["hp"].get("weights_version_key", 0)),
            "weight_commits": [{"commit_hash": c[0], "commit_epoch": c[1]} for c in commits],
        }

    def status(self) -> dict[str, Any]:
        status = self.node.status()
        state = self.chain.head_state()
        finalized_root = None
        if status["finalized_hash"]:
            header = self.store.header(bytes.fromhex(status["finalized_hash"]))
            finalized_root = None if header is None else header.state_root.hex()
        upgrade = governance.pending_upgrade(state)
        status.update(
            api=f"http://127.0.0.1:{self.api.port}",
            pid=_pid(),
            hotkey=self.hotkey.address,
            listen_addrs=self.network.listen_addrs(),
            height=status["head_height"],
            finalized_state_root=finalized_root,
            min_fee=state.param("min_fee"),
            protocol_version=state.param("protocol_version"),
            supported_versions=sorted(transition.SUPPORTED_PROTOCOL_VERSIONS),
            pending_upgrade=upgrade,
            halted=self.halted,
            roles={"validator": self.options.validator, "miner": self.options.miner_model,
                   "subnet_validator": self.options.validate_netuid},
            uptime_s=round(time.time() - self.started_at, 1),
        )
        return status

    # ---------------------------------------------------------------- API

    def _install_routes(self) -> None:
        api = self.api

        async def status(req: Request) -> Response:
            return Response.json(self.status())

        def peer_json(peer: str) -> dict[str, Any]:
            view = self.network.peer_score(peer)
            return {"peer_id": peer, "connected": peer in self.network.connected_peers(),
                    "score": round(view.score, 3), "fault_points": round(view.fault_points, 3),
                    "banned": self.network.is_banned(peer), "ban_count": view.ban_count}

        async def peers(req: Request) -> Response:
            if len(req.parts) > 1:
                return Response.json(peer_json(req.parts[1]))
            return Response.json([peer_json(p) for p in self.network.connected_peers()])

        async def accounts(req: Request) -> Response:
            pub = _address_arg(req, 1)
            state = self.chain.head_state()
            view = views.account_view(state, pub)
            view["pending_txs"] = self.node.mempool.next_nonce(pub, state) - view["nonce"]
            return Response.json(view)

        async def blocks(req: Request) -> Response:
            if len(req.parts) < 2:
                raise HttpError(400, "missing_block", "GET /blocks/HEIGHT or /blocks/HASH")
            ref = req.parts[1]
            block = None
            if ref.isdigit():
                block = self.store.canonical_block(int(ref))
            elif len(ref) == 64:
                try:
                    block = self.store.block(bytes.fromhex(ref))
                except ValueError:
                    block = None
            if block is None:
                raise HttpError(404, "unknown_block", ref)
            h = block.header
            return Response.json({
                "height": h.height, "slot": h.slot, "hash": h.hash.hex(), "parent": h.parent.hex(),
                "proposer": encode_address(h.proposer) if any(h.proposer) else None,
                "state_root": h.state_root.hex(), "timestamp_ms": h.timestamp_ms, "version": h.version,
                "txs": [{"id": t.id.hex(), "kind": t.tx.kind, "sender": encode_address(t.tx.sender),
                         "nonce": t.tx.nonce, "fee": t.tx.fee} for t in block.txs],
                "votes": len(block.votes),
            })

        async def subnets(req: Request) -> Response:
            return Response.json(views.subnets_view(self.chain.head_state()))

        async def metagraph(req: Request) -> Response:
            netuid = _int_arg(req, 1, "netuid")
            rows = views.metagraph_view(self.chain.head_state(), netuid)
            if rows is None:
                raise HttpError(404, "unknown_subnet", f"netuid {netuid}")
            return Response.json(rows)

        async def explain(req: Request) -> Response:
            netuid, uid = _int_arg(req, 1, "netuid"), _int_arg(req, 2, "uid")
            state = self.chain.head_state()
            neuron = state.neuron(netuid, uid)
            if neuron is None:
                raise HttpError(404, "unknown_uid", f"netuid {netuid} uid {uid}")
            sn = state.subnet(netuid)
            assert sn is not None
            return Response.json({
                "netuid": netuid, "uid": uid, "hotkey": encode_address(neuron["hot"]),
                "stake": state.total_stake(neuron["hot"]),
                "inputs": {"weights": neuron["weights"], "bonds": neuron["bonds"],
                           "last_update": neuron["last_update"], "registered": neuron["registered"],
                           "validator_permit_before": neuron["permit"]},
                "outputs": {k: neuron[k] for k in ("consensus", "incentive", "dividends", "trust", "emission", "active")},
                "subnet": {"last_epoch": sn["last_epoch"], "epoch_index": sn["epoch_index"],
                           "pending_emission": sn["pending"], "hyperparameters": sn["hp"]},
            })

        async def proposals(req: Request) -> Response:
            state = self.chain.head_state()
            if len(req.parts) > 1:
                prop = governance.proposal(state, _int_arg(req, 1, "proposal"))
                if prop is None:
                    raise HttpError(404, "unknown_proposal", req.parts[1])
                return Response.json(views.proposal_json(prop))
            return Response.json(views.proposals_view(state))

        async def arrivals(req: Request) -> Response:
            return Response.json(self.arrivals[-2000:])

        async def supply(req: Request) -> Response:
            return Response.json(views.supply_view(self.chain.head_state()))

        async def submit(req: Request) -> Response:
            admission = await self.node.submit_tx(req.body)
            body = {"tx": admission.tx_id.hex(), "added": admission.added, "reason": admission.reason}
            if not admission.added:
                raise HttpError(422, admission.reason, f"transaction {admission.tx_id.hex()[:16]} refused")
            return Response.json(body)

        async def query(req: Request) -> Response:
            from p2pnode.services.market.query import QueryError, handle_query

            try:
                doc = json.loads(req.body)
                netuid, text = int(doc["netuid"]), str(doc["input"])
            except (ValueError, KeyError, TypeError):
                raise HttpError(400, "bad_query", 'expected {"netuid": N, "input": "..."}') from None
            task = self._task_for(netuid)
            try:
                result = await handle_query(self.network, lambda: self.metagraph(netuid), self.hotkey,
                                            self.node.chain_id, netuid, task, text, clock=time.time)
            except QueryError as exc:
                raise HttpError(exc.status, "query_failed", str(exc)) from None
            return Response.json(result)

        async def metrics(req: Request) -> Response:
            s = self.node.status()
            lines = [
                f"p2pnode_head_height {s['head_height']}",
                f"p2pnode_finalized_height {s['finalized_height'] or 0}",
                f"p2pnode_peers {s['peers']}",
                f"p2pnode_mempool_txs {s['mempool']}",
                f"p2pnode_blocks_proposed_total {s['blocks_proposed']}",
                f"p2pnode_votes_cast_total {s['votes_cast']}",
                f"p2pnode_syncing {int(bool(s['syncing']))}",
            ]
            return Response(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")

        async def dashboard(req: Request) -> Response:
            return Response(200, DASHBOARD_HTML.encode(), "text/html; charset=utf-8")

        for name, handler in [("status", status), ("peers", peers), ("accounts", accounts), ("blocks", blocks),
                              ("subnets", subnets), ("metagraph", metagraph), ("epochs", metagraph),
                              ("explain", explain), ("proposals", proposals), ("supply", supply), ("arrivals", arrivals),
                              ("metrics", metrics), ("", dashboard)]:
            api.route("GET", name, handler)
        api.route("POST", "tx", submit)
        api.route("POST", "query", query)

    def _task_for(self, netuid: int) -> Any:
        from models.tasks import get_task

        sn = self.chain.head_state().subnet(netuid)
        if sn is None or sn["task"] == "root":
            raise HttpError(404, "unknown_subnet", f"netuid {netuid} has no task")
        return get_task(sn["task"])

    # ---------------------------------------------------------------- roles

    async def _run_miner(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from models.registry import create_model
        from p2pnode.services.market.miner import MinerServer

        netuid = self.options.miner_netuid
        task = self._task_for(netuid)
        model_spec = self.options.miner_model
        assert model_spec is not None
        model = await trio.to_thread.run_sync(lambda: create_model(model_spec, task))
        state_of = self.chain.head_state
        self.miner = MinerServer(self.hotkey, self.node.chain_id, netuid, model, task,
                                 stake_of=lambda pub: state_of().total_stake(pub), clock=time.time)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.miner.run, self.network)
            task_status.started()
            await self._keep_serving(netuid, model_spec)

    async def _keep_serving(self, netuid: int, model_name: str) -> None:
        """Announce (and re-announce after re-registration) that our uid serves at our PeerID."""
        while True:
            state = self.chain.head_state()
            uid = state.uid_of(netuid, self.hotkey.public_key)
            if uid is not None:
                neuron = state.neuron(netuid, uid)
                assert neuron is not None
                wanted = (self.network.peer_id, model_name[:128])
                if (neuron["peer_id"], neuron["model"]) != wanted and not self._serve_pending():
                    await self.submit_body(Serve(netuid=netuid, peer_id=wanted[0], model=wanted[1]))
            await trio.sleep(5)

    def _serve_pending(self) -> bool:
        state = self.chain.head_state()
        return self.node.mempool.next_nonce(self.hotkey.public_key, state) > state.nonce(self.hotkey.public_key)

    async def _run_validator_loop(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from p2pnode.services.market.validator import ValidatorConfig, ValidatorLoop

        netuid = self.options.validate_netuid
        assert netuid is not None
        task = self._task_for(netuid)
        self.validator_loop = ValidatorLoop(
            self.hotkey, self.node.chain_id, netuid, task, self.network,
            metagraph=lambda: self.metagraph(netuid), chain_info=lambda: self.chain_info(netuid),
            submit_tx=self.submit_body, state_dir=self.options.data_dir / "validator",
            clock=time.time, config=ValidatorConfig(round_interval_s=self.options.validator_round_s),
        )
        await self.validator_loop.run(task_status=task_status)

    # ---------------------------------------------------------------- upkeep

    async def _watch_upgrades(self) -> None:
        """Halt (and say why, once) when the chain activates a protocol version we do not support."""
        while True:
            state = self.chain.head_state()
            upgrade = governance.pending_upgrade(state)
            active = state.param("protocol_version")
            problem = None
            if active not in transition.SUPPORTED_PROTOCOL_VERSIONS:
                problem = f"protocol version {active} is active and this node supports only {sorted(transition.SUPPORTED_PROTOCOL_VERSIONS)}: upgrade p2pnode"
            elif upgrade and upgrade[1] not in transition.SUPPORTED_PROTOCOL_VERSIONS:
                problem = (f"protocol upgrade to version {upgrade[1]} activates at height {upgrade[0]}; this node "
                           f"supports only {sorted(transition.SUPPORTED_PROTOCOL_VERSIONS)} and will stop there: upgrade p2pnode")
            if problem != self.halted and problem is not None:
                log.error("%s", problem)
            self.halted = problem
            await trio.sleep(2)

    def _record_arrival(self, head: bytes) -> None:
        """Opt-in (P2PNODE_RECORD_ARRIVALS=1, benchmarks only): when each block became our head."""
        self.arrivals.append((self.chain.head.height, head.hex(), int(time.time() * 1000)))
        del self.arrivals[:-5000]

    async def _cache_peers(self) -> None:
        while True:
            await trio.sleep(PEER_CACHE_INTERVAL_S)
            now = int(time.time() * 1000)
            for peer in self.network.connected_peers()[:32]:
                with trio.move_on_after(5):
                    addrs = await self.network.find_peer_addrs(peer)
                    if addrs:
                        self.store.remember_peer(peer, addrs, now)

    async def _progress(self) -> None:
        """A one-line progress bar on stderr while syncing."""
        shown = False
        while True:
            status = self.node.status()
            target = max(status["current_slot"], 1)
            if status["syncing"]:
                done = status["head_slot"]
                width = 30
                filled = min(width, width * done // target)
                sys.stderr.write(f"\rsyncing [{'#' * filled}{'.' * (width - filled)}] slot {done}/{target} "
                                 f"height {status['head_height']}   ")
                sys.stderr.flush()
                shown = True
            elif shown:
                sys.stderr.write(f"\rsynced at height {status['head_height']}{' ' * 40}\n")
                sys.stderr.flush()
                shown = False
            await trio.sleep(1)

    # ---------------------------------------------------------------- run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.network.run)
                await nursery.start(self.node.run)
                await nursery.start(self.api.serve, self.options.api_port)
                if self.options.miner_model:
                    await nursery.start(self._run_miner)
                if self.options.validate_netuid is not None:
                    await nursery.start(self._run_validator_loop)
                nursery.start_soon(self._watch_upgrades)
                nursery.start_soon(self._cache_peers)
                if self.options.progress:
                    nursery.start_soon(self._progress)
                ready = {
                    "peer_id": self.network.peer_id,
                    "listen_addrs": self.network.listen_addrs(),
                    "api": f"http://127.0.0.1:{self.api.port}",
                    "pid": _pid(),
                }
                if self.options.ready_file is not None:
                    tmp = self.options.ready_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(ready))
                    tmp.replace(self.options.ready_file)
                task_status.started(ready)
        finally:
            self.store.close()


async def run_peer(options: PeerOptions) -> None:
    """Run a peer until SIGINT or SIGTERM; print its identity once it is up."""
    peer = Peer(options)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(peer.run)
            print(f"peer id:  {ready['peer_id']}")
            for addr in ready["listen_addrs"]:
                print(f"listen:   {addr}")
            print(f"api:      {ready['api']}")
            print(f"hotkey:   {peer.hotkey.address}")
            sys.stdout.flush()
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    print("stopped cleanly")


def _pid() -> int:
    return os.getpid()


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _int_arg(req: Request, index: int, name: str) -> int:
    try:
        return int(req.parts[index])
    except (IndexError, ValueError):
        raise HttpError(400, f"bad_{name}", f"expected an integer {name} in the path") from None


def _address_arg(req: Request, index: int) -> bytes:
    try:
        return decode_address(req.parts[index])
    except IndexError:
        raise HttpError(400, "missing_address", "expected an address in the path") from None
    except AddressError as exc:
        raise HttpError(400, "bad_address", str(exc)) from None


DASHBOARD_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>p2pnode</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}th{background:#eee}</style>
</head><body><h1>p2pnode</h1><pre id="status">loading…</pre>
<h2>Subnet 1 metagraph</h2><table id="mg"></table>
<script>
async function refresh(){
  const s = await (await fetch('/status')).json();
  document.getElementById('status').textContent =
    `chain ${s.chain_id}  height ${s.head_height}  finalized ${s.finalized_height}  peers ${s.peers}  mempool ${s.mempool}`;
  const r = await fetch('/metagraph/1');
  if (r.ok) {
    const rows = await r.json();
    const keys = ['uid','stake','validator_permit','consensus','incentive','dividends','emission','model'];
    document.getElementById('mg').innerHTML = '<tr>' + keys.map(k => `<th>${k}</th>`).join('') + '</tr>' +
      rows.map(x => '<tr>' + keys.map(k => `<td>${x[k]}</td>`).join('') + '</tr>').join('');
  }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
