"""Factories for tests, benchmarks and the simulator: dev keys, genesis, signed transactions, stores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from p2pnode.chain import consensus, finality
from p2pnode.chain.genesis import Genesis, GenesisSubnet, GenesisValidator, build_genesis_state
from p2pnode.chain.params import TAO
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import Block, FinalityVote, SignedTx, SignedVote, hotkey_binding_message, make_tx
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.store import Store
from protocols.crypto import Keypair

DEV_CHAIN_ID = "p2pnode-test"


def validator_keys(n: int) -> list[tuple[Keypair, Keypair]]:
    """(coldkey, hotkey) pairs of the well-known development validators."""
    return [(dev_keypair(f"validator-{i}-cold"), dev_keypair(f"validator-{i}-hot")) for i in range(n)]


def user_keys(n: int) -> list[Keypair]:
    return [dev_keypair(f"user-{i}") for i in range(n)]


# One subnet for tests of the subnet economics: its owner, and hyperparameters that let an epoch
# run every few blocks with weights set directly (no commit-reveal, no rate limit, no immunity).
SUBNET_OWNER_COLD, SUBNET_OWNER_HOT = dev_keypair("owner-cold"), dev_keypair("owner-hot")
FAST_SUBNET = {"tempo": 10, "commit_reveal_enabled": 0, "weights_rate_limit": 0, "immunity_period": 0,
               "activity_cutoff": 1000, "max_allowed_uids": 8}


def neuron_keys(n: int) -> tuple[list[Keypair], list[Keypair]]:
    """The coldkeys and hotkeys of `n` would-be neurons."""
    return [dev_keypair(f"cold-{i}") for i in range(n)], [dev_keypair(f"hot-{i}") for i in range(n)]


def subnet_genesis(neurons: int, hyper: dict[str, int], *, users: int = 0, params: dict[str, int] | None = None) -> Genesis:
    """4 validators, `users` users and subnet 1 (text task, `FAST_SUBNET` updated by `hyper`), its
    owner and the keys of `neurons` would-be neurons funded with 100,000 TAO each."""
    colds, hots = neuron_keys(neurons)
    funded = [SUBNET_OWNER_COLD, SUBNET_OWNER_HOT, *colds, *hots]
    subnet = GenesisSubnet(SUBNET_OWNER_COLD.public_key, SUBNET_OWNER_HOT.public_key, "text", dict(FAST_SUBNET, **hyper))
    return make_genesis(4, users, params=params, subnets=(subnet,),
                        extra_balances=tuple((key.public_key, 100_000 * TAO) for key in funded))


def make_genesis(
    validators: int = 4,
    users: int = 4,
    *,
    chain_id: str = DEV_CHAIN_ID,
    balance: int = 1_000_000 * TAO,
    stake: int = 1_000 * TAO,
    params: dict[str, int] | None = None,
    subnets: tuple[GenesisSubnet, ...] = (),
    extra_balances: tuple[tuple[bytes, int], ...] = (),
) -> Genesis:
    vals = validator_keys(validators)
    balances = [(k.public_key, balance) for k in user_keys(users)]
    balances += [(cold.public_key, balance) for cold, _ in vals]
    balances += [(hot.public_key, 10 * TAO) for _, hot in vals]
    balances += list(extra_balances)
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=0,
        params=dict(params or {}),
        balances=tuple(balances),
        validators=tuple(GenesisValidator(hot.public_key, cold.public_key, stake) for cold, hot in vals),
        subnets=subnets,
    )


def open_chain(path: str | Path, genesis: Genesis) -> BlockTree:
    store = Store(path)
    reader, acc, header = build_genesis_state(genesis)
    store.initialise(header, reader, acc)
    return BlockTree(store)


_DEV_HOTKEYS: dict[bytes, Keypair] = {}


def dev_hotkey(public_key: bytes) -> Keypair:
    """The development validator hotkey with this public key (the first 64 are searched)."""
    if not _DEV_HOTKEYS:
        _DEV_HOTKEYS.update((hot.public_key, hot) for _, hot in validator_keys(64))
    return _DEV_HOTKEYS[public_key]


def finality_votes(chain: BlockTree, epoch: int) -> list[SignedVote]:
    """The finality vote of every member of `epoch`'s validator set (development keys) for the
    head's checkpoint of `epoch`, from the justified checkpoint: what honest validators send in
    the middle of the epoch."""
    state, head = chain.head_state(), chain.head
    target = finality.vote_target(state, head.hash, head.height, head.slot, epoch)
    source = finality.justified_checkpoint(state)
    vset = consensus.validator_set_for_epoch(state, epoch)
    assert target is not None and source is not None and vset is not None
    votes = []
    for hot, _ in vset.validators:
        vote = FinalityVote(chain=head.chain, validator=hot, source=source, target=target)
        votes.append(SignedVote(vote=vote, sig=dev_hotkey(hot).sign(vote.signing_bytes())))
    return votes


def build_and_import(
    chain: BlockTree, slot: int | None = None, txs: Sequence[SignedTx] = (), votes: Sequence[SignedVote] = ()
) -> Block:
    """Build the block of `slot` (default: the slot after the head) signed by that slot's proposer
    among the development validators, import it and return it."""
    slot = chain.head.slot + 1 if slot is None else slot
    proposer = consensus.proposer_for_slot(chain.head_state(), slot)
    block = chain.build_block(dev_hotkey(proposer), slot, list(txs), list(votes))
    chain.import_block(block)
    return block


def signed(key: Keypair, nonce: int, body: ChainObject, *, fee: int = 1_000, chain_id: str = DEV_CHAIN_ID) -> SignedTx:
    tx = make_tx(chain_id, key.public_key, nonce, fee, body)
    return SignedTx(tx=tx, sig=key.sign(tx.signing_bytes()))


def bound(hotkey: Keypair, coldkey: Keypair | bytes, chain_id: str = DEV_CHAIN_ID) -> bytes:
    """The hotkey's consent to be owned by `coldkey` (the `hotkey_sig` of AddStake/Register/CreateSubnet)."""
    cold = coldkey if isinstance(coldkey, bytes) else coldkey.public_key
    return hotkey.sign(hotkey_binding_message(chain_id, cold))


def recompute_root(items: object) -> bytes:
    """The state root computed from scratch over (key, value) pairs (cross-check of the incremental one)."""
    from p2pnode.chain.state import root_of_items

    return root_of_items(dict(items))  # type: ignore[call-overload]
