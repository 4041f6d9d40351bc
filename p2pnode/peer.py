"""The composition root of one peer: store, libp2p network, chain services, roles, local API.

`run_peer(options)` is what `p2pnode join` runs. Everything long-running is a trio task in one
nursery; SIGINT / SIGTERM cancel it, and the store is closed on the way out, so a stop never leaves
anything half-written (each block commits in one SQL transaction anyway).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pnode.chain.consensus import validator_set_for_epoch
from p2pnode.chain.genesis import Genesis, build_genesis_pinned, build_genesis_state
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.state import DictReader, State
from p2pnode.chain.transition import minimum_fee
from p2pnode.chain.types import TX_KIND_OF, Header, Serve, SignedTx, make_tx
from p2pnode.genesis_file import load_genesis
from p2pnode.net.addresses import default_listen_addrs
from p2pnode.net.host import LibP2PNetwork, NetConfig
from p2pnode.net.identity import peer_id_from_pubkey, peer_id_from_seed
from p2pnode.net.kad_client_mode_peers import dht_network_name
from p2pnode.services.api.events import ChainEventFeed, EventHub
from p2pnode.services.api.http import HttpApi, HttpError
from p2pnode.services.api.routes import ApiBackend, GenerateRequest, install_routes
from p2pnode.services.chain.arrivals import ArrivalLog
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.chain.peer_cache import cache_peers, cached_bootstrap
from p2pnode.services.chain.signature_helper import SignatureHelper, usable_cores
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.services.chain.sync_progress import show_sync_progress
from p2pnode.services.chain.upgrades import UpgradeWatcher
from p2pnode.services.clock import SystemClock
from p2pnode.services.market.chain_view import StateView
from p2pnode.services.market.client import InferenceClient
from p2pnode.services.market.roles import RoleFailed, RoleStatus, supervise, wait_for_chain
from p2pnode.services.market.routing import Router
from p2pnode.services.metrics import NodeMetrics
from p2pnode.services.metrics import attach_network as metrics_attach_network
from p2pnode.services.metrics import attach_node as metrics_attach_node
from p2pnode.store import Store
from p2pnode.store.epoch_records import EpochRecordStore
from p2pnode.store.private_files import private_directory
from p2pnode.store.slashing_protection import SlashingProtection
from protocols import codec
from protocols.crypto import Keypair

log = logging.getLogger("p2pnode")

# Market roles start once the head is at most this many slots behind the clock (and not syncing).
ROLE_SYNC_TOLERANCE_SLOTS = 32

DEFAULT_API_PORT = 8545
# Shifts this peer's clock by N ms: only for tests of a badly set clock (`p2pnode doctor` finds it).
CLOCK_OFFSET_ENV = "P2PNODE_TEST_CLOCK_OFFSET_MS"
# Only for tests of checkpoint sync: "1" makes this peer serve corrupt state chunks.
CORRUPT_STATE_CHUNKS_ENV = "P2PNODE_TEST_CORRUPT_STATE_CHUNKS"
# Only for tests of checkpoint sync: state items asked per chunk (small, so several peers serve one join).
STATE_CHUNK_ITEMS_ENV = "P2PNODE_TEST_STATE_CHUNK_ITEMS"


def _clock_offset_from_env() -> int:
    text = os.environ.get(CLOCK_OFFSET_ENV, "0")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{CLOCK_OFFSET_ENV} must be an integer number of ms, not {text!r}") from None


@dataclass
class PeerOptions:
    genesis: str
    data_dir: Path
    hotkey: Keypair
    validator: bool = False
    miner_model: str | None = None
    miner_netuid: int = 1
    miner_device: str = "cpu"  # cpu, cuda, cuda:N or auto (see models.base.resolve_device)
    validate_netuid: int | None = None
    validator_round_s: float = 6.0
    challenge_data: Path | None = None  # the subnet validator's private challenges (else generated)
    weight_sharpness: float = 2.0  # weights = (margin over the task's baseline) ** this
    # Every interface on the fixed default port (see p2pnode.net.addresses).
    listen: list[str] = field(default_factory=default_listen_addrs)
    announce: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    # Offer a Circuit Relay v2 service; None: on for block validators, off otherwise.
    relay_service: bool | None = None
    # Ask a UPnP router to forward the listen port (off by default).
    upnp: bool = False
    api_port: int = DEFAULT_API_PORT
    progress: bool = True
    ready_file: Path | None = None
    # Join at a peer-advertised finalized checkpoint instead of replaying from genesis (fresh store
    # only); `checkpoint` (a block hash) is trusted instead of checking finality votes.
    checkpoint_sync: bool = False
    checkpoint: bytes | None = None


def genesis_for_store(store: Store, genesis: Genesis, *, checkpoint_sync: bool) -> tuple[DictReader, int | None, Header]:
    """The genesis state, its accumulator (None: not hashed) and header to open `store` with.

    The pinned state root stands in for hashing every genesis item (seconds for 100,000 accounts)
    on a fresh store that checkpoint sync will fill (whose genesis validators are then taken from
    the file as it stands: docs/security.md), and on a store past genesis, whose stored genesis
    hash (checked by `initialise`) covers the pin and whose state is the chain's. A store still at
    genesis hashes it: checkpoint sync may yet run there and trust the genesis validators, which
    only the hash ties to the pin (a file with other validators and the right pin has the right
    genesis hash)."""
    fresh = store.meta("genesis_hash") is None
    past_genesis = not fresh and not store.genesis_unhashed() and store.head_height > 0
    if genesis.state_root is None or not ((checkpoint_sync and fresh) or past_genesis):
        return build_genesis_state(genesis)
    if fresh:
        log.info("genesis state root taken from the genesis file's pin (not hashed): checkpoint sync replaces it")
    reader, header = build_genesis_pinned(genesis)
    return reader, None, header


class Peer:
    """One running peer: the pieces `run_peer` composes, reachable from the API handlers."""

    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        private_directory(options.data_dir)
        genesis, genesis_bootstrap = load_genesis(options.genesis)
        self.store = Store(options.data_dir / "chain.sqlite")
        reader, acc, header = genesis_for_store(self.store, genesis, checkpoint_sync=options.checkpoint_sync)
        genesis_vset = validator_set_for_epoch(State(reader, 0), 0)
        self.genesis_stake = {} if genesis_vset is None else dict(genesis_vset.validators)
        self.store.initialise(header, reader, acc)
        self.chain = BlockTree(self.store)
        if usable_cores() > 1:
            # Range sync checks signatures in a helper process (started at the first long sync).
            self.chain.signature_helper = SignatureHelper()
        self.epoch_records = EpochRecordStore(options.data_dir / "epochs.sqlite")
        self.chain.epoch_listeners.append(self.epoch_records.add)
        self.hotkey = options.hotkey
        bootstrap = cached_bootstrap(self.store, peer_id_from_seed(self.hotkey.seed),
                                     [*options.bootstrap, *genesis_bootstrap])
        relay_service = options.validator if options.relay_service is None else options.relay_service
        self.network = LibP2PNetwork(
            self.hotkey.seed, listen_addrs=options.listen, bootstrap=bootstrap, announce=options.announce,
            config=NetConfig(network_id=dht_network_name(genesis.chain_id), relay_service=relay_service,
                             upnp=options.upnp, hole_punching=True))
        self.clock = SystemClock(offset_ms=_clock_offset_from_env())
        # The latest refusal of each kind of transaction this peer's hotkey submitted (doctor shows it).
        self.own_tx_refusals: dict[str, dict[str, Any]] = {}
        signer = None
        if options.validator:
            signer = GuardedSigner(self.hotkey, SlashingProtection(options.data_dir / "signing.sqlite", self.hotkey.public_key))
        self.metrics = NodeMetrics()
        # The PeerID derives from the hotkey, so the proposers a vote must reach are named by the schedule.
        self.node = ChainService(self.chain, self.network, self.clock, signer, metrics=self.metrics,
                                 validator_peer=functools.lru_cache(maxsize=4096)(peer_id_from_pubkey))
        self.node.state_chunks.corrupt = os.environ.get(CORRUPT_STATE_CHUNKS_ENV) == "1"
        metrics_attach_node(self.metrics, self.node.status, lambda: self.node.sync.blocks_imported)
        metrics_attach_network(self.metrics, self.network)
        self.api = HttpApi()
        # The market's typed view of the chain (neurons, subnets, stake) over our head state.
        self.market_chain = StateView(self.chain.head_state, head_hash=lambda: self.chain.head.hash)
        # Queries are routed by what this peer measured of each miner (latency, load, failures).
        self.router = Router(InferenceClient(self.network, self.hotkey, self.node.chain_id, self.clock), self.clock)
        self.miner: Any = None
        self.validator_loop: Any = None
        self.task: Any = None
        # What each market role is doing, in one line (status "roles"; the log says it too).
        self.roles: dict[str, Any] = {"validator": options.validator, "miner": options.miner_model,
                                      "miner_netuid": options.miner_netuid if options.miner_model else None,
                                      "subnet_validator": options.validate_netuid}
        self.miner_status = RoleStatus("miner", on_change=lambda line: self.roles.__setitem__("miner_status", line))
        self.validator_status = RoleStatus(
            "subnet validator", on_change=lambda line: self.roles.__setitem__("subnet_validator_status", line))
        self.upgrades = UpgradeWatcher(self.chain.head_state)
        # Benchmarks measure propagation from when each block became our head (opt-in).
        arrivals = ArrivalLog(self.chain) if os.environ.get("P2PNODE_RECORD_ARRIVALS") == "1" else None
        self.events = EventHub()
        self.event_feed = ChainEventFeed(self.chain, self.events)
        self.node.admission_listeners.append(self.event_feed.on_admission)
        install_routes(self.api, ApiBackend(
            chain=self.chain, store=self.store, service=self.node, network=self.network,
            hotkey_address=self.hotkey.address, started_at=time.time(), pid=os.getpid(),
            roles=self.roles,
            halted=lambda: self.upgrades.halted, answer_query=self.answer_query,
            arrivals=(lambda: []) if arrivals is None else arrivals.recent,
            epoch_records=self.epoch_records, metrics=self.metrics,
            own_tx_refusals=lambda: dict(self.own_tx_refusals), data_dir=str(options.data_dir), events=self.events,
            history=self.event_feed.history, start_generation=self.start_generation,
        ))

    # ---------------------------------------------------------------- transactions by the hotkey

    async def submit_body(self, body: ChainObject) -> bool:
        """Sign `body` with the hotkey at its next nonce and offer it to the mempool (and gossip)."""
        state = self.chain.head_state()
        hot = self.hotkey.public_key
        nonce = self.node.mempool.next_nonce(hot, state)
        # Pay the minimum fee when the hotkey can; a neuron's duties are also accepted fee-free.
        kind = TX_KIND_OF[type(body)]
        can_pay = state.balance(hot) - self.node.mempool.reserved(hot) >= state.param("min_fee")
        fee = state.param("min_fee") if can_pay else minimum_fee(state, kind)
        tx = make_tx(self.node.chain_id, hot, nonce, fee, body)
        stx = SignedTx(tx=tx, sig=self.hotkey.sign(tx.signing_bytes()))
        admission = await self.node.submit_tx(codec.encode(stx))
        if not admission.added:
            log.warning("own %s transaction refused: %s", tx.kind, admission.reason)
            self.own_tx_refusals[tx.kind] = {"reason": admission.reason, "height": state.height}
        else:
            self.own_tx_refusals.pop(tx.kind, None)
        return admission.added

    # ---------------------------------------------------------------- API

    async def answer_query(self, netuid: int, text: str, uid: int | None = None) -> dict[str, Any]:
        from p2pnode.services.market.query import QueryError, handle_query

        task = self._task_for(netuid)
        try:
            return await handle_query(self.router, self.market_chain.neurons(netuid), netuid, task, text, uid=uid)
        except QueryError as exc:
            raise HttpError(exc.status, "query_failed", str(exc)) from None

    def start_generation(self, asked: GenerateRequest) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        from p2pnode.services.market.query import QueryError, start_generation

        task = self._task_for(asked.netuid)
        try:
            return start_generation(self.router, self.market_chain.neurons(asked.netuid), asked.netuid, task,
                                    asked.prompt, max_tokens=asked.max_tokens, temperature=asked.temperature,
                                    seed=asked.seed, uid=asked.uid)
        except QueryError as exc:
            raise HttpError(exc.status, "generate_failed", str(exc)) from None

    def _task_for(self, netuid: int) -> Any:
        from models.tasks import get_task

        sn = self.chain.head_state().subnet(netuid)
        if sn is None or sn.task == "root":
            raise HttpError(404, "unknown_subnet", f"netuid {netuid} has no task")
        return get_task(sn.task)

    # ---------------------------------------------------------------- roles

    def _sync_gap(self) -> str | None:
        """None once the head is within ROLE_SYNC_TOLERANCE_SLOTS of the clock and not range-syncing."""
        status = self.node.status()
        behind = status["current_slot"] - status["head_slot"]
        if status["syncing"] or behind > ROLE_SYNC_TOLERANCE_SLOTS:
            return f"head at slot {status['head_slot']} of {status['current_slot']}"
        return None

    async def _run_miner(self) -> None:
        await supervise(self.miner_status, self._miner_role, self.clock)

    async def _miner_role(self) -> None:
        from models.errors import ModelError
        from models.registry import create_model
        from models.tasks import get_task
        from p2pnode.services.market.miner import MinerServer

        netuid, model_spec, status = self.options.miner_netuid, self.options.miner_model, self.miner_status
        assert model_spec is not None
        info = await wait_for_chain(status, self.market_chain, netuid, self.hotkey.public_key, self._sync_gap,
                                    self.clock, need_registration=False)
        try:
            task = get_task(info.task)
            status.set(f"loading {model_spec} for subnet {netuid} on {self.options.miner_device}")
            model = await trio.to_thread.run_sync(
                lambda: create_model(model_spec, task, self.options.miner_device))
        except ModelError as exc:
            raise RoleFailed(f"cannot serve {model_spec} on subnet {netuid}: {exc}") from None
        self.miner = MinerServer(self.hotkey, self.node.chain_id, netuid, model, task,
                                 stake_of=self.market_chain.stake_of, clock=self.clock,
                                 metrics=self.metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.miner.run, self.network)
            await self._keep_serving(netuid, model_spec, getattr(model, "device", "cpu"))

    async def _keep_serving(self, netuid: int, model_name: str, device: object) -> None:
        """Announce (and re-announce after re-registration) that our uid serves at our PeerID."""
        while True:
            state = self.chain.head_state()
            uid = state.uid_of(netuid, self.hotkey.public_key)
            if uid is None:
                self.miner_status.set(f"model ready; waiting for this hotkey's registration on subnet {netuid}")
            else:
                neuron = state.neuron(netuid, uid)
                assert neuron is not None
                wanted = (self.network.peer_id, model_name[:128])
                if (neuron.peer_id, neuron.model) != wanted:
                    self.miner_status.set(f"announcing uid {uid} on subnet {netuid}")
                    if not self._serve_pending():
                        await self.submit_body(Serve(netuid=netuid, peer_id=wanted[0], model=wanted[1]))
                else:
                    self.miner_status.set(f"serving {model_name} as uid {uid} on subnet {netuid} ({device})")
            await trio.sleep(5)

    def _serve_pending(self) -> bool:
        state = self.chain.head_state()
        return self.node.mempool.next_nonce(self.hotkey.public_key, state) > state.nonce(self.hotkey.public_key)

    async def _run_validator_loop(self) -> None:
        await supervise(self.validator_status, self._validator_role, self.clock)

    async def _validator_role(self) -> None:
        from models.challenges import challenge_source
        from models.errors import ModelError
        from models.tasks import get_task
        from p2pnode.services.market.validator import ValidatorConfig, ValidatorLoop

        netuid, status = self.options.validate_netuid, self.validator_status
        assert netuid is not None
        info = await wait_for_chain(status, self.market_chain, netuid, self.hotkey.public_key, self._sync_gap,
                                    self.clock, need_registration=True)
        try:
            task = get_task(info.task)
            challenges = challenge_source(task, self.options.challenge_data)
        except ModelError as exc:
            raise RoleFailed(f"cannot validate subnet {netuid}: {exc}") from None
        self.validator_loop = ValidatorLoop(
            self.hotkey, self.node.chain_id, netuid, task, self.network,
            chain=self.market_chain,
            submit_tx=self.submit_body, state_dir=self.options.data_dir / "validator",
            clock=self.clock, metrics=self.metrics, challenges=challenges,
            config=ValidatorConfig(round_interval_s=self.options.validator_round_s,
                                   weight_sharpness=self.options.weight_sharpness),
        )
        status.set(f"validating subnet {netuid} ({info.task}, {challenges.kind} challenges)")
        await self.validator_loop.run()

    # ---------------------------------------------------------------- run

    async def _backfill_history(self) -> None:
        from p2pnode.services.chain.backfill import HistoryBackfill

        backfill = HistoryBackfill(store=self.store, network=self.network, chain_id=self.node.chain_id)
        try:
            await backfill.run()
        except Exception as exc:  # the backfill is a convenience: it never stops the peer
            log.exception("history backfill stopped: %r", exc)

    async def _checkpoint_sync(self) -> None:
        from p2pnode.services.chain.checkpoint import CheckpointConfig, CheckpointSync

        config = CheckpointConfig()
        if os.environ.get(STATE_CHUNK_ITEMS_ENV):
            config = CheckpointConfig(chunk_items=int(os.environ[STATE_CHUNK_ITEMS_ENV]))
        joiner = CheckpointSync(
            config=config, store=self.store, network=self.network, clock=self.clock, chain_id=self.node.chain_id,
            genesis_hash=self.node.genesis_hash, local_status=self.node.local_status(),
            trusted_stake=self.genesis_stake, trusted_checkpoint=self.options.checkpoint)
        started = time.monotonic()
        report = await joiner.join()
        self.chain.reload()
        log.info("joined at checkpoint height %d (%d state items) in %.1f s; validator-set walk: %d steps; penalised: %s",
                 report.checkpoint.height, report.items, time.monotonic() - started, report.walk_steps,
                 report.penalised or "none")


    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.network.run)
                if self.options.checkpoint_sync and self.store.head_height == 0:
                    await self._checkpoint_sync()
                await nursery.start(self.node.run)
                await nursery.start(self.api.serve, self.options.api_port)
                # Roles start in the background: they wait for sync and for the chain, and a role
                # that fails never stops the chain duties above.
                if self.options.miner_model:
                    nursery.start_soon(self._run_miner)
                if self.options.validate_netuid is not None:
                    nursery.start_soon(self._run_validator_loop)
                if self.store.history_low() is not None:
                    nursery.start_soon(self._backfill_history)
                nursery.start_soon(self.upgrades.run)
                nursery.start_soon(self.event_feed.run)
                nursery.start_soon(cache_peers, self.network, self.store)
                if self.options.progress:
                    nursery.start_soon(show_sync_progress, self.node.status)
                ready = {
                    "peer_id": self.network.peer_id,
                    "listen_addrs": self.network.listen_addrs(),
                    "api": f"http://127.0.0.1:{self.api.port}",
                    "pid": os.getpid(),
                }
                if self.options.ready_file is not None:
                    tmp = self.options.ready_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(ready))
                    tmp.replace(self.options.ready_file)
                task_status.started(ready)
        finally:
            if self.chain.signature_helper is not None:
                self.chain.signature_helper.close()
            self.store.close()
            self.epoch_records.close()


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
