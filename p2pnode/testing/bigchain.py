"""A long chain made in-process, fast, for a validator peer process to run on: the data directory
of validator-0 of a one-validator local network after `blocks` slots.

Every block is built and signed by validator-0 as its peer would (`BlockTree.build_block`), carries
a transfer from a development user to one of the genesis's funded accounts, and the finality vote
of the validator in the middle of each epoch: checkpoints finalize through the whole history and
the validator-set walk a joiner asks for is recorded as the node records it. Nothing is gossiped
or verified twice (the blocks are our own), which is what makes 100,000 blocks take minutes.

The validator's signing record holds its last block and vote, so the peer that runs on the
directory never signs below them. The genesis time is fixed when the chain is made; the processes
that run on it later are given a clock offset (`clock_offset_ms`) that puts them just past the
last generated slot, so a made directory can be cached and reused (`cached_chain`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.chain.address import encode_address
from p2pnode.chain.encoding import sha256
from p2pnode.chain.genesis import build_genesis_state
from p2pnode.chain.params import TAO, default_params
from p2pnode.chain.state import DictReader
from p2pnode.chain.types import Header, SignedTx, SignedVote, Transfer, make_tx
from p2pnode.cli.testnet import make_genesis
from p2pnode.genesis_file import dev_keypair, genesis_from_json
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.vset_walk import ValidatorSetHistory
from p2pnode.store import Store
from p2pnode.store.slashing_protection import SlashingProtection
from p2pnode.store.sqlite_store import SCHEMA_VERSION
from p2pnode.testing.factories import finality_votes, user_keys
from protocols import codec

log = logging.getLogger(__name__)

VALIDATOR_KEY = "validator-0-hot"
# Where `cached_chain` keeps made chains (one directory per set of parameters).
CACHE_ROOT = Path("/tmp/p2pnode-bigchain")
# Bump when what is made changes. The cache key is the parameters, this, the store's schema and the
# default chain parameters, not the chain core's sources (any edit would make it again, minutes): a
# core change that alters the genesis otherwise makes the peer refuse a stale directory loudly
# ("belongs to another network"); remake it (`cached_chain(..., remake=True)`, the benchmark's --remake).
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class ChainSpec:
    blocks: int
    accounts: int = 100_000
    slot_ms: int = 1000
    epoch_slots: int = 8
    # A transfer in every block whose slot is a multiple of this (0: none).
    transfer_every: int = 1

    def key(self) -> str:
        # The default chain parameters go into every genesis: a change of one makes another chain.
        params = hashlib.sha256(json.dumps(default_params(), sort_keys=True).encode()).hexdigest()[:8]
        return (f"b{self.blocks}-a{self.accounts}-s{self.slot_ms}-e{self.epoch_slots}-t{self.transfer_every}"
                f"-g{GENERATOR_VERSION}-s{SCHEMA_VERSION}-p{params}")


@dataclass(frozen=True)
class MadeChain:
    """A made chain: `genesis.json` (the network file, state root pinned) and `data/` (validator-0's
    data directory) under `path`."""

    path: Path
    spec: ChainSpec
    genesis_time_ms: int
    head_height: int
    head_slot: int
    finalized_height: int
    seconds: float  # how long making it took

    @property
    def genesis_file(self) -> Path:
        return self.path / "genesis.json"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    def clock_offset_ms(self, now_ms: int | None = None) -> int:
        """The offset (P2PNODE_TEST_CLOCK_OFFSET_MS) that puts a process's clock at the start of the
        slot after the last generated one."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return self.genesis_time_ms + (self.head_slot + 1) * self.spec.slot_ms - now

    def copy_data_dir(self, to: Path) -> Path:
        """A copy of the data directory a peer may change (the made one stays as made)."""
        shutil.copytree(self.data_dir, to)
        return to


def funded_account(i: int) -> bytes:
    """The public key of the i-th extra funded account (1-based), as the checkpoint benchmarks fund them."""
    return i.to_bytes(4, "big") * 8


def genesis_json(spec: ChainSpec, genesis_time_ms: int) -> tuple[dict[str, Any], tuple[DictReader, int, Header]]:
    """The network file (one validator, `spec.accounts` extra accounts of 1 TAO, the state root
    pinned) and its genesis built (`build_genesis_state`)."""
    network = make_genesis(1, market=False, slot_ms=spec.slot_ms)
    network["genesis_time_ms"] = genesis_time_ms
    network["params"]["epoch_slots"] = spec.epoch_slots
    for i in range(1, spec.accounts + 1):
        network["balances"][encode_address(funded_account(i))] = TAO
    genesis = genesis_from_json(network)[0]
    built = build_genesis_state(genesis)
    network["state_root"] = built[2].state_root.hex()
    return network, built


def make_chain(path: Path, spec: ChainSpec, *, progress: Callable[[int], None] | None = None) -> MadeChain:
    """Make the chain of `spec` under `path` (which must not exist)."""
    started = time.perf_counter()
    path.mkdir(parents=True)
    slot_ms = spec.slot_ms
    # The genesis time only has to lie in the past of every later run (the clock offset does the rest).
    genesis_time_ms = (int(time.time() * 1000) - (spec.blocks + 1) * slot_ms) // 1000 * 1000
    network, (reader, acc, header) = genesis_json(spec, genesis_time_ms)
    (path / "genesis.json").write_text(json.dumps(network))
    data = path / "data"
    data.mkdir(mode=0o700)
    store = Store(data / "chain.sqlite")
    store.initialise(header, reader, acc)
    chain = BlockTree(store)
    ValidatorSetHistory(chain)  # records the walk's steps as finality moves, as the peer does
    validator = dev_keypair(VALIDATOR_KEY)
    users = user_keys(4)
    state = chain.head_state()
    nonces = [state.nonce(user.public_key) for user in users]
    min_fee = state.param("min_fee")
    chain_id = chain.head.chain
    epoch_slots = spec.epoch_slots
    pending: list[SignedVote] = []
    last_vote: SignedVote | None = None
    block = None
    for slot in range(1, spec.blocks + 1):
        txs = []
        if spec.transfer_every and slot % spec.transfer_every == 0:
            u = slot % len(users)
            tx = make_tx(chain_id, users[u].public_key, nonces[u], min_fee,
                         Transfer(to=funded_account(slot % spec.accounts + 1), amount=1))
            nonces[u] += 1
            txs.append(SignedTx(tx=tx, sig=users[u].sign(tx.signing_bytes())))
        block = chain.build_block(validator, slot, txs, pending)
        chain.import_block(block, signatures_checked=True)
        pending = []
        # The validator votes in the middle of each epoch for that epoch's checkpoint (as its duties do).
        if slot % epoch_slots == epoch_slots // 2 and slot > epoch_slots:
            pending = finality_votes(chain, slot // epoch_slots)  # the one validator's vote
            last_vote = pending[-1]
        if progress is not None and slot % 10_000 == 0:
            progress(slot)
    assert block is not None and chain.finalized is not None
    head, finalized = chain.head, chain.finalized
    store.close()
    record = SlashingProtection(data / "signing.sqlite", validator.public_key)
    record.may_propose(block.header.slot, block.header.hash)
    if last_vote is not None:
        vote = last_vote.vote
        record.may_vote(vote.source.epoch, vote.target.epoch, sha256(codec.encode(vote)))
    record.close()
    made = MadeChain(path, spec, genesis_time_ms, head.height, head.slot, finalized.height,
                     time.perf_counter() - started)
    (path / "made.json").write_text(json.dumps({
        "genesis_time_ms": made.genesis_time_ms, "head_height": made.head_height, "head_slot": made.head_slot,
        "finalized_height": made.finalized_height, "seconds": made.seconds}))
    return made


def cached_chain(spec: ChainSpec, *, root: Path = CACHE_ROOT, remake: bool = False,
                 progress: Callable[[int], None] | None = None) -> MadeChain:
    """The chain of `spec`, made once under `root` (keyed by its parameters) and reused after."""
    path = root / spec.key()
    done = path / "made.json"
    if done.exists() and not remake:
        info = json.loads(done.read_text())
        return MadeChain(path, spec, info["genesis_time_ms"], info["head_height"], info["head_slot"],
                         info["finalized_height"], info["seconds"])
    if path.exists():
        shutil.rmtree(path)  # an interrupted attempt, or remade
    root.mkdir(parents=True, exist_ok=True)
    return make_chain(path, spec, progress=progress)
