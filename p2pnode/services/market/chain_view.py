"""What the market reads of the chain, typed: neurons and subnets as dataclasses, keys as bytes.

Miner, validator and query depend on the `MarketChain` protocol only; the peer hands them a
`StateView` over its head state, and tests a fake. Incentive is the chain's raw u16 value
(65535 = all of the subnet's incentive), so ranking needs no floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from p2pnode.chain.state import State

__all__ = ["MarketChain", "NeuronInfo", "StateView", "SubnetInfo", "WeightCommit"]

U16_MAX = 65535


@dataclass(frozen=True, slots=True)
class NeuronInfo:
    uid: int
    hotkey: bytes  # 32-byte public key
    peer_id: str  # "" when the neuron does not serve
    incentive: int = 0  # raw u16
    stake: int = 0
    validator_permit: bool = False
    model: str = ""


@dataclass(frozen=True, slots=True)
class WeightCommit:
    commit_hash: bytes
    commit_epoch: int  # the epoch the chain included the commit in


@dataclass(frozen=True, slots=True)
class SubnetInfo:
    netuid: int
    task: str
    height: int  # of the head the view was read from
    epoch_index: int
    tempo: int = 1
    weights_rate_limit: int = 0
    weights_version_key: int = 0
    commit_reveal_enabled: bool = False
    reveal_period_epochs: int = 1
    head_hash: bytes = b""  # of the head block the view was read from (validators mix it into seeds)


class MarketChain(Protocol):
    def neurons(self, netuid: int) -> list[NeuronInfo]:
        """The subnet's neurons by uid ([] for an unknown subnet)."""

    def subnet(self, netuid: int) -> SubnetInfo | None:
        """The subnet as of the head, or None when it does not exist (yet)."""

    def stake_of(self, hotkey: bytes) -> int:
        """Total stake behind `hotkey`."""

    def weight_commits(self, netuid: int, hotkey: bytes) -> list[WeightCommit]:
        """`hotkey`'s unrevealed weight commits on the subnet, oldest first."""

    def uid_of(self, netuid: int, hotkey: bytes) -> int | None:
        """`hotkey`'s uid on the subnet, or None when it is not registered."""


class StateView:
    """`MarketChain` over the chain state that `head_state()` returns at each call."""

    def __init__(self, head_state: Callable[[], State], head_hash: Callable[[], bytes] | None = None) -> None:
        self._head_state = head_state
        self._head_hash = head_hash

    def neurons(self, netuid: int) -> list[NeuronInfo]:
        state = self._head_state()
        record = state.subnet(netuid)
        if record is None:
            return []
        neurons = []
        for uid in range(record.uid_count):
            neuron = state.neuron(netuid, uid)
            if neuron is None:
                continue
            neurons.append(
                NeuronInfo(
                    uid=uid,
                    hotkey=neuron.hotkey,
                    peer_id=neuron.peer_id,
                    incentive=neuron.incentive,
                    stake=state.total_stake(neuron.hotkey),
                    validator_permit=neuron.validator_permit,
                    model=neuron.model,
                )
            )
        return neurons

    def subnet(self, netuid: int) -> SubnetInfo | None:
        state = self._head_state()
        record = state.subnet(netuid)
        if record is None:
            return None
        hp = record.hyperparams
        return SubnetInfo(
            netuid=netuid,
            task=record.task,
            height=state.height,
            epoch_index=record.epoch_index,
            tempo=int(hp.get("tempo", 1)),
            weights_rate_limit=int(hp.get("weights_rate_limit", 0)),
            weights_version_key=int(hp.get("weights_version_key", 0)),
            commit_reveal_enabled=bool(hp.get("commit_reveal_enabled", 0)),
            reveal_period_epochs=int(hp.get("reveal_period_epochs", 1)),
            head_hash=b"" if self._head_hash is None else self._head_hash(),
        )

    def stake_of(self, hotkey: bytes) -> int:
        return self._head_state().total_stake(hotkey)

    def weight_commits(self, netuid: int, hotkey: bytes) -> list[WeightCommit]:
        commits = self._head_state().weight_commits(netuid, hotkey)
        return [WeightCommit(c.commit_hash, c.epoch) for c in commits]

    def uid_of(self, netuid: int, hotkey: bytes) -> int | None:
        return self._head_state().uid_of(netuid, hotkey)
