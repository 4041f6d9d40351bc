"""Recent history for the dashboard's charts, kept in memory and bounded.

Finality lag is sampled at each new head; per-uid incentive and emission at each subnet epoch.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from p2pnode.chain.state import State

HEAD_SAMPLES = 512
EPOCHS_PER_SUBNET = 64
MAX_SUBNETS = 64
MAX_UIDS_PER_EPOCH = 256
U16 = 65535


@dataclass(frozen=True)
class HeadSample:
    height: int
    finalized_height: int
    time_ms: int


@dataclass(frozen=True)
class EpochSample:
    epoch_index: int
    height: int
    # uid -> (incentive as a fraction of 1, emission in rao)
    uids: dict[int, tuple[float, int]]


class ChainHistory:
    def __init__(self) -> None:
        self.heads: deque[HeadSample] = deque(maxlen=HEAD_SAMPLES)
        self._epochs: OrderedDict[int, deque[EpochSample]] = OrderedDict()

    def record_head(self, height: int, finalized_height: int, time_ms: int) -> None:
        self.heads.append(HeadSample(height, finalized_height, time_ms))

    def record_epoch(self, state: State, netuid: int, epoch_index: int) -> None:
        sn = state.subnet(netuid)
        if sn is None:
            return
        uids = {}
        for uid in range(min(sn.uid_count, MAX_UIDS_PER_EPOCH)):
            neuron = state.neuron(netuid, uid)
            if neuron is not None:
                uids[uid] = (round(neuron.incentive / U16, 6), neuron.emission)
        samples = self._epochs.get(netuid)
        if samples is None:
            samples = self._epochs[netuid] = deque(maxlen=EPOCHS_PER_SUBNET)
            while len(self._epochs) > MAX_SUBNETS:
                self._epochs.popitem(last=False)
        samples.append(EpochSample(epoch_index, state.height, uids))

    def epochs(self, netuid: int) -> list[EpochSample]:
        return list(self._epochs.get(netuid, ()))

    def finality_lag(self) -> list[tuple[float, float]]:
        return [(s.height, s.height - s.finalized_height) for s in self.heads]

    def per_uid(self, netuid: int, field: str) -> list[tuple[str, list[tuple[float, float]]]]:
        """(uid label, [(epoch index, value)]) for `field` "incentive" or "emission" (in TAO)."""
        series: dict[int, list[tuple[float, float]]] = {}
        for sample in self.epochs(netuid):
            for uid, (incentive, emission) in sample.uids.items():
                value = incentive if field == "incentive" else emission / 1e9
                series.setdefault(uid, []).append((sample.epoch_index, value))
        return [(f"uid {uid}", points) for uid, points in sorted(series.items())]
