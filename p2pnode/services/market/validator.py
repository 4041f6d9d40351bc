"""The validator loop: challenge miners, score their answers, and put the scores on chain as weights.

    loop = ValidatorLoop(hotkey, chain_id, netuid, task, network, chain, submit_tx, state_dir, clock)
    await nursery.start(loop.run)

Each round (every `round_interval_s`):

1. read the metagraph; a uid whose hotkey changed (re-registration) loses its score;
2. sample up to `sample_size` serving miners (a PeerID set), challenge each concurrently with
   `task.make_challenge(seed)` (seeds from a secret, so miners cannot precompute answers) under a
   per-request timeout, so a miner that dies mid-request costs one timeout and nothing more;
3. check each answer: decodes, signed by the uid's hotkey, names *this* request (a replayed old
   answer fails here), code OK, the task accepts it. Anything else scores 0. A valid answer is
   scored now, or, for a task whose truth arrives later (forecast), kept and scored
   `truth_delay_rounds` later;
4. fold each score into an exponential moving average per uid;
5. quantise the averages to u16 weights (the largest becomes 65535) and, within the chain's rate
   limit, set them directly or, when commit-reveal is on, commit a hash now and reveal the weights
   in the epoch `commit_epoch + reveal_period_epochs` (the only epoch a reveal is accepted);
6. save scores, pending answers and pending commits to `state_dir` atomically.

The node supplies the chain as a `MarketChain` (typed neurons and subnet info; this module depends
on no chain service). This hotkey's weight commits as the chain holds them make the reveal epoch
exact when a commit was included in a later epoch than it was sent in. `submit_tx(body)` signs and
sends a transaction body. Time comes from a `Clock` (virtual under trio's MockClock in tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from models.base import Task
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.subnets import commit_hash
from p2pnode.chain.types import CommitWeights, RevealWeights, SetWeights
from p2pnode.services.clock import Clock
from p2pnode.services.market.chain_view import MarketChain, NeuronInfo, SubnetInfo
from p2pnode.services.market.client import AskFailed, InferenceClient
from p2pnode.services.metrics import NodeMetrics
from protocols.crypto import Keypair
from protocols.network import NetworkAPI

logger = logging.getLogger(__name__)

__all__ = [
    "RoundReport",
    "ValidatorConfig",
    "ValidatorLoop",
    "commit_hash",
    "quantise_weights",
    "truth_delay_rounds",
]

U16_MAX = 65535
STATE_VERSION = 2  # 2: each average carries the baseline's average beside the miner's
DEFAULT_BASELINE_TOLERANCE = 1e-9
# Tasks whose truth is only known some time after the answer. The built-in forecast task knows its
# future already (synthetic series) but is scored as if it arrived later, as a live feed would.
DEFAULT_TRUTH_DELAY_ROUNDS = {"forecast": 2}


def truth_delay_rounds(task: Task) -> int:
    """Rounds between a task's answer and its scoring: the task's own `truth_delay_rounds` if set."""
    explicit = getattr(task, "truth_delay_rounds", None)
    if isinstance(explicit, int) and explicit >= 0:
        return explicit
    return DEFAULT_TRUTH_DELAY_ROUNDS.get(getattr(task, "name", ""), 0)


def value_over_baseline(
    averages: dict[int, tuple[float, float]], sharpness: float, tolerance: float = DEFAULT_BASELINE_TOLERANCE
) -> dict[int, float]:
    """What each miner is paid for: ``max(0, score - baseline - tolerance) ** sharpness``.

    `averages` maps uid -> (average score, average baseline score over the same challenges). A
    miner no better than the task's trivial baseline gets 0; above it, `sharpness` > 1 pays the
    best miners disproportionately more (1: in proportion to the margin). The tolerance absorbs
    rounding: a miner that answers exactly the baseline scores equal to it within ~1e-15.
    """
    values = {}
    for uid, (score, baseline) in averages.items():
        margin = score - baseline - tolerance
        if math.isfinite(margin) and margin > 0:
            values[uid] = margin**sharpness
    return values


def quantise_weights(scores: dict[int, float]) -> tuple[list[int], list[int]]:
    """u16 weights from scores, by uid: the largest score becomes 65535; zero weights are left out."""
    finite = {uid: s for uid, s in scores.items() if math.isfinite(s) and s > 0}
    if not finite:
        return [], []
    top = max(finite.values())
    pairs = [(uid, round(s / top * U16_MAX)) for uid, s in sorted(finite.items())]
    pairs = [(uid, v) for uid, v in pairs if v > 0]
    return [uid for uid, _ in pairs], [v for _, v in pairs]


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    sample_size: int = 8  # miners challenged per round
    request_timeout_s: float = 10.0
    round_interval_s: float = 12.0
    ema_alpha: float = 0.1  # weight of the newest score in the moving average
    truth_delay_rounds: int | None = None  # None: `truth_delay_rounds(task)`
    max_pending_answers: int = 4096
    # Blocks between two weight submissions (commits when commit-reveal is on); the chain's
    # weights_rate_limit is a floor. None: the subnet's tempo (once per epoch).
    min_blocks_between_weights: int | None = None
    max_pending_commits: int = 10  # the chain keeps at most 10 unrevealed commits per hotkey
    bad_answer_penalty: float = 1.0  # peer-score penalty for a forged or replayed answer
    # Weights are (average score - average baseline score) ** weight_sharpness, over the margin
    # above the task's trivial baseline; 0 below it. See `value_over_baseline`.
    weight_sharpness: float = 2.0


@dataclass(slots=True)
class _PendingAnswer:
    uid: int
    hotkey: bytes
    due_round: int
    request: dict[str, Any]
    response: dict[str, Any]
    truth: Any


@dataclass(slots=True)
class _PendingCommit:
    commit_hash: bytes
    uids: list[int]
    values: list[int]
    salt: bytes
    version_key: int
    commit_epoch: int
    commit_height: int


@dataclass(slots=True)
class RoundReport:
    """What one round did (for logs, tests and the API)."""

    round: int
    outcomes: dict[int, str] = field(default_factory=dict)  # uid -> "scored", "pending" or why it got 0
    scores: dict[int, float] = field(default_factory=dict)  # scores folded into the averages this round
    submitted: list[str] = field(default_factory=list)  # kinds of transactions sent


class _Pending:
    """Marker outcome: a valid answer waiting for its truth."""

    def __init__(self, request: dict[str, Any], response: dict[str, Any], truth: Any) -> None:
        self.request, self.response, self.truth = request, response, truth


class ValidatorLoop:
    """Challenges miners and sets weights for one subnet; see the module docstring."""

    def __init__(
        self,
        keypair: Keypair,
        chain_id: str,
        netuid: int,
        task: Task,
        network: NetworkAPI,
        chain: MarketChain,
        submit_tx: Callable[[ChainObject], Awaitable[bool | None]],
        state_dir: Path,
        clock: Clock,
        rng_seed: int | None = None,
        config: ValidatorConfig | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self.keypair = keypair
        self.hotkey = keypair.public_key
        self.chain_id = chain_id
        self.netuid = netuid
        self.task = task
        self.network = network
        self.chain = chain
        self.submit_tx = submit_tx
        self.state_path = Path(state_dir) / f"validator-{netuid}.json"
        self.clock = clock
        self.config = config or ValidatorConfig()
        self.client = InferenceClient(network, keypair, chain_id, clock)
        self.truth_delay = (
            self.config.truth_delay_rounds
            if self.config.truth_delay_rounds is not None
            else truth_delay_rounds(task)
        )
        # Challenge seeds and sampling come from a secret: miners must not predict challenges.
        secret = (
            os.urandom(32) if rng_seed is None else hashlib.sha256(b"validator-rng:%d" % rng_seed).digest()
        )
        self._secret = secret
        self._rng = random.Random(secret)
        self.round = 0
        # uid -> (hotkey it was earned under, average score, average baseline score on the same
        # challenges): both moving averages see the same challenges, so they compare fairly.
        self.ema: dict[int, tuple[bytes, float, float]] = {}
        self.pending_answers: list[_PendingAnswer] = []
        self.pending_commits: list[_PendingCommit] = []
        self.last_weights_height: int | None = None
        self._load()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run a round every `round_interval_s` until cancelled."""
        task_status.started()
        interval_ms = round(self.config.round_interval_s * 1000)
        while True:
            started_ms = self.clock.now_ms()
            try:
                report = await self.run_round()
                logger.info("validator round %d: %s", report.round, report.outcomes)
                self.metrics.validator_rounds.labels("ok").inc()
            except Exception as exc:
                # The chain or a task may fail transiently; the next round tries again.
                logger.warning("validator: round %d failed: %s: %s", self.round, type(exc).__name__, exc)
                self.metrics.validator_rounds.labels("failed").inc()
            self.metrics.validator_round_seconds.observe((self.clock.now_ms() - started_ms) / 1000)
            await self.clock.sleep_until_ms(started_ms + interval_ms)

    def scores(self) -> dict[int, float]:
        return {uid: score for uid, (_, score, _) in sorted(self.ema.items())}

    def baselines(self) -> dict[int, float]:
        """The average baseline score on each uid's challenges (what its score is measured against)."""
        return {uid: baseline for uid, (_, _, baseline) in sorted(self.ema.items())}

    # -- one round ---------------------------------------------------------------------------

    async def run_round(self) -> RoundReport:
        self.round += 1
        report = RoundReport(round=self.round)
        neurons = self._neurons()
        self._forget_replaced(neurons)
        serving = sorted(uid for uid, n in neurons.items() if n.peer_id and n.hotkey != self.hotkey)
        sample = self._rng.sample(serving, min(self.config.sample_size, len(serving)))

        outcomes: dict[int, tuple[dict[str, Any], Any, float | _Pending | str]] = {}
        async with trio.open_nursery() as nursery:
            for uid in sample:
                nursery.start_soon(self._challenge_into, neurons[uid], outcomes)

        for uid in sorted(outcomes):
            request, truth, outcome = outcomes[uid]
            if isinstance(outcome, _Pending):
                report.outcomes[uid] = "pending"
                self._keep_pending(neurons[uid], outcome)
            elif isinstance(outcome, str):
                report.outcomes[uid] = outcome
                self._fold(uid, neurons[uid].hotkey, 0.0, self.task.baseline_score(request, truth), report)
            else:
                report.outcomes[uid] = "scored"
                self._fold(uid, neurons[uid].hotkey, outcome, self.task.baseline_score(request, truth), report)
        self._score_due_answers(neurons, report)
        for outcome in report.outcomes.values():
            self.metrics.validator_challenges.labels(_outcome_kind(outcome)).inc()
        self.metrics.set_validator_scores(self.scores())
        await self._submit_weights(neurons, report)
        self._save()
        return report

    def _neurons(self) -> dict[int, NeuronInfo]:
        return {neuron.uid: neuron for neuron in self.chain.neurons(self.netuid)}

    def _forget_replaced(self, neurons: dict[int, NeuronInfo]) -> None:
        # A new hotkey on a uid is a new miner: it starts from zero, and answers owed to the old
        # one are never scored for it.
        for uid, (hotkey, _, _) in list(self.ema.items()):
            if uid not in neurons or neurons[uid].hotkey != hotkey:
                del self.ema[uid]
        self.pending_answers = [
            p for p in self.pending_answers if p.uid in neurons and neurons[p.uid].hotkey == p.hotkey
        ]

    def _challenge_seed(self, uid: int) -> int:
        digest = hashlib.sha256(self._secret + b"%d/%d" % (self.round, uid)).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    async def _challenge_into(
        self, neuron: NeuronInfo, outcomes: dict[int, tuple[dict[str, Any], Any, float | _Pending | str]]
    ) -> None:
        request, truth = self.task.make_challenge(self._challenge_seed(neuron.uid))
        # A second, slightly longer deadline around the network's own: whatever the transport
        # does, one miner can never hold the round up.
        outcomes[neuron.uid] = (request, truth, "timeout")
        with trio.move_on_after(self.config.request_timeout_s + 1.0):
            outcomes[neuron.uid] = (request, truth, await self._challenge(neuron, request, truth))

    async def _challenge(self, neuron: NeuronInfo, request: dict[str, Any], truth: Any) -> float | _Pending | str:
        try:
            answer = await self.client.ask(
                neuron, self.netuid, self.task, request, self.config.request_timeout_s
            )
        except AskFailed as exc:
            if exc.untrusted:
                self.network.penalise(neuron.peer_id, "bad inference response", self.config.bad_answer_penalty)
            return str(exc)
        if self.truth_delay > 0:
            return _Pending(request, answer.response, truth)
        return self.task.score(request, answer.response, truth)

    def _fold(self, uid: int, hotkey: bytes, score: float, baseline: float, report: RoundReport) -> None:
        alpha = self.config.ema_alpha
        _, previous, previous_baseline = self.ema.get(uid, (hotkey, 0.0, 0.0))
        self.ema[uid] = (
            hotkey,
            alpha * score + (1.0 - alpha) * previous,
            alpha * baseline + (1.0 - alpha) * previous_baseline,
        )
        report.scores[uid] = score

    def _keep_pending(self, neuron: NeuronInfo, pending: _Pending) -> None:
        if len(self.pending_answers) >= self.config.max_pending_answers:
            self.pending_answers.pop(0)  # the oldest: bounded memory and state file
        self.pending_answers.append(
            _PendingAnswer(
                uid=neuron.uid,
                hotkey=neuron.hotkey,
                due_round=self.round + self.truth_delay,
                request=pending.request,
                response=pending.response,
                truth=pending.truth,
            )
        )

    def _score_due_answers(self, neurons: dict[int, NeuronInfo], report: RoundReport) -> None:
        due = [p for p in self.pending_answers if p.due_round <= self.round]
        self.pending_answers = [p for p in self.pending_answers if p.due_round > self.round]
        for p in due:
            if p.uid in neurons and neurons[p.uid].hotkey == p.hotkey:
                score = self.task.score(p.request, p.response, p.truth)
                self._fold(p.uid, p.hotkey, score, self.task.baseline_score(p.request, p.truth), report)

    # -- weights -----------------------------------------------------------------------------

    def weights(self, neurons: dict[int, NeuronInfo] | None = None) -> tuple[list[int], list[int]]:
        """The current u16 weights (uids ascending) over the miners still registered: each one's
        value over the task's baseline (`value_over_baseline`), the largest as 65535."""
        neurons = neurons if neurons is not None else self._neurons()
        live = {
            uid: (score, baseline)
            for uid, (hotkey, score, baseline) in self.ema.items()
            if uid in neurons and neurons[uid].hotkey == hotkey and hotkey != self.hotkey
        }
        return quantise_weights(value_over_baseline(live, self.config.weight_sharpness))

    async def _submit(self, body: ChainObject, report: RoundReport) -> bool:
        kind = _WEIGHT_KINDS.get(type(body).__name__, type(body).__name__)
        try:
            added = await self.submit_tx(body)
        except Exception as exc:  # the node refused it (mempool full, bad nonce ...): retry later
            logger.warning("validator: submitting %s failed: %s", type(body).__name__, exc)
            added = False
        if added is False:  # the peer's submit returns False for a refusal (None: no verdict)
            self.metrics.validator_weight_submissions.labels(kind, "refused").inc()
            return False
        self.metrics.validator_weight_submissions.labels(kind, "submitted").inc()
        report.submitted.append(type(body).__name__)
        return True

    async def _submit_weights(self, neurons: dict[int, NeuronInfo], report: RoundReport) -> None:
        info = self.chain.subnet(self.netuid)
        if info is None:
            return
        height, epoch = info.height, info.epoch_index
        interval = max(
            info.weights_rate_limit,
            self.config.min_blocks_between_weights
            if self.config.min_blocks_between_weights is not None
            else info.tempo,
        )
        version_key = info.weights_version_key
        due = self.last_weights_height is None or height - self.last_weights_height >= interval

        if info.commit_reveal_enabled:
            await self._reveal_due(info, report)
            uids, values = self.weights(neurons)
            committed_this_epoch = any(c.commit_epoch == epoch for c in self.pending_commits)
            if (
                uids
                and due
                and not committed_this_epoch
                and len(self.pending_commits) < self.config.max_pending_commits
            ):
                salt = os.urandom(16)
                digest = commit_hash(self.hotkey, self.netuid, uids, values, salt, version_key)
                if await self._submit(CommitWeights(netuid=self.netuid, commit_hash=digest), report):
                    self.pending_commits.append(
                        _PendingCommit(digest, uids, values, salt, version_key, epoch, height)
                    )
                    self.last_weights_height = height
        else:
            self.pending_commits.clear()  # commit-reveal was switched off: direct weights from now on
            uids, values = self.weights(neurons)
            if uids and due:
                body = SetWeights(
                    netuid=self.netuid, uids=tuple(uids), values=tuple(values), version_key=version_key
                )
                if await self._submit(body, report):
                    self.last_weights_height = height

    async def _reveal_due(self, info: SubnetInfo, report: RoundReport) -> None:
        epoch, period = info.epoch_index, info.reveal_period_epochs
        on_chain = {c.commit_hash: c.commit_epoch for c in self.chain.weight_commits(self.netuid, self.hotkey)}
        keep: list[_PendingCommit] = []
        for commit in self.pending_commits:
            commit_epoch = on_chain.get(commit.commit_hash, commit.commit_epoch)
            reveal_epoch = commit_epoch + period
            if epoch < reveal_epoch:
                keep.append(commit)
            elif epoch == reveal_epoch:
                body = RevealWeights(
                    netuid=self.netuid,
                    uids=tuple(commit.uids),
                    values=tuple(commit.values),
                    salt=commit.salt,
                    version_key=commit.version_key,
                )
                if not await self._submit(body, report):
                    self.metrics.validator_reveals.labels("refused").inc()
                    keep.append(commit)  # still inside its window: try again next round
                else:
                    self.metrics.validator_reveals.labels("revealed").inc()
            else:
                self.metrics.validator_reveals.labels("expired").inc()
                logger.warning("validator: commit from epoch %d expired unrevealed", commit_epoch)
        self.pending_commits = keep

    # -- state file --------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "netuid": self.netuid,
            "hotkey": self.hotkey.hex(),
            "round": self.round,
            "last_weights_height": self.last_weights_height,
            "scores": [
                [uid, hotkey.hex(), score, baseline] for uid, (hotkey, score, baseline) in sorted(self.ema.items())
            ],
            "pending_answers": [
                {
                    "uid": p.uid,
                    "hotkey": p.hotkey.hex(),
                    "due_round": p.due_round,
                    "request": p.request,
                    "response": p.response,
                    "truth": p.truth,
                }
                for p in self.pending_answers
            ],
            "pending_commits": [
                {
                    "commit_hash": c.commit_hash.hex(),
                    "uids": c.uids,
                    "values": c.values,
                    "salt": c.salt.hex(),
                    "version_key": c.version_key,
                    "commit_epoch": c.commit_epoch,
                    "commit_height": c.commit_height,
                }
                for c in self.pending_commits
            ],
        }

    def _save(self) -> None:
        write_atomically(self.state_path, json.dumps(self._state(), sort_keys=True).encode("utf-8"))

    def _load(self) -> None:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            state = json.loads(raw)
            if state["version"] != STATE_VERSION or state["netuid"] != self.netuid:
                raise ValueError("state of another version or subnet")
            if bytes.fromhex(state["hotkey"]) != self.hotkey:
                raise ValueError("state of another hotkey")
            ema = {
                int(uid): (bytes.fromhex(hk), float(score), float(baseline))
                for uid, hk, score, baseline in state["scores"]
            }
            pending = [
                _PendingAnswer(
                    uid=int(p["uid"]),
                    hotkey=bytes.fromhex(p["hotkey"]),
                    due_round=int(p["due_round"]),
                    request=p["request"],
                    response=p["response"],
                    truth=p["truth"],
                )
                for p in state["pending_answers"]
            ]
            commits = [
                _PendingCommit(
                    commit_hash=bytes.fromhex(c["commit_hash"]),
                    uids=[int(u) for u in c["uids"]],
                    values=[int(v) for v in c["values"]],
                    salt=bytes.fromhex(c["salt"]),
                    version_key=int(c["version_key"]),
                    commit_epoch=int(c["commit_epoch"]),
                    commit_height=int(c["commit_height"]),
                )
                for c in state["pending_commits"]
            ]
            last = state["last_weights_height"]
            round_ = int(state["round"])
        except (ValueError, KeyError, TypeError) as exc:
            # Our own file, but unusable (another validator's, or damaged by hand): keep it for
            # inspection and start afresh rather than refuse to run.
            aside = self.state_path.with_suffix(".unusable")
            os.replace(self.state_path, aside)
            logger.warning("validator: state file %s unusable (%s); moved to %s", self.state_path, exc, aside)
            return
        self.ema, self.pending_answers, self.pending_commits = ema, pending, commits
        self.last_weights_height = None if last is None else int(last)
        self.round = round_


_WEIGHT_KINDS = {"SetWeights": "set", "CommitWeights": "commit", "RevealWeights": "reveal"}


def _outcome_kind(outcome: str) -> str:
    """A round report outcome as a bounded label: what precedes its detail (scored, no_answer, error_timeout...)."""
    return outcome.split(":", 1)[0].strip().replace(" ", "_").lower() or "other"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must reach the disk
    finally:
        os.close(directory)
