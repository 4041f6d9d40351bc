"""Chain state as a key-value map with typed accessors, buffered writes and an incremental root.

A `State` reads through to a `StateReader` (the store at the parent block, or a dict in tests)
and buffers its writes; nothing reaches the reader. `child()` opens a nested overlay used to apply
one transaction (commit on success, drop on failure), so a rejected transaction or block leaves no
partial state. `root()` updates the LtHash accumulator from the changed keys only.

The state root commits to the whole state through the LtHash digest and, separately, to the two
validator sets (`compose_root`): a light client that holds the digest and the two raw values can
check the validator sets against a header without the rest of the state (LtHash has no per-item
proofs). Checkpoint sync walks validator-set changes that way.

The key layout is `p2pnode.chain.statekeys`'s; the records stored under it are `p2pnode.chain.records`'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from p2pnode.chain import accumulator
from p2pnode.chain import statekeys as keys
from p2pnode.chain.encoding import decode, encode, sha256
from p2pnode.chain.records import Account, HotkeyRecord, MalformedRecord, Neuron, Subnet, Supply, WeightCommit

_MISSING = object()
R = TypeVar("R")
_SHARED_DECODED: dict[bytes, Any] = {}


def decode_shared(raw: bytes) -> Any:
    """`decode(raw)`, decoded once per distinct value and shared between callers: READ-ONLY.

    Params, the validator sets and the finality record are read many times per block and per
    gossip message; decoding each distinct value once keeps that cheap. Callers copy before
    changing anything.
    """
    value = _SHARED_DECODED.get(raw)
    if value is None:
        value = decode(raw)
        if len(_SHARED_DECODED) >= 256:
            _SHARED_DECODED.clear()
        _SHARED_DECODED[raw] = value
    return value


_SHARED_RECORDS: dict[tuple[Callable[[Any], Any], bytes], Any] = {}


def shared_record(raw: bytes, from_state: Callable[[Any], R]) -> R:
    """`from_state(decode(raw))`, built once per distinct value and shared between callers.

    For frozen records read many times per block and per gossip message (the validator sets):
    sharing them is safe because nobody can change them."""
    key = (from_state, raw)
    record = _SHARED_RECORDS.get(key)
    if record is None:
        record = from_state(decode(raw))
        if len(_SHARED_RECORDS) >= 256:
            _SHARED_RECORDS.clear()
        _SHARED_RECORDS[key] = record
    return record  # type: ignore[no-any-return]


_ROOT_DOMAIN = b"p2pnode/state-root/v2\x00"
# The state keys of the validator sets committed on their own in the root.
VSET_KEY = keys.global_value("vset")
VSET_NEXT_KEY = keys.global_value("vset_next")


def compose_root(items_digest: bytes, vset_raw: bytes | None, vset_next_raw: bytes | None) -> bytes:
    """The state root: the LtHash digest of every item, and the hashes of the raw values of the
    current and next validator sets (also items, so also inside the digest)."""
    return sha256(_ROOT_DOMAIN + items_digest + sha256(vset_raw or b"") + sha256(vset_next_raw or b""))


def root_of_items(items: dict[bytes, bytes]) -> bytes:
    """The state root of a whole state given as a dict (from scratch: tests, checkpoint sync)."""
    acc = accumulator.EMPTY
    for key, value in items.items():
        acc = accumulator.add(acc, accumulator.element_hash(key, value))
    return compose_root(accumulator.digest(acc), items.get(VSET_KEY), items.get(VSET_NEXT_KEY))

# (balance, nonce) of stored account values, by their bytes: accounts are read several times per
# transaction, and the value a transaction writes is read back by the next step. Checked once
# per distinct value (Account.from_state); the tuple is immutable, so sharing it is safe.
_ACCOUNT_FIELDS: dict[bytes, tuple[int, int]] = {}
_MAX_ACCOUNT_FIELDS = 8192


def _account_fields(raw: bytes) -> tuple[int, int]:
    fields = _ACCOUNT_FIELDS.get(raw)
    if fields is None:
        account = Account.from_state(decode(raw))
        fields = _remember_account(raw, account.balance, account.nonce)
    return fields


def _remember_account(raw: bytes, balance: int, nonce: int) -> tuple[int, int]:
    if len(_ACCOUNT_FIELDS) >= _MAX_ACCOUNT_FIELDS:
        _ACCOUNT_FIELDS.clear()
    fields = _ACCOUNT_FIELDS[raw] = (balance, nonce)
    return fields


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class OverlayReader:
    """`base` seen through `overrides` (key -> value, None for deleted)."""

    def __init__(self, base: StateReader, overrides: dict[bytes, bytes | None]) -> None:
        self._base = base
        self._overrides = overrides

    def get(self, key: bytes) -> bytes | None:
        if key in self._overrides:
            return self._overrides[key]
        return self._base.get(key)


class DictReader:
    """An in-memory `StateReader` (tests, genesis)."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = data if data is not None else {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def apply(self, changes: dict[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value




class State:
    """Chain state at one point: a read-through, write-buffering overlay with typed accessors."""

    def __init__(self, base: StateReader, acc: int, parent: State | None = None) -> None:
        self._base = base
        self._parent = parent
        self._acc = acc
        self._writes: dict[bytes, bytes | None] = {}
        # Top-level overlay only: what the base reader answered, key -> value. A block's import
        # reads each key it changes again for the changes, the root and the accumulator; the
        # reader is the state this overlay was opened on, so its answers do not change meanwhile.
        self._base_seen: dict[bytes, bytes | None] = {}
        # (writes version, accumulator): the root is computed by the transition and again for the store.
        self._version = 0
        self._acc_memo: tuple[int, int] | None = None

    # ---------------------------------------------------------------- raw access

    def get_raw(self, key: bytes) -> bytes | None:
        value = self._writes.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        if self._parent is not None:
            return self._parent.get_raw(key)
        return self._base_value(key)

    def _base_value(self, key: bytes) -> bytes | None:
        value = self._base_seen.get(key, _MISSING)
        if value is _MISSING:
            value = self._base_seen[key] = self._base.get(key)
        return value  # type: ignore[return-value]

    def _base_raw(self, key: bytes) -> bytes | None:
        if self._parent is not None:
            return self._parent.get_raw(key)
        return self._base_value(key)

    def get(self, key: bytes, default: Any = None) -> Any:
        raw = self.get_raw(key)
        return default if raw is None else decode(raw)

    def put(self, key: bytes, value: Any) -> None:
        self._writes[key] = encode(value)
        self._version += 1

    def delete(self, key: bytes) -> None:
        self._writes[key] = None
        self._version += 1

    # ---------------------------------------------------------------- overlays and roots

    def child(self) -> State:
        """A nested overlay; `commit_into_parent()` keeps its writes, dropping it discards them."""
        return State(self._base, self._acc, parent=self)

    def commit_into_parent(self) -> None:
        assert self._parent is not None, "not a child overlay"
        self._parent._writes.update(self._writes)
        self._parent._version += 1
        self._writes = {}

    def changes(self) -> dict[bytes, bytes | None]:
        """Writes whose value differs from the base reader (top-level overlay only)."""
        assert self._parent is None, "changes() of a child overlay"
        get = self._base_value
        return {k: v for k, v in self._writes.items() if get(k) != v}

    def prefetch(self, keys: Iterable[bytes]) -> None:
        """Read `keys` from the base reader now, in one go where it can (`get_many`), so the
        transition finds them memoised (top-level overlay only; answers are the reader's own)."""
        assert self._parent is None, "prefetch() of a child overlay"
        get_many = getattr(self._base, "get_many", None)
        if get_many is None:
            return
        seen = self._base_seen
        missing = [key for key in dict.fromkeys(keys) if key not in seen]
        if missing:
            seen.update(get_many(missing))

    def values_before(self, keys: Iterable[bytes]) -> list[list[bytes | None]]:
        """[key, value in the base reader] for each key (top-level overlay only): the undo record of
        `changes()`, from what the transition read already."""
        assert self._parent is None, "values_before() of a child overlay"
        get = self._base_value
        return [[key, get(key)] for key in keys]

    def accumulator(self) -> int:
        """The LtHash of the state with this overlay's writes, from the changed keys only."""
        assert self._parent is None, "accumulator() of a child overlay"
        if self._acc_memo is not None and self._acc_memo[0] == self._version:
            return self._acc_memo[1]
        acc = self._acc
        get = self._base_value
        for key, new in self._writes.items():
            old = get(key)
            if old == new:
                continue
            if old is not None:
                acc = accumulator.sub(acc, accumulator.element_hash(key, old))
            if new is not None:
                acc = accumulator.add(acc, accumulator.element_hash(key, new))
        self._acc_memo = (self._version, acc)
        return acc

    def root(self) -> bytes:
        return compose_root(accumulator.digest(self.accumulator()), self.get_raw(VSET_KEY), self.get_raw(VSET_NEXT_KEY))

    # ---------------------------------------------------------------- globals

    def global_value(self, name: str, default: Any = None) -> Any:
        return self.get(keys.global_value(name), default)

    def set_global(self, name: str, value: Any) -> None:
        self.put(keys.global_value(name), value)

    @property
    def params(self) -> dict[str, Any]:
        return self.global_value("params")

    def param(self, name: str) -> int:
        # Parameters are read for every transaction: decode the params map once per distinct value.
        raw = self.get_raw(keys.global_value("params"))
        assert raw is not None, "state has no params"
        return decode_shared(raw)[name]  # type: ignore[no-any-return]

    @property
    def chain_id(self) -> str:
        # Read for every transaction; a str, so the shared decoded value is safe to hand out.
        raw = self.get_raw(keys.global_value("chain_id"))
        return None if raw is None else decode_shared(raw)  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return self.global_value("height", 0)

    # ---------------------------------------------------------------- accounts

    def account(self, pub: bytes) -> Account:
        """The key's account; an unstored one is the empty account (no balance, nonce 0)."""
        return Account(*self._account_fields(pub))

    def _account_fields(self, pub: bytes) -> tuple[int, int]:
        raw = self.get_raw(keys.account(pub))
        return (0, 0) if raw is None else _account_fields(raw)

    def balance(self, pub: bytes) -> int:
        return self._account_fields(pub)[0]

    def nonce(self, pub: bytes) -> int:
        return self._account_fields(pub)[1]

    def set_account(self, pub: bytes, balance: int, nonce: int) -> None:
        if balance == 0 and nonce == 0:
            self.delete(keys.account(pub))
        else:
            raw = encode(Account(balance, nonce).to_state())
            if balance >= 0 and nonce >= 0:  # what Account.from_state would accept on reading it
                _remember_account(raw, balance, nonce)
            self._writes[keys.account(pub)] = raw
            self._version += 1

    def credit(self, pub: bytes, amount: int) -> None:
        balance, nonce = self._account_fields(pub)
        self.set_account(pub, balance + amount, nonce)

    def debit(self, pub: bytes, amount: int) -> None:
        balance, nonce = self._account_fields(pub)
        if balance < amount:
            raise ValueError("debit exceeds balance")  # callers validate first: this is a bug
        self.set_account(pub, balance - amount, nonce)

    # ---------------------------------------------------------------- supply counters

    def supply(self) -> Supply:
        raw = self.get_raw(keys.global_value("supply"))
        assert raw is not None, "state has no supply"
        return Supply.from_state(decode(raw))

    def add_supply(self, counter: str, amount: int) -> None:
        self.set_global("supply", self.supply().plus(counter, amount).to_state())

    # ---------------------------------------------------------------- stake

    def stake(self, cold: bytes, hot: bytes) -> int:
        return self.get(keys.stake(cold, hot), 0)

    def total_stake(self, hot: bytes) -> int:
        return self.get(keys.total_stake(hot), 0)

    def stakers(self, hot: bytes) -> list[bytes]:
        return self.get(keys.stakers(hot), [])

    def change_stake(self, cold: bytes, hot: bytes, delta: int) -> None:
        """Add (or with a negative delta remove) stake; keeps totals and the staker list."""
        old = self.stake(cold, hot)
        new = old + delta
        if new < 0:
            raise ValueError("stake would go negative")  # callers validate first
        if new == 0:
            self.delete(keys.stake(cold, hot))
        else:
            self.put(keys.stake(cold, hot), new)
        total = self.total_stake(hot) + delta
        if total == 0:
            self.delete(keys.total_stake(hot))
        else:
            self.put(keys.total_stake(hot), total)
        self.set_global("total_staked", self.global_value("total_staked", 0) + delta)
        if (old == 0) != (new == 0):
            self._set_member(keys.stakers(hot), cold, new != 0)
            self._set_member(keys.staked_hotkeys(cold), hot, new != 0)

    def _set_member(self, key: bytes, member: bytes, present: bool) -> None:
        members = set(self.get(key, []))
        if present:
            members.add(member)
        else:
            members.discard(member)
        if members:
            self.put(key, sorted(members))
        else:
            self.delete(key)

    def staked_hotkeys(self, cold: bytes) -> list[bytes]:
        return self.get(keys.staked_hotkeys(cold), [])

    def coldkey_stake(self, cold: bytes) -> int:
        """All stake a coldkey holds, over every hotkey."""
        return sum(self.stake(cold, hot) for hot in self.staked_hotkeys(cold))

    def total_staked(self) -> int:
        return self.global_value("total_staked", 0)

    # ---------------------------------------------------------------- hotkeys

    def hotkey_record(self, hot: bytes) -> HotkeyRecord | None:
        raw = self.get_raw(keys.hotkey(hot))
        return None if raw is None else HotkeyRecord.from_state(decode(raw))

    def hotkey_owner(self, hot: bytes) -> bytes | None:
        rec = self.hotkey_record(hot)
        return None if rec is None else rec.owner

    def hotkey_take(self, hot: bytes) -> int:
        rec = self.hotkey_record(hot)
        return self.param("default_take") if rec is None else rec.take

    def set_hotkey(self, hot: bytes, owner: bytes, take: int) -> None:
        self.put(keys.hotkey(hot), HotkeyRecord(owner, take).to_state())

    # ---------------------------------------------------------------- subnets and neurons

    def subnet(self, netuid: int) -> Subnet | None:
        raw = self.get_raw(keys.subnet(netuid))
        return None if raw is None else Subnet.from_state(decode(raw))

    def set_subnet(self, netuid: int, record: Subnet) -> None:
        self.put(keys.subnet(netuid), record.to_state())

    def netuids(self) -> list[int]:
        return self.global_value("netuids", [])

    def neuron(self, netuid: int, uid: int) -> Neuron | None:
        raw = self.get_raw(keys.neuron(netuid, uid))
        return None if raw is None else Neuron.from_state(decode(raw))

    def neurons(self, netuid: int, count: int) -> list[Neuron]:
        """Uids 0..count-1 of the subnet (count: its `uid_count`); each must exist."""
        neurons = []
        for uid in range(count):
            raw = self.get_raw(keys.neuron(netuid, uid))
            if raw is None:
                raise MalformedRecord("subnet", f"netuid {netuid} has no uid {uid} below its uid count {count}")
            neurons.append(Neuron.from_state(decode(raw)))
        return neurons

    def set_neuron(self, netuid: int, uid: int, record: Neuron) -> None:
        self.put(keys.neuron(netuid, uid), record.to_state())

    def weight_commits(self, netuid: int, hot: bytes) -> list[WeightCommit]:
        """The hotkey's stored (not yet revealed, possibly expired) weight commits, oldest first."""
        raw = self.get_raw(keys.commits(netuid, hot))
        return [] if raw is None else WeightCommit.list_from_state(decode(raw))

    def set_weight_commits(self, netuid: int, hot: bytes, commits: list[WeightCommit]) -> None:
        if commits:
            self.put(keys.commits(netuid, hot), WeightCommit.list_to_state(commits))
        else:
            self.delete(keys.commits(netuid, hot))

    def uid_of(self, netuid: int, hot: bytes) -> int | None:
        return self.get(keys.uid(netuid, hot))

    def set_uid_of(self, netuid: int, hot: bytes, uid: int | None) -> None:
        if uid is None:
            self.delete(keys.uid(netuid, hot))
        else:
            self.put(keys.uid(netuid, hot), uid)
