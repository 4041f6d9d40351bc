"""Records of block consensus: validator sets, the finality record and its tallies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.chain.records.fields import (
    check_bytes,
    check_key,
    check_list,
    check_uint,
    map_fields,
    records_from_state,
    records_to_state,
)
from p2pnode.chain.types import Checkpoint

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
        v = map_fields(k, value, _VSET_FIELDS)
        validators = []
        for entry in check_list(k, "validators", v["validators"]):
            check_list(k, "validator", entry, 2)
            validators.append((check_key(k, "hotkey", entry[0]), check_uint(k, "stake", entry[1])))
        return cls(check_uint(k, "epoch", v["epoch"]), tuple(validators), check_bytes(k, "seed", v["seed"]))

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
    check_list(kind, "checkpoint", value, 3)
    return Checkpoint(epoch=check_uint(kind, "checkpoint epoch", value[0]), height=check_uint(kind, "checkpoint height", value[1]),
                      hash=check_key(kind, "checkpoint hash", value[2]))


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
        v = map_fields(k, value, _FFG_FIELDS)
        finalized = None if v["finalized"] is None else checkpoint_from_state(k, v["finalized"])
        return cls(
            justified=tuple(checkpoint_from_state(k, c) for c in check_list(k, "justified", v["justified"])),
            finalized=finalized,
            checkpoints=tuple(checkpoint_from_state(k, c) for c in check_list(k, "checkpoints", v["checkpoints"])),
            tally_epochs=tuple(check_uint(k, "tally epoch", e) for e in check_list(k, "tallies", v["tallies"])),
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
        check_list(k, "link", value, 4)
        voters = tuple(check_key(k, "voter", voter) for voter in check_list(k, "voters", value[3]))
        return cls(check_uint(k, "source_epoch", value[0]), check_key(k, "source_hash", value[1]), check_uint(k, "stake", value[2]),
                   voters)

    def to_state(self) -> list[Any]:
        return [self.source_epoch, self.source_hash, self.stake, list(self.voters)]

    @staticmethod
    def list_from_state(value: Any) -> list[FfgLink]:
        return records_from_state("finality tally", "links", value, FfgLink.from_state)

    @staticmethod
    def list_to_state(links: list[FfgLink]) -> list[list[Any]]:
        return records_to_state(links)
