"""Records of balances and stake: accounts, hotkeys, the supply counters, unbonding, slashings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from p2pnode.chain.records.fields import (
    MalformedRecord,
    MapLayout,
    check_key,
    check_uint,
    list_fields,
    records_from_state,
    records_to_state,
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
        return cls(*list_fields("hotkey", value, (("owner", check_key), ("take", check_uint))))

    def to_state(self) -> list[Any]:
        return [self.owner, self.take]


# ---------------------------------------------------------------- supply


_SUPPLY_COUNTERS = ("genesis", "emitted", "burned", "locked")
_SUPPLY_LAYOUT = MapLayout("supply", required=tuple((name, name, check_uint) for name in _SUPPLY_COUNTERS))


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
        return cls(**_SUPPLY_LAYOUT.read(value))

    def to_state(self) -> dict[str, int]:
        return _SUPPLY_LAYOUT.write(self)

    def plus(self, counter: str, amount: int) -> Supply:
        """This supply with `amount` added to one counter ("emitted", "burned", "locked")."""
        if counter not in _SUPPLY_COUNTERS:
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
        return cls(*list_fields("unbonding", value, (("coldkey", check_key), ("amount", check_uint),
                                                     ("release_height", check_uint)), "entry"))

    def to_state(self) -> list[Any]:
        return [self.coldkey, self.amount, self.release_height]

    @staticmethod
    def list_from_state(value: Any) -> list[UnbondingEntry]:
        return records_from_state("unbonding", "entries", value, UnbondingEntry.from_state)

    @staticmethod
    def list_to_state(entries: list[UnbondingEntry]) -> list[list[Any]]:
        return records_to_state(entries)


@dataclass(frozen=True, slots=True)
class SlashRecord:
    """`X|slashed|hot`: the height a hotkey was slashed at and the amount burned."""

    height: int
    burned: int

    @classmethod
    def from_state(cls, value: Any) -> SlashRecord:
        return cls(*list_fields("slash", value, (("height", check_uint), ("burned", check_uint))))

    def to_state(self) -> list[int]:
        return [self.height, self.burned]
