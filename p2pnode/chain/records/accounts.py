"""Records of balances and stake: accounts, hotkeys, the supply counters, unbonding, slashings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from p2pnode.chain.records.fields import (
    MalformedRecord,
    check_key,
    check_list,
    check_uint,
    map_fields,
)

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
        check_uint("account", "balance", balance)
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
        check_list("hotkey", "record", value, 2)
        return cls(check_key("hotkey", "owner", value[0]), check_uint("hotkey", "take", value[1]))

    def to_state(self) -> list[Any]:
        return [self.owner, self.take]


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
        v = map_fields("supply", value, _SUPPLY_FIELDS)
        return cls(*(check_uint("supply", name, v[name]) for name in ("genesis", "emitted", "burned", "locked")))

    def to_state(self) -> dict[str, int]:
        return {"genesis": self.genesis, "emitted": self.emitted, "burned": self.burned, "locked": self.locked}

    def plus(self, counter: str, amount: int) -> Supply:
        """This supply with `amount` added to one counter ("emitted", "burned", "locked")."""
        if counter not in _SUPPLY_FIELDS:
            raise ValueError(f"not a supply counter: {counter!r}")  # callers name a fixed counter
        return replace(self, **{counter: getattr(self, counter) + amount})


# ---------------------------------------------------------------- stake leaving and slashing


@dataclass(frozen=True, slots=True)
class UnbondingEntry:
    """One entry of `Y|hot`: stake a coldkey removed from the hotkey, paid out at `release_height`."""

    coldkey: bytes
    amount: int
    release_height: int

    @classmethod
    def from_state(cls, value: Any) -> UnbondingEntry:
        check_list("unbonding", "entry", value, 3)
        return cls(check_key("unbonding", "coldkey", value[0]), check_uint("unbonding", "amount", value[1]),
                   check_uint("unbonding", "release_height", value[2]))

    def to_state(self) -> list[Any]:
        return [self.coldkey, self.amount, self.release_height]

    @staticmethod
    def list_from_state(value: Any) -> list[UnbondingEntry]:
        return [UnbondingEntry.from_state(entry) for entry in check_list("unbonding", "entries", value)]

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
        check_list("slash", "record", value, 2)
        return cls(check_uint("slash", "height", value[0]), check_uint("slash", "burned", value[1]))

    def to_state(self) -> list[int]:
        return [self.height, self.burned]
