"""The records stored in chain state, one dataclass per kind, and their exact stored form.

`statekeys` says where a record lives; this module says what it is. Each record kind decodes the
value found at its key with `from_state(value)` (the already-CBOR-decoded value) and gives it back
with `to_state()`, and the two round-trip exactly: `encode(Kind.from_state(v).to_state())` is the
stored bytes again, so state roots, golden vectors, genesis and block hashes do not depend on this
module. Stored map keys keep their short historical names ("hot", "hp", "n"); the attributes say
what the fields are.

A stored value of the wrong shape (a missing or unknown field, a wrong type, a negative amount)
raises `MalformedRecord`: the node wrote every value itself, so that is a bug or a corrupted store,
never input to tolerate.

Optional map fields (a subnet's registration burn once adjusted, a neuron's last weight set) are
`None` while absent: an absent field and a field holding its default encode differently, and the
state root sees the difference.

Small value records are frozen (but for the hot `Account`); subnets, neurons and proposals are mutable (a transaction reads
one, changes it and writes it back), each `from_state` returning a fresh copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from p2pnode.chain import statekeys
from p2pnode.chain.encoding import DecodeError
from p2pnode.chain.types import VOTE_CHOICES, Checkpoint

KEY_LEN = 32


class MalformedRecord(DecodeError):
    """A stored value does not have the shape of its record kind (a bug or a corrupted store)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"malformed {kind} record: {detail}")
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------- field checks


def _uint(kind: str, name: str, value: Any) -> int:
    if type(value) is not int or value < 0:
        raise MalformedRecord(kind, f"{name} is not an unsigned integer")
    return value  # type: ignore[no-any-return]


def _int(kind: str, name: str, value: Any) -> int:
    if type(value) is not int:
        raise MalformedRecord(kind, f"{name} is not an integer")
    return value  # type: ignore[no-any-return]


def _key(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) != KEY_LEN:
        raise MalformedRecord(kind, f"{name} is not a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def _key_or_empty(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) not in (0, KEY_LEN):
        raise MalformedRecord(kind, f"{name} is neither empty nor a {KEY_LEN}-byte key")
    return value  # type: ignore[no-any-return]


def _bytes(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes:
        raise MalformedRecord(kind, f"{name} is not bytes")
    return value  # type: ignore[no-any-return]


def _str(kind: str, name: str, value: Any) -> str:
    if type(value) is not str:
        raise MalformedRecord(kind, f"{name} is not text")
    return value  # type: ignore[no-any-return]


def _bool(kind: str, name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise MalformedRecord(kind, f"{name} is not a bool")
    return value  # type: ignore[no-any-return]


def _list(kind: str, name: str, value: Any, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        raise MalformedRecord(kind, f"{name} is not a list" + ("" if length is None else f" of {length}"))
    return value  # type: ignore[no-any-return]


def _uid_pairs(kind: str, name: str, value: Any) -> tuple[tuple[int, int], ...]:
    """A sparse row stored as [[uid, value], ...] (weights, bonds), as a tuple of pairs."""
    if type(value) is not list:
        raise MalformedRecord(kind, f"{name} is not a list")
    row = []
    for entry in value:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int or type(entry[1]) is not int:
            raise MalformedRecord(kind, f"{name} has an entry that is not [uid, value]")
        row.append((entry[0], entry[1]))
    return tuple(row)


def _int_map(kind: str, name: str, value: Any) -> dict[str, int]:
    if type(value) is not dict or any(type(k) is not str or type(v) is not int for k, v in value.items()):
        raise MalformedRecord(kind, f"{name} is not a map of names to integers")
    return dict(value)


def _fields(kind: str, value: Any, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`value` as a map holding every required field and no field outside required | optional."""
    if type(value) is not dict:
        raise MalformedRecord(kind, "not a map")
    present = value.keys()
    if not required <= present:
        raise MalformedRecord(kind, f"missing {sorted(required - present)}")
    if len(value) > len(required) and not present <= required | optional:
        raise MalformedRecord(kind, f"unknown {sorted(present - required - optional)}")
    return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- accounts and hotkeys


@dataclass(slots=True)
class Account:
    """`A|pub`: a key's free balance and the nonce its next transaction must carry.

    An account with both at zero is not stored (`State.set_account` deletes it). Read several times
    per transaction, so not frozen (a frozen dataclass is built about twice as slowly) and decoded
    with the checks inline."""

    balance: int = 0
    nonce: int = 0

    @classmethod
    def from_state(cls, value: Any) -> Account:
        if type(value) is not list or len(value) != 2:
            raise MalformedRecord("account", "not [balance, nonce]")
        balance, nonce = value
        if type(balance) is int and type(nonce) is int and balance >= 0 and nonce >= 0:
            return cls(balance, nonce)
        _uint("account", "balance", balance)
        raise MalformedRecord("account", "nonce is not an unsigned integer")

    def to_state(self) -> list[int]:
        return [self.balance, self.nonce]


@dataclass(frozen=True, slots=True)
class HotkeyRecord:
    """`H|hot`: the coldkey that owns a hotkey and the take (of 65535) it keeps of dividends."""

    owner: bytes
    take: int

    @classmethod
    def from_state(cls, value: Any) -> HotkeyRecord:
        _list("hotkey", "record", value, 2)
        return cls(_key("hotkey", "owner", value[0]), _uint("hotkey", "take", value[1]))

    def to_state(self) -> list[Any]:
        return [self.owner, self.take]


# ---------------------------------------------------------------- subnets and neurons


_SUBNET_REQUIRED = frozenset({"owner_cold", "owner_hot", "task", "hp", "n", "pending", "last_epoch", "epoch_index",
                              "created", "lock"})
_SUBNET_OPTIONAL = frozenset({"burn", "regs_interval", "interval_start"})


@dataclass(slots=True)
class Subnet:
    """`N|netuid`: a subnet's owner, task, hyperparameters, size and epoch bookkeeping."""

    owner_coldkey: bytes  # empty for the root subnet
    owner_hotkey: bytes  # empty for the root subnet
    task: str
    hyperparams: dict[str, int]
    uid_count: int  # uids 0..uid_count-1 are registered
    pending_emission: int  # emission accrued since the last epoch
    last_epoch_block: int  # negative at genesis: subnets' first epochs are staggered
    epoch_index: int  # epochs run so far
    created_block: int
    locked: int  # the lock its creator paid
    # Absent until the first burn adjustment / registration: None keeps them absent in state.
    adjusted_burn: int | None = None  # the registration burn once adjusted (else hyperparams')
    interval_registrations: int | None = None  # registrations in the current adjustment interval
    interval_start: int | None = None  # block the current adjustment interval began (else created_block)

    @classmethod
    def from_state(cls, value: Any) -> Subnet:
        k = "subnet"
        v = _fields(k, value, _SUBNET_REQUIRED, _SUBNET_OPTIONAL)
        return cls(
            owner_coldkey=_key_or_empty(k, "owner_cold", v["owner_cold"]),
            owner_hotkey=_key_or_empty(k, "owner_hot", v["owner_hot"]),
            task=_str(k, "task", v["task"]),
            hyperparams=_int_map(k, "hp", v["hp"]),
            uid_count=_uint(k, "n", v["n"]),
            pending_emission=_uint(k, "pending", v["pending"]),
            last_epoch_block=_int(k, "last_epoch", v["last_epoch"]),
            epoch_index=_uint(k, "epoch_index", v["epoch_index"]),
            created_block=_uint(k, "created", v["created"]),
            locked=_uint(k, "lock", v["lock"]),
            adjusted_burn=_uint(k, "burn", v["burn"]) if "burn" in v else None,
            interval_registrations=_uint(k, "regs_interval", v["regs_interval"]) if "regs_interval" in v else None,
            interval_start=_uint(k, "interval_start", v["interval_start"]) if "interval_start" in v else None,
        )

    def to_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "owner_cold": self.owner_coldkey,
            "owner_hot": self.owner_hotkey,
            "task": self.task,
            "hp": self.hyperparams,
            "n": self.uid_count,
            "pending": self.pending_emission,
            "last_epoch": self.last_epoch_block,
            "epoch_index": self.epoch_index,
            "created": self.created_block,
            "lock": self.locked,
        }
        if self.adjusted_burn is not None:
            out["burn"] = self.adjusted_burn
        if self.interval_registrations is not None:
            out["regs_interval"] = self.interval_registrations
        if self.interval_start is not None:
            out["interval_start"] = self.interval_start
        return out

    @property
    def registration_burn(self) -> int:
        """What a registration burns now."""
        return self.hyperparams["registration_burn"] if self.adjusted_burn is None else self.adjusted_burn

    @property
    def registrations_this_interval(self) -> int:
        return self.interval_registrations or 0


_NEURON_REQUIRED = frozenset({"hot", "registered", "last_update", "peer_id", "model", "permit", "weights", "bonds",
                              "consensus", "incentive", "dividends", "trust", "emission", "active"})
_NEURON_OPTIONAL = frozenset({"weights_set_at"})


@dataclass(slots=True)
class Neuron:
    """`U|netuid|uid`: a registered uid: its hotkey, what it serves, its weights and its last epoch's results.

    Consensus, incentive, dividends and trust are u16 fractions of 65535; emission is in rao."""

    hotkey: bytes
    registered_block: int
    last_update: int  # block of its last weights (set or committed)
    peer_id: str = ""
    model: str = ""
    validator_permit: bool = False
    weights: tuple[tuple[int, int], ...] = ()  # (uid, u16 weight), sorted by uid, max-upscaled
    bonds: tuple[tuple[int, int], ...] = ()  # (uid, u16 bond)
    consensus: int = 0
    incentive: int = 0
    dividends: int = 0
    trust: int = 0
    emission: int = 0
    active: bool = True
    weights_set_block: int | None = None  # block of its last direct weight set (absent until one)

    @classmethod
    def from_state(cls, value: Any) -> Neuron:
        k = "neuron"
        v = _fields(k, value, _NEURON_REQUIRED, _NEURON_OPTIONAL)
        return cls(
            hotkey=_key(k, "hot", v["hot"]),
            registered_block=_uint(k, "registered", v["registered"]),
            last_update=_uint(k, "last_update", v["last_update"]),
            peer_id=_str(k, "peer_id", v["peer_id"]),
            model=_str(k, "model", v["model"]),
            validator_permit=_bool(k, "permit", v["permit"]),
            weights=_uid_pairs(k, "weights", v["weights"]),
            bonds=_uid_pairs(k, "bonds", v["bonds"]),
            consensus=_uint(k, "consensus", v["consensus"]),
            incentive=_uint(k, "incentive", v["incentive"]),
            dividends=_uint(k, "dividends", v["dividends"]),
            trust=_uint(k, "trust", v["trust"]),
            emission=_uint(k, "emission", v["emission"]),
            active=_bool(k, "active", v["active"]),
            weights_set_block=_uint(k, "weights_set_at", v["weights_set_at"]) if "weights_set_at" in v else None,
        )

    def to_state(self) -> dict[str, Any]:
        # Pairs are tuples here; canonical CBOR encodes a tuple exactly as the list it was read from.
        out: dict[str, Any] = {
            "hot": self.hotkey,
            "registered": self.registered_block,
            "last_update": self.last_update,
            "peer_id": self.peer_id,
            "model": self.model,
            "permit": self.validator_permit,
            "weights": self.weights,
            "bonds": self.bonds,
            "consensus": self.consensus,
            "incentive": self.incentive,
            "dividends": self.dividends,
            "trust": self.trust,
            "emission": self.emission,
            "active": self.active,
        }
        if self.weights_set_block is not None:
            out["weights_set_at"] = self.weights_set_block
        return out


@dataclass(frozen=True, slots=True)
class WeightCommit:
    """One entry of `C|netuid|hot`: an unrevealed weights commit (hash, epoch index and block it was made at)."""

    commit_hash: bytes
    epoch: int
    block: int

    @classmethod
    def from_state(cls, value: Any) -> WeightCommit:
        _list("weight commit", "entry", value, 3)
        return cls(_bytes("weight commit", "hash", value[0]), _uint("weight commit", "epoch", value[1]),
                   _uint("weight commit", "block", value[2]))

    def to_state(self) -> list[Any]:
        return [self.commit_hash, self.epoch, self.block]

    @staticmethod
    def list_from_state(value: Any) -> list[WeightCommit]:
        return [WeightCommit.from_state(entry) for entry in _list("weight commit", "commits", value)]

    @staticmethod
    def list_to_state(commits: list[WeightCommit]) -> list[list[Any]]:
        return [c.to_state() for c in commits]


@dataclass(frozen=True, slots=True)
class EpochReceipt:
    """One entry of `E|netuid`: a subnet epoch the chain ran, and the hashes of its inputs and outputs."""

    epoch: int
    block: int
    inputs_hash: bytes
    outputs_hash: bytes

    @classmethod
    def from_state(cls, value: Any) -> EpochReceipt:
        k = "epoch receipt"
        _list(k, "entry", value, 4)
        return cls(_uint(k, "epoch", value[0]), _uint(k, "block", value[1]), _bytes(k, "inputs_hash", value[2]),
                   _bytes(k, "outputs_hash", value[3]))

    def to_state(self) -> list[Any]:
        return [self.epoch, self.block, self.inputs_hash, self.outputs_hash]

    @staticmethod
    def list_from_state(value: Any) -> list[EpochReceipt]:
        return [EpochReceipt.from_state(entry) for entry in _list("epoch receipt", "receipts", value)]

    @staticmethod
    def list_to_state(receipts: list[EpochReceipt]) -> list[list[Any]]:
        return [r.to_state() for r in receipts]


# ---------------------------------------------------------------- supply


_SUPPLY_FIELDS = frozenset({"genesis", "emitted", "burned", "locked"})


@dataclass(frozen=True, slots=True)
class Supply:
    """`G|supply`: where every rao came from and where it is outside balances and stake.

    balances + stake + burned + locked == genesis + emitted, after every block."""

    genesis: int
    emitted: int
    burned: int
    locked: int

    @classmethod
    def from_state(cls, value: Any) -> Supply:
        v = _fields("supply", value, _SUPPLY_FIELDS)
        return cls(*(_uint("supply", name, v[name]) for name in ("genesis", "emitted", "burned", "locked")))

    def to_state(self) -> dict[str, int]:
        return {"genesis": self.genesis, "emitted": self.emitted, "burned": self.burned, "locked": self.locked}

    def plus(self, counter: str, amount: int) -> Supply:
        """This supply with `amount` added to one counter ("emitted", "burned", "locked")."""
        if counter not in _SUPPLY_FIELDS:
            raise ValueError(f"not a supply counter: {counter!r}")  # callers name a fixed counter
        return replace(self, **{counter: getattr(self, counter) + amount})


# ---------------------------------------------------------------- block validators


_VSET_FIELDS = frozenset({"epoch", "validators", "seed"})


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """`G|vset_prev`, `G|vset`, `G|vset_next`: the block validators of an epoch with their stake, and
    the seed that draws its proposers. Validators are sorted by hotkey."""

    epoch: int
    validators: tuple[tuple[bytes, int], ...]  # (hotkey, stake)
    seed: bytes

    @classmethod
    def from_state(cls, value: Any) -> ValidatorSet:
        k = "validator set"
        v = _fields(k, value, _VSET_FIELDS)
        validators = []
        for entry in _list(k, "validators", v["validators"]):
            _list(k, "validator", entry, 2)
            validators.append((_key(k, "hotkey", entry[0]), _uint(k, "stake", entry[1])))
        return cls(_uint(k, "epoch", v["epoch"]), tuple(validators), _bytes(k, "seed", v["seed"]))

    def to_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "validators": self.validators, "seed": self.seed}

    def stake_of(self, hotkey: bytes) -> int:
        """The validator's stake in this set, 0 for a hotkey that is not in it."""
        for hot, stake in self.validators:
            if hot == hotkey:
                return stake
        return 0

    @property
    def total_stake(self) -> int:
        return sum(stake for _, stake in self.validators)


# ---------------------------------------------------------------- finality


def checkpoint_from_state(kind: str, value: Any) -> Checkpoint:
    """A checkpoint stored as [epoch, height, hash] (in the finality record, and in store meta)."""
    _list(kind, "checkpoint", value, 3)
    return Checkpoint(epoch=_uint(kind, "checkpoint epoch", value[0]), height=_uint(kind, "checkpoint height", value[1]),
                      hash=_key(kind, "checkpoint hash", value[2]))


def checkpoint_to_state(cp: Checkpoint) -> list[Any]:
    return [cp.epoch, cp.height, cp.hash]


def _checkpoint_order(cp: Checkpoint) -> tuple[int, int, bytes]:
    return cp.epoch, cp.height, cp.hash


_FFG_FIELDS = frozenset({"justified", "finalized", "checkpoints", "tallies"})


@dataclass(frozen=True, slots=True)
class FinalityRecord:
    """`G|ffg`: this chain's Casper-FFG progress (see `finality`)."""

    justified: tuple[Checkpoint, ...]  # the latest few justified checkpoints, oldest first
    finalized: Checkpoint | None  # None before block 1
    checkpoints: tuple[Checkpoint, ...]  # this chain's checkpoints of the last few epochs
    tally_epochs: tuple[int, ...]  # target epochs with a tally stored (`X|ffgtally|epoch`), ascending

    @classmethod
    def from_state(cls, value: Any) -> FinalityRecord:
        k = "finality"
        v = _fields(k, value, _FFG_FIELDS)
        finalized = None if v["finalized"] is None else checkpoint_from_state(k, v["finalized"])
        return cls(
            justified=tuple(checkpoint_from_state(k, c) for c in _list(k, "justified", v["justified"])),
            finalized=finalized,
            checkpoints=tuple(checkpoint_from_state(k, c) for c in _list(k, "checkpoints", v["checkpoints"])),
            tally_epochs=tuple(_uint(k, "tally epoch", e) for e in _list(k, "tallies", v["tallies"])),
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "justified": [checkpoint_to_state(c) for c in self.justified],
            "finalized": None if self.finalized is None else checkpoint_to_state(self.finalized),
            "checkpoints": [checkpoint_to_state(c) for c in self.checkpoints],
            "tallies": list(self.tally_epochs),
        }

    @staticmethod
    def sorted_checkpoints(checkpoints: list[Checkpoint]) -> tuple[Checkpoint, ...]:
        """In stored order: by epoch, then height, then hash."""
        return tuple(sorted(checkpoints, key=_checkpoint_order))


EMPTY_FINALITY = FinalityRecord(justified=(), finalized=None, checkpoints=(), tally_epochs=())


@dataclass(frozen=True, slots=True)
class FfgLink:
    """One entry of `X|ffgtally|epoch`: the votes counted for one source -> target link."""

    source_epoch: int
    source_hash: bytes
    stake: int  # of the target epoch's validator set, summed over `voters`
    voters: tuple[bytes, ...]  # sorted

    @classmethod
    def from_state(cls, value: Any) -> FfgLink:
        k = "finality tally"
        _list(k, "link", value, 4)
        voters = tuple(_key(k, "voter", voter) for voter in _list(k, "voters", value[3]))
        return cls(_uint(k, "source_epoch", value[0]), _key(k, "source_hash", value[1]), _uint(k, "stake", value[2]),
                   voters)

    def to_state(self) -> list[Any]:
        return [self.source_epoch, self.source_hash, self.stake, list(self.voters)]

    @staticmethod
    def list_from_state(value: Any) -> list[FfgLink]:
        return [FfgLink.from_state(entry) for entry in _list("finality tally", "links", value)]

    @staticmethod
    def list_to_state(links: list[FfgLink]) -> list[list[Any]]:
        return [link.to_state() for link in links]


# ---------------------------------------------------------------- stake leaving and slashing


@dataclass(frozen=True, slots=True)
class UnbondingEntry:
    """One entry of `Y|hot`: stake a coldkey removed from the hotkey, paid out at `release_height`."""

    coldkey: bytes
    amount: int
    release_height: int

    @classmethod
    def from_state(cls, value: Any) -> UnbondingEntry:
        _list("unbonding", "entry", value, 3)
        return cls(_key("unbonding", "coldkey", value[0]), _uint("unbonding", "amount", value[1]),
                   _uint("unbonding", "release_height", value[2]))

    def to_state(self) -> list[Any]:
        return [self.coldkey, self.amount, self.release_height]

    @staticmethod
    def list_from_state(value: Any) -> list[UnbondingEntry]:
        return [UnbondingEntry.from_state(entry) for entry in _list("unbonding", "entries", value)]

    @staticmethod
    def list_to_state(entries: list[UnbondingEntry]) -> list[list[Any]]:
        return [e.to_state() for e in entries]


@dataclass(frozen=True, slots=True)
class SlashRecord:
    """`X|slashed|hot`: the height a hotkey was slashed at and the amount burned."""

    height: int
    burned: int

    @classmethod
    def from_state(cls, value: Any) -> SlashRecord:
        _list("slash", "record", value, 2)
        return cls(_uint("slash", "height", value[0]), _uint("slash", "burned", value[1]))

    def to_state(self) -> list[int]:
        return [self.height, self.burned]


# ---------------------------------------------------------------- governance


# Stored under the attribute names, in this order in the API's JSON.
_PROPOSAL_NAMES = ("id", "proposer", "action", "param", "value", "owner", "task", "version", "activation_height",
                   "text", "deposit", "start", "end", "enact_at", "status", "yes", "no", "abstain", "voters", "result")
_PROPOSAL_FIELDS = frozenset(_PROPOSAL_NAMES)


@dataclass(slots=True)
class Proposal:
    """`P|id`: a governance proposal, its stake-weighted tally and its lifecycle status."""

    id: int
    proposer: bytes
    action: str  # set_param | create_subnet | upgrade | signal
    param: str
    value: int
    owner: bytes  # the owner hotkey of a create_subnet proposal, else empty
    task: str
    version: int
    activation_height: int
    text: str
    deposit: int
    start: int  # block it was proposed at
    end: int  # last block of voting
    enact_at: int
    status: str  # voting | no_quorum | rejected | passed | enacted | failed
    yes: int = 0
    no: int = 0
    abstain: int = 0
    voters: int = 0
    result: str = ""  # what enactment did, or why it failed

    @classmethod
    def from_state(cls, value: Any) -> Proposal:
        k = "proposal"
        v = _fields(k, value, _PROPOSAL_FIELDS)
        return cls(
            id=_uint(k, "id", v["id"]), proposer=_key(k, "proposer", v["proposer"]), action=_str(k, "action", v["action"]),
            param=_str(k, "param", v["param"]), value=_uint(k, "value", v["value"]), owner=_key_or_empty(k, "owner", v["owner"]),
            task=_str(k, "task", v["task"]), version=_uint(k, "version", v["version"]),
            activation_height=_uint(k, "activation_height", v["activation_height"]), text=_str(k, "text", v["text"]),
            deposit=_uint(k, "deposit", v["deposit"]), start=_uint(k, "start", v["start"]), end=_uint(k, "end", v["end"]),
            enact_at=_uint(k, "enact_at", v["enact_at"]), status=_str(k, "status", v["status"]),
            yes=_uint(k, "yes", v["yes"]), no=_uint(k, "no", v["no"]), abstain=_uint(k, "abstain", v["abstain"]),
            voters=_uint(k, "voters", v["voters"]), result=_str(k, "result", v["result"]),
        )

    def to_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PROPOSAL_NAMES}

    def add_to_tally(self, choice: str, weight: int) -> None:
        """Add (or with a negative weight withdraw) a vote's weight to one of `VOTE_CHOICES`."""
        if choice == "yes":
            self.yes += weight
        elif choice == "no":
            self.no += weight
        elif choice == "abstain":
            self.abstain += weight
        else:
            raise ValueError(f"not a vote choice: {choice!r}")  # callers pass a validated choice


@dataclass(frozen=True, slots=True)
class ProposalVote:
    """`V|id|cold`: a coldkey's (latest) vote on a proposal and the stake it counted."""

    choice: str
    weight: int

    @classmethod
    def from_state(cls, value: Any) -> ProposalVote:
        _list("vote", "record", value, 2)
        choice = _str("vote", "choice", value[0])
        if choice not in VOTE_CHOICES:
            raise MalformedRecord("vote", f"choice {choice!r}")
        return cls(choice, _uint("vote", "weight", value[1]))

    def to_state(self) -> list[Any]:
        return [self.choice, self.weight]


@dataclass(frozen=True, slots=True)
class VoteLock:
    """`Q|cold`: stake a coldkey's open votes counted, locked until `until_height`."""

    amount: int
    until_height: int

    @classmethod
    def from_state(cls, value: Any) -> VoteLock:
        _list("vote lock", "record", value, 2)
        return cls(_uint("vote lock", "amount", value[0]), _uint("vote lock", "until_height", value[1]))

    def to_state(self) -> list[int]:
        return [self.amount, self.until_height]


# ---------------------------------------------------------------- which table holds which record


@dataclass(frozen=True, slots=True)
class RecordCodec:
    """How one table's stored value becomes its record (or list of records) and back."""

    from_state: Callable[[Any], Any]
    to_state: Callable[[Any], Any]


# Tables not listed hold plain values: stake amounts (S, T), sorted key lists (L, R, W), uids (K),
# heights (Z); the named globals (G) are listed in `GLOBAL_RECORDS` where they are records.
RECORDS_BY_TABLE: dict[bytes, RecordCodec] = {
    statekeys.ACCOUNT: RecordCodec(Account.from_state, Account.to_state),
    statekeys.HOTKEY: RecordCodec(HotkeyRecord.from_state, HotkeyRecord.to_state),
    statekeys.SUBNET: RecordCodec(Subnet.from_state, Subnet.to_state),
    statekeys.NEURON: RecordCodec(Neuron.from_state, Neuron.to_state),
    statekeys.COMMITS: RecordCodec(WeightCommit.list_from_state, WeightCommit.list_to_state),
    statekeys.EPOCH_RECEIPTS: RecordCodec(EpochReceipt.list_from_state, EpochReceipt.list_to_state),
    statekeys.UNBONDING: RecordCodec(UnbondingEntry.list_from_state, UnbondingEntry.list_to_state),
    statekeys.SLASHED: RecordCodec(SlashRecord.from_state, SlashRecord.to_state),
    statekeys.FFG_TALLY: RecordCodec(FfgLink.list_from_state, FfgLink.list_to_state),
    statekeys.PROPOSAL: RecordCodec(Proposal.from_state, Proposal.to_state),
    statekeys.VOTE: RecordCodec(ProposalVote.from_state, ProposalVote.to_state),
    statekeys.VOTE_LOCK: RecordCodec(VoteLock.from_state, VoteLock.to_state),
}

# Named globals (`G|name`) stored as a record.
GLOBAL_RECORDS: dict[str, RecordCodec] = {
    "supply": RecordCodec(Supply.from_state, Supply.to_state),
    "ffg": RecordCodec(FinalityRecord.from_state, FinalityRecord.to_state),
    **{name: RecordCodec(ValidatorSet.from_state, ValidatorSet.to_state) for name in ("vset_prev", "vset", "vset_next")},
}
