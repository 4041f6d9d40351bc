"""Chain objects: transactions, finality votes, block headers and blocks.

Signatures are not checked here (the chain core is stdlib-only): `protocols.validation` verifies
every signature statelessly before a transaction or block reaches the state transition. What is
signed is defined here: a domain tag, the chain id and the object's canonical bytes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from p2pnode.chain.encoding import encode, sha256
from p2pnode.chain.schema import (
    B32,
    B64,
    HEIGHT,
    U16,
    U32,
    U64,
    Bytes,
    ChainObject,
    FieldType,
    ListOf,
    SchemaError,
    Struct,
    Text,
    canonical_bytes,
    chain_object,
    from_plain,
    to_plain,
)

# Domain tags: a signature made for one purpose can never be valid for another.
DOMAIN_TX = b"p2pnode/tx/v1\x00"
DOMAIN_BLOCK = b"p2pnode/block/v1\x00"
DOMAIN_VOTE = b"p2pnode/vote/v1\x00"
DOMAIN_REQUEST = b"p2pnode/request/v1\x00"
DOMAIN_RANDAO = b"p2pnode/randao/v1\x00"
DOMAIN_HOTKEY_BINDING = b"p2pnode/hotkey-binding/v1\x00"

MAX_CHAIN_ID = 64
# A chain id is printable ASCII of at most MAX_CHAIN_ID bytes: it is written with a one-byte length
# into every signed message and into topic names.
CHAIN_ID = Text(MAX_CHAIN_ID, printable_ascii=True)
MAX_UIDS_PER_WEIGHTS = 4096
MAX_TXS_PER_BLOCK = 4096
MAX_VOTES_PER_BLOCK = 1024
ZERO_HASH = bytes(32)


class BadChainId(SchemaError):
    """A chain id that is not printable ASCII of at most MAX_CHAIN_ID bytes."""


def check_chain_id(chain_id: str) -> str:
    """`chain_id` if it is a valid chain id; raises BadChainId naming the problem."""
    try:
        return CHAIN_ID.check(chain_id, "chain id")
    except SchemaError as exc:
        raise BadChainId(str(exc)) from None


def signing_message(domain: bytes, chain_id: str, payload: bytes) -> bytes:
    chain = check_chain_id(chain_id).encode("ascii")
    return domain + len(chain).to_bytes(1, "big") + chain + payload


def randao_message(chain_id: str, slot: int) -> bytes:
    """What a proposer signs for its block's `randao_reveal`: the slot, nothing it can choose.

    Ed25519 signatures are deterministic, so a proposer has exactly one valid reveal per slot; it
    can only withhold its block (and lose the slot), never pick among reveals.
    """
    return signing_message(DOMAIN_RANDAO, chain_id, slot.to_bytes(8, "big"))


def hotkey_binding_message(chain_id: str, coldkey: bytes) -> bytes:
    """What a hotkey signs to let `coldkey` own it (the `hotkey_sig` of AddStake, Register and
    CreateSubnet): without it, anyone who saw a hotkey could claim it first."""
    return signing_message(DOMAIN_HOTKEY_BINDING, chain_id, coldkey)


# A hotkey's signature of hotkey_binding_message, or empty when the hotkey is already owned.
HOTKEY_SIG = Bytes(max_len=64)


# ---------------------------------------------------------------- transaction bodies


@chain_object
class Transfer(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"to": B32, "amount": U64}
    to: bytes
    amount: int


@chain_object
class AddStake(ChainObject):
    """Stake `amount` of the sender coldkey's balance on `hotkey` (own or delegated); staking on a
    hotkey nobody owns yet makes the sender its owner, and needs the hotkey's `hotkey_sig`."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"hotkey": B32, "amount": U64, "hotkey_sig": HOTKEY_SIG}
    hotkey: bytes
    amount: int
    hotkey_sig: bytes = b""


@chain_object
class RemoveStake(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"hotkey": B32, "amount": U64}
    hotkey: bytes
    amount: int


@chain_object
class SetTake(ChainObject):
    """The hotkey's delegate take (u16 proportion of 65535), set by its owning coldkey."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"hotkey": B32, "take": U16}
    hotkey: bytes
    take: int


@chain_object
class Register(ChainObject):
    """Burn to register `hotkey` (owned by the sending coldkey, or bound to it by `hotkey_sig`)."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"netuid": U16, "hotkey": B32, "max_burn": U64, "hotkey_sig": HOTKEY_SIG}
    netuid: int
    hotkey: bytes
    max_burn: int
    hotkey_sig: bytes = b""


@chain_object
class Serve(ChainObject):
    """Sent by a hotkey: its uid on `netuid` serves `model` at libp2p `peer_id`."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"netuid": U16, "peer_id": Text(128), "model": Text(128)}
    netuid: int
    peer_id: str
    model: str


@chain_object
class SetWeights(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "netuid": U16,
        "uids": ListOf(U16, MAX_UIDS_PER_WEIGHTS),
        "values": ListOf(U16, MAX_UIDS_PER_WEIGHTS),
        "version_key": U64,
    }
    netuid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int

    def validate_shape(self, where: str) -> None:
        if len(self.uids) != len(self.values):
            raise SchemaError(f"{where}: uids and values differ in length")


@chain_object
class CommitWeights(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"netuid": U16, "commit_hash": B32}
    netuid: int
    commit_hash: bytes


@chain_object
class RevealWeights(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "netuid": U16,
        "uids": ListOf(U16, MAX_UIDS_PER_WEIGHTS),
        "values": ListOf(U16, MAX_UIDS_PER_WEIGHTS),
        "salt": Bytes(max_len=64),
        "version_key": U64,
    }
    netuid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    salt: bytes
    version_key: int

    def validate_shape(self, where: str) -> None:
        if len(self.uids) != len(self.values):
            raise SchemaError(f"{where}: uids and values differ in length")


@chain_object
class CreateSubnet(ChainObject):
    """Lock the subnet lock cost from the sender coldkey; `hotkey` becomes the owner hotkey."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"hotkey": B32, "task": Text(64), "max_lock": U64, "hotkey_sig": HOTKEY_SIG}
    hotkey: bytes
    task: str
    max_lock: int
    hotkey_sig: bytes = b""


@chain_object
class SetHyperparameter(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"netuid": U16, "name": Text(64), "value": U64}
    netuid: int
    name: str
    value: int


PROPOSAL_ACTIONS = frozenset({"set_param", "create_subnet", "upgrade", "signal"})


@chain_object
class Propose(ChainObject):
    """A governance proposal. Fields not used by `action` must be empty / zero."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "action": Text(32, PROPOSAL_ACTIONS),
        "param": Text(64),
        "value": U64,
        "owner": Bytes(max_len=32),
        "task": Text(64),
        "version": U32,
        "activation_height": HEIGHT,
        "text": Text(2048),
    }
    action: str
    param: str
    value: int
    owner: bytes
    task: str
    version: int
    activation_height: int
    text: str


VOTE_CHOICES = frozenset({"yes", "no", "abstain"})


@chain_object
class GovVote(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"proposal": U64, "choice": Text(8, VOTE_CHOICES)}
    proposal: int
    choice: str


# ---------------------------------------------------------------- finality votes and headers


@chain_object
class Checkpoint(ChainObject):
    """The block a finality epoch starts from; `epoch` orders checkpoints for the slashing rules."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"epoch": HEIGHT, "height": HEIGHT, "hash": B32}
    epoch: int
    height: int
    hash: bytes


@chain_object
class FinalityVote(ChainObject):
    """A block validator's vote linking a justified `source` checkpoint to a `target` checkpoint."""

    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "chain": CHAIN_ID,
        "validator": B32,
        "source": Struct(Checkpoint),
        "target": Struct(Checkpoint),
    }
    chain: str
    validator: bytes
    source: Checkpoint
    target: Checkpoint

    def signing_bytes(self) -> bytes:
        return signing_message(DOMAIN_VOTE, self.chain, canonical_bytes(self))


@chain_object
class SignedVote(ChainObject):
    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {"vote": Struct(FinalityVote), "sig": B64}
    vote: FinalityVote
    sig: bytes

    @property
    def id(self) -> bytes:
        return sha256(canonical_bytes(self))


@chain_object
class Header(ChainObject):
    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "chain": CHAIN_ID,
        "version": U32,
        "height": HEIGHT,
        "slot": HEIGHT,
        "parent": B32,
        "proposer": B32,
        "state_root": B32,
        "tx_root": B32,
        "timestamp_ms": U64,
        "randao_reveal": B64,
    }
    chain: str
    version: int
    height: int
    slot: int
    parent: bytes
    proposer: bytes
    state_root: bytes
    tx_root: bytes
    timestamp_ms: int  # always the slot's start: genesis_time_ms + slot * slot_ms
    randao_reveal: bytes  # the proposer's signature of randao_message(chain, slot)

    @property
    def hash(self) -> bytes:
        return sha256(canonical_bytes(self))

    def signing_bytes(self) -> bytes:
        return signing_message(DOMAIN_BLOCK, self.chain, canonical_bytes(self))


@chain_object
class SignedHeader(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"header": Struct(Header), "sig": B64}
    header: Header
    sig: bytes


@chain_object
class SlashDoubleProposal(ChainObject):
    """Evidence: one proposer signed two different headers for the same slot."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"first": Struct(SignedHeader), "second": Struct(SignedHeader)}
    first: SignedHeader
    second: SignedHeader


@chain_object
class SlashVote(ChainObject):
    """Evidence: one validator signed a double vote or a surround vote."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {"first": Struct(SignedVote), "second": Struct(SignedVote)}
    first: SignedVote
    second: SignedVote


TX_BODIES: dict[str, type[ChainObject]] = {
    "transfer": Transfer,
    "add_stake": AddStake,
    "remove_stake": RemoveStake,
    "set_take": SetTake,
    "register": Register,
    "serve": Serve,
    "set_weights": SetWeights,
    "commit_weights": CommitWeights,
    "reveal_weights": RevealWeights,
    "create_subnet": CreateSubnet,
    "set_hyperparameter": SetHyperparameter,
    "propose": Propose,
    "vote": GovVote,
    "slash_double_proposal": SlashDoubleProposal,
    "slash_vote": SlashVote,
}
TX_KIND_OF = {cls: kind for kind, cls in TX_BODIES.items()}


class TxBodyField:
    """The body of a Tx: typed by the sibling `kind` field (resolved in Tx.validate_shape)."""

    def check(self, value: Any, path: str) -> Any:
        if type(value) is not dict:
            raise SchemaError(f"{path}: expected map, got {type(value).__name__}")
        return value

    def plain(self, value: Any) -> dict[str, Any]:
        return to_plain(value)


@chain_object
class Tx(ChainObject):
    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "chain": CHAIN_ID,
        "kind": Text(32, frozenset(TX_BODIES)),
        "sender": B32,
        "nonce": U64,
        "fee": U64,
        "body": TxBodyField(),
    }
    chain: str
    kind: str
    sender: bytes
    nonce: int
    fee: int
    body: Any

    def validate_shape(self, where: str) -> None:
        if type(self.body) is dict:
            object.__setattr__(self, "body", from_plain(TX_BODIES[self.kind], self.body, f"{where}.body"))
        elif TX_KIND_OF.get(type(self.body)) != self.kind:
            raise SchemaError(f"{where}: body does not match kind {self.kind!r}")

    def signing_bytes(self) -> bytes:
        return signing_message(DOMAIN_TX, self.chain, canonical_bytes(self))


@chain_object
class SignedTx(ChainObject):
    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {"tx": Struct(Tx), "sig": B64}
    tx: Tx
    sig: bytes

    @property
    def id(self) -> bytes:
        return sha256(canonical_bytes(self))


def make_tx(chain: str, sender: bytes, nonce: int, fee: int, body: ChainObject) -> Tx:
    tx = Tx(chain=chain, kind=TX_KIND_OF[type(body)], sender=sender, nonce=nonce, fee=fee, body=body)
    tx.validate_shape("Tx")
    return tx


@chain_object
class Block(ChainObject):
    KEEP_ENCODING = True
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "header": Struct(Header),
        "sig": B64,
        "txs": ListOf(Struct(SignedTx), MAX_TXS_PER_BLOCK),
        "votes": ListOf(Struct(SignedVote), MAX_VOTES_PER_BLOCK),
    }
    header: Header
    sig: bytes
    txs: tuple[SignedTx, ...]
    votes: tuple[SignedVote, ...]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def signed_header(self) -> SignedHeader:
        return SignedHeader(header=self.header, sig=self.sig)


def body_root(txs: tuple[SignedTx, ...] | list[SignedTx], votes: tuple[SignedVote, ...] | list[SignedVote]) -> bytes:
    """Commitment to a block's transactions and votes, in order."""
    return sha256(encode([[t.id for t in txs], [v.id for v in votes]]))
