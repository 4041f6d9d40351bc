"""Records of subnets: the subnet, its neurons, their weight commits and the epoch receipts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.chain.records.fields import (
    MapLayout,
    check_bool,
    check_bytes,
    check_int,
    check_key,
    check_key_or_empty,
    check_str,
    check_uint,
    int_map,
    list_fields,
    records_from_state,
    records_to_state,
    uid_pairs,
)

# ---------------------------------------------------------------- subnets and neurons


_SUBNET_LAYOUT = MapLayout(
    "subnet",
    required=(
        ("owner_coldkey", "owner_cold", check_key_or_empty),
        ("owner_hotkey", "owner_hot", check_key_or_empty),
        ("task", "task", check_str),
        ("hyperparams", "hp", int_map),
        ("uid_count", "n", check_uint),
        ("pending_emission", "pending", check_uint),
        ("last_epoch_block", "last_epoch", check_int),
        ("epoch_index", "epoch_index", check_uint),
        ("created_block", "created", check_uint),
        ("locked", "lock", check_uint),
    ),
    optional=(
        ("adjusted_burn", "burn", check_uint),
        ("interval_registrations", "regs_interval", check_uint),
        ("interval_start", "interval_start", check_uint),
    ),
)


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
        return cls(**_SUBNET_LAYOUT.read(value))

    def to_state(self) -> dict[str, Any]:
        return _SUBNET_LAYOUT.write(self)

    @property
    def registration_burn(self) -> int:
        """What a registration burns now."""
        return self.hyperparams["registration_burn"] if self.adjusted_burn is None else self.adjusted_burn

    @property
    def registrations_this_interval(self) -> int:
        return self.interval_registrations or 0


_NEURON_LAYOUT = MapLayout(
    "neuron",
    required=(
        ("hotkey", "hot", check_key),
        ("registered_block", "registered", check_uint),
        ("last_update", "last_update", check_uint),
        ("peer_id", "peer_id", check_str),
        ("model", "model", check_str),
        ("validator_permit", "permit", check_bool),
        ("weights", "weights", uid_pairs),
        ("bonds", "bonds", uid_pairs),
        ("consensus", "consensus", check_uint),
        ("incentive", "incentive", check_uint),
        ("dividends", "dividends", check_uint),
        ("trust", "trust", check_uint),
        ("emission", "emission", check_uint),
        ("active", "active", check_bool),
    ),
    optional=(("weights_set_block", "weights_set_at", check_uint),),
)


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
        return cls(**_NEURON_LAYOUT.read(value))

    def to_state(self) -> dict[str, Any]:
        # Pairs are tuples here; canonical CBOR encodes a tuple exactly as the list it was read from.
        return _NEURON_LAYOUT.write(self)


@dataclass(frozen=True, slots=True)
class WeightCommit:
    """One entry of `C|netuid|hot`: an unrevealed weights commit (hash, epoch index and block it was made at)."""

    commit_hash: bytes
    epoch: int
    block: int

    @classmethod
    def from_state(cls, value: Any) -> WeightCommit:
        return cls(*list_fields("weight commit", value, (("hash", check_bytes), ("epoch", check_uint),
                                                         ("block", check_uint)), "entry"))

    def to_state(self) -> list[Any]:
        return [self.commit_hash, self.epoch, self.block]

    @staticmethod
    def list_from_state(value: Any) -> list[WeightCommit]:
        return records_from_state("weight commit", "commits", value, WeightCommit.from_state)

    @staticmethod
    def list_to_state(commits: list[WeightCommit]) -> list[list[Any]]:
        return records_to_state(commits)


@dataclass(frozen=True, slots=True)
class EpochReceipt:
    """One entry of `E|netuid`: a subnet epoch the chain ran, and the hashes of its inputs and outputs."""

    epoch: int
    block: int
    inputs_hash: bytes
    outputs_hash: bytes

    @classmethod
    def from_state(cls, value: Any) -> EpochReceipt:
        return cls(*list_fields("epoch receipt", value, (("epoch", check_uint), ("block", check_uint),
                                                         ("inputs_hash", check_bytes), ("outputs_hash", check_bytes)), "entry"))

    def to_state(self) -> list[Any]:
        return [self.epoch, self.block, self.inputs_hash, self.outputs_hash]

    @staticmethod
    def list_from_state(value: Any) -> list[EpochReceipt]:
        return records_from_state("epoch receipt", "receipts", value, EpochReceipt.from_state)

    @staticmethod
    def list_to_state(receipts: list[EpochReceipt]) -> list[list[Any]]:
        return records_to_state(receipts)
