"""Records of subnets: the subnet, its neurons, their weight commits and the epoch receipts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.chain.records.fields import (
    check_bool,
    check_bytes,
    check_int,
    check_key,
    check_key_or_empty,
    check_list,
    check_str,
    check_uint,
    int_map,
    map_fields,
    uid_pairs,
)

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
        v = map_fields(k, value, _SUBNET_REQUIRED, _SUBNET_OPTIONAL)
        return cls(
            owner_coldkey=check_key_or_empty(k, "owner_cold", v["owner_cold"]),
            owner_hotkey=check_key_or_empty(k, "owner_hot", v["owner_hot"]),
            task=check_str(k, "task", v["task"]),
            hyperparams=int_map(k, "hp", v["hp"]),
            uid_count=check_uint(k, "n", v["n"]),
            pending_emission=check_uint(k, "pending", v["pending"]),
            last_epoch_block=check_int(k, "last_epoch", v["last_epoch"]),
            epoch_index=check_uint(k, "epoch_index", v["epoch_index"]),
            created_block=check_uint(k, "created", v["created"]),
            locked=check_uint(k, "lock", v["lock"]),
            adjusted_burn=check_uint(k, "burn", v["burn"]) if "burn" in v else None,
            interval_registrations=check_uint(k, "regs_interval", v["regs_interval"]) if "regs_interval" in v else None,
            interval_start=check_uint(k, "interval_start", v["interval_start"]) if "interval_start" in v else None,
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
        v = map_fields(k, value, _NEURON_REQUIRED, _NEURON_OPTIONAL)
        return cls(
            hotkey=check_key(k, "hot", v["hot"]),
            registered_block=check_uint(k, "registered", v["registered"]),
            last_update=check_uint(k, "last_update", v["last_update"]),
            peer_id=check_str(k, "peer_id", v["peer_id"]),
            model=check_str(k, "model", v["model"]),
            validator_permit=check_bool(k, "permit", v["permit"]),
            weights=uid_pairs(k, "weights", v["weights"]),
            bonds=uid_pairs(k, "bonds", v["bonds"]),
            consensus=check_uint(k, "consensus", v["consensus"]),
            incentive=check_uint(k, "incentive", v["incentive"]),
            dividends=check_uint(k, "dividends", v["dividends"]),
            trust=check_uint(k, "trust", v["trust"]),
            emission=check_uint(k, "emission", v["emission"]),
            active=check_bool(k, "active", v["active"]),
            weights_set_block=check_uint(k, "weights_set_at", v["weights_set_at"]) if "weights_set_at" in v else None,
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
        check_list("weight commit", "entry", value, 3)
        return cls(check_bytes("weight commit", "hash", value[0]), check_uint("weight commit", "epoch", value[1]),
                   check_uint("weight commit", "block", value[2]))

    def to_state(self) -> list[Any]:
        return [self.commit_hash, self.epoch, self.block]

    @staticmethod
    def list_from_state(value: Any) -> list[WeightCommit]:
        return [WeightCommit.from_state(entry) for entry in check_list("weight commit", "commits", value)]

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
        check_list(k, "entry", value, 4)
        return cls(check_uint(k, "epoch", value[0]), check_uint(k, "block", value[1]), check_bytes(k, "inputs_hash", value[2]),
                   check_bytes(k, "outputs_hash", value[3]))

    def to_state(self) -> list[Any]:
        return [self.epoch, self.block, self.inputs_hash, self.outputs_hash]

    @staticmethod
    def list_from_state(value: Any) -> list[EpochReceipt]:
        return [EpochReceipt.from_state(entry) for entry in check_list("epoch receipt", "receipts", value)]

    @staticmethod
    def list_to_state(receipts: list[EpochReceipt]) -> list[list[Any]]:
        return [r.to_state() for r in receipts]
