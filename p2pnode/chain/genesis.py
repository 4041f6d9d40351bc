"""Genesis: the initial state and block 0, from a validated `Genesis` description.

The genesis hash is the hash of block 0's header, which commits to the chain id, the genesis time
and (through the state root) every parameter, balance, stake and subnet of the initial state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pnode.chain import accumulator, consensus, subnets
from p2pnode.chain.encoding import MAX_UINT64, sha256
from p2pnode.chain.errors import ChainError, TxInvalid
from p2pnode.chain.params import check_hyperparam, check_param, default_hyperparams, default_params
from p2pnode.chain.records import Supply
from p2pnode.chain.state import DictReader, State
from p2pnode.chain.types import ZERO_HASH, BadChainId, Header, body_root, check_chain_id

GENESIS_VERSION = 1


class GenesisError(ChainError, ValueError):
    """The genesis description is invalid; the message names the field."""


@dataclass(frozen=True)
class GenesisValidator:
    hotkey: bytes
    coldkey: bytes
    stake: int


@dataclass(frozen=True)
class GenesisSubnet:
    owner_coldkey: bytes
    owner_hotkey: bytes
    task: str
    hyperparameters: dict[str, int] = field(default_factory=dict)
    # Hotkeys registered at genesis after the owner, as (hotkey, owning coldkey), no burn.
    neurons: tuple[tuple[bytes, bytes], ...] = ()


_TOPIC_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    params: dict[str, int]
    balances: tuple[tuple[bytes, int], ...]
    validators: tuple[GenesisValidator, ...]
    subnets: tuple[GenesisSubnet, ...] = ()
    # The genesis state root the document pins (optional). Every peer that builds the genesis state
    # checks it; a peer joining by checkpoint sync takes it instead of hashing every genesis item
    # (`build_genesis_pinned`): it never imports a block on the genesis state.
    state_root: bytes | None = None


def build_genesis_state(genesis: Genesis) -> tuple[DictReader, int, Header]:
    """The initial key-value state, its accumulator, and the block-0 header."""
    reader, state = _genesis_state(genesis)
    acc = state.accumulator()
    root = state.root()
    if genesis.state_root is not None and genesis.state_root != root:
        raise GenesisError(f"state_root: the genesis state's root is {root.hex()}, the document pins "
                           f"{genesis.state_root.hex()}")
    reader.apply(state.changes())
    return reader, acc, _genesis_header(genesis, state, root)


def build_genesis_pinned(genesis: Genesis) -> tuple[DictReader, Header]:
    """The initial state and block-0 header of a document that pins its state root, without hashing
    the state (its accumulator is not computed: no block may be imported on this state; checkpoint
    sync replaces it). The header, and so the genesis hash, is only right if the pin is."""
    if genesis.state_root is None:
        raise GenesisError("state_root: the document pins no state root")
    reader, state = _genesis_state(genesis)
    reader.apply(state.changes())
    return reader, _genesis_header(genesis, state, genesis.state_root)


def _genesis_header(genesis: Genesis, state: State, root: bytes) -> Header:
    return Header(
        chain=genesis.chain_id,
        version=state.param("protocol_version"),
        height=0,
        slot=0,
        parent=ZERO_HASH,
        proposer=ZERO_HASH,
        state_root=root,
        tx_root=body_root((), ()),
        timestamp_ms=genesis.genesis_time_ms,
        randao_reveal=bytes(64),
    )


def _genesis_state(genesis: Genesis) -> tuple[DictReader, State]:
    """The checked genesis description as writes on an overlay over an empty reader."""
    if not genesis.chain_id:
        raise GenesisError("chain_id: must not be empty")
    try:
        check_chain_id(genesis.chain_id)
    except BadChainId as exc:
        raise GenesisError(str(exc)) from None
    if not set(genesis.chain_id) <= _TOPIC_SAFE:
        # Wire objects admit any printable ASCII; a new chain also names its gossip topics with it.
        raise GenesisError("chain_id: only letters, digits, '.', '_' and '-' are allowed")
    if type(genesis.genesis_time_ms) is not int or not 0 <= genesis.genesis_time_ms <= MAX_UINT64:
        raise GenesisError("genesis_time_ms: must be an integer in 0..2^64-1")
    params = default_params()
    for name, value in genesis.params.items():
        problem = check_param(name, value)
        if problem:
            raise GenesisError(f"params.{name}: {problem}")
        params[name] = value
    reader = DictReader()
    state = State(reader, accumulator.EMPTY)
    state.set_global("chain_id", genesis.chain_id)
    state.set_global("params", params)
    state.set_global("height", 0)
    total = 0
    for pub, amount in genesis.balances:
        if amount <= 0 or amount > MAX_UINT64:
            raise GenesisError("balances: amounts must be in 1..2^64-1")
        state.credit(pub, amount)
        total += amount
    for v in genesis.validators:
        if v.stake <= 0 or v.stake > MAX_UINT64:
            raise GenesisError("validators: stake must be in 1..2^64-1")
        owner = state.hotkey_owner(v.hotkey)
        if owner is not None and owner != v.coldkey:
            raise GenesisError("validators: hotkey listed with two coldkeys")
        state.set_hotkey(v.hotkey, v.coldkey, params["default_take"])
        state.change_stake(v.coldkey, v.hotkey, v.stake)
        consensus.add_candidate(state, v.hotkey)
        total += v.stake
    if total > MAX_UINT64:
        raise GenesisError("balances and stakes: total supply exceeds 2^64-1")
    state.set_global("supply", Supply(genesis=total, emitted=0, burned=0, locked=0).to_state())
    for index, sn in enumerate(genesis.subnets):
        for name, value in sn.hyperparameters.items():
            problem = check_hyperparam(name, value, by_owner=False)
            if problem:
                raise GenesisError(f"subnets[{index}].hyperparameters.{name}: {problem}")
    try:
        subnets.init_genesis(state, genesis.subnets)
    except (TxInvalid, ValueError) as exc:
        raise GenesisError(f"subnets: {exc}") from None
    consensus.init_validator_sets(
        state, sha256(b"p2pnode/genesis-seed\x00" + genesis.chain_id.encode()), genesis.genesis_time_ms
    )
    if not consensus.stored_validator_set(state, "vset").validators:  # type: ignore[union-attr]
        raise GenesisError("validators: no block validator meets min_validator_stake")
    return reader, state


__all__ = ["Genesis", "GenesisError", "GenesisSubnet", "GenesisValidator", "build_genesis_pinned", "build_genesis_state",
           "default_hyperparams"]
