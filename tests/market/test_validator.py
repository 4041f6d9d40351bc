"""The validator loop against fake miners on the in-memory network, with a fake chain.

Time is trio's MockClock (autojump): a miner that never answers costs the loop one timeout of mock
time, and the test runs in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from marketutil import CHAIN, NETUID, FakeMiner, OracleForecastTask, join, key, peer_of, wall_clock

from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import CommitWeights, RevealWeights, SetWeights
from p2pnode.services.market.chain_view import NeuronInfo, SubnetInfo, WeightCommit
from p2pnode.services.market.validator import (
    ValidatorConfig,
    ValidatorLoop,
    commit_hash,
    quantise_weights,
    value_over_baseline,
)
from p2pnode.testing.memnet import MemoryHub

pytestmark = pytest.mark.timeout(60)

VALIDATOR = key("validator")
BEHAVIOURS = ["naive", "garbage", "replay", "error", "hang", "raise", "forged"]


class FakeChain:
    """A `MarketChain` and submit_tx() over neurons, a height and an epoch the test moves by hand."""

    def __init__(
        self, *, commit_reveal: bool = False, reveal_period: int = 1, rate_limit: int = 0, tempo: int = 10
    ):
        self.height = 100
        self.epoch = 10
        self.params = {
            "commit_reveal_enabled": commit_reveal,
            "reveal_period_epochs": reveal_period,
            "weights_rate_limit": rate_limit,
            "tempo": tempo,
        }
        self.txs: list[tuple[int, int, ChainObject]] = []  # (height, epoch, body)
        self.rows: list[NeuronInfo] = []
        self.commits: list[WeightCommit] = []  # what the chain reports of our commits

    def neurons(self, netuid: int) -> list[NeuronInfo]:
        return list(self.rows)

    def subnet(self, netuid: int) -> SubnetInfo | None:
        return SubnetInfo(
            netuid=netuid,
            task="forecast",
            height=self.height,
            epoch_index=self.epoch,
            tempo=int(self.params["tempo"]),
            weights_rate_limit=int(self.params["weights_rate_limit"]),
            commit_reveal_enabled=bool(self.params["commit_reveal_enabled"]),
            reveal_period_epochs=int(self.params["reveal_period_epochs"]),
        )

    def stake_of(self, hotkey: bytes) -> int:
        return 0

    def weight_commits(self, netuid: int, hotkey: bytes) -> list[WeightCommit]:
        return list(self.commits)

    def uid_of(self, netuid: int, hotkey: bytes) -> int | None:
        return next((n.uid for n in self.rows if n.hotkey == hotkey), None)

    async def submit(self, body: ChainObject) -> None:
        self.txs.append((self.height, self.epoch, body))

    def advance_epochs(self, n: int = 1) -> None:
        self.epoch += n
        self.height += n * int(self.params["tempo"])

    def bodies(self, kind: type) -> list[Any]:
        return [body for _, _, body in self.txs if isinstance(body, kind)]


class Market:
    """A validator, fake miners (uid 1..n, in BEHAVIOURS order) and a metagraph over them."""

    def __init__(
        self, tmp_path: Path, behaviours: list[str], chain: FakeChain | None = None, **config: Any
    ) -> None:
        self.hub = MemoryHub()
        self.net = join(self.hub, VALIDATOR)
        self.miners = {
            uid: FakeMiner(self.hub, f"miner-{uid}-{b}", b) for uid, b in enumerate(behaviours, start=1)
        }
        self.chain = chain or FakeChain()
        self.rows = self.chain.rows
        self.rows.append(NeuronInfo(0, VALIDATOR.public_key, peer_of(VALIDATOR)))
        self.rows += [NeuronInfo(uid, m.key.public_key, m.net.peer_id) for uid, m in self.miners.items()]
        self.rows.append(NeuronInfo(99, key("not-serving").public_key, ""))
        self.state_dir = tmp_path
        self.config = ValidatorConfig(sample_size=16, request_timeout_s=5.0, ema_alpha=0.5, **config)

    def loop(self) -> ValidatorLoop:
        return ValidatorLoop(
            VALIDATOR,
            CHAIN,
            NETUID,
            OracleForecastTask(),
            self.net,
            self.chain,
            self.chain.submit,
            self.state_dir,
            wall_clock(),
            rng_seed=7,
            config=self.config,
        )


def read_state_dir(path: Path) -> tuple[dict[str, Any], list[Path]]:
    return json.loads((path / f"validator-{NETUID}.json").read_text()), list(path.glob("*.tmp"))


def uid_of(behaviour: str) -> int:
    return BEHAVIOURS.index(behaviour) + 1


async def test_bad_miners_score_zero_and_a_hung_miner_does_not_stall(
    tmp_path: Path, autojump_clock: Any
) -> None:
    market = Market(tmp_path, BEHAVIOURS, truth_delay_rounds=0)
    loop = market.loop()
    started = trio.current_time()
    first = await loop.run_round()
    assert trio.current_time() - started <= 5.0 + 1.5  # bounded by one request timeout
    assert set(first.outcomes) == set(market.miners)  # not itself (uid 0), not the non-serving uid 99
    assert first.outcomes[uid_of("naive")] == "scored"
    assert first.outcomes[uid_of("replay")] == "scored"  # honest the first time
    assert first.outcomes[uid_of("garbage")].startswith("invalid answer")
    assert first.outcomes[uid_of("error")].startswith("error: INTERNAL")
    assert (
        first.outcomes[uid_of("hang")].startswith("no answer")
        and "timed out" in first.outcomes[uid_of("hang")]
    )
    assert first.outcomes[uid_of("raise")].startswith("no answer")
    assert first.outcomes[uid_of("forged")].startswith("untrusted answer")

    second = await loop.run_round()
    assert "another request" in second.outcomes[uid_of("replay")]
    assert second.scores[uid_of("replay")] == 0.0
    await loop.run_round()

    scores = loop.scores()
    naive = scores[uid_of("naive")]
    assert naive > 0.1
    for bad in ("garbage", "error", "hang", "raise", "forged"):
        assert scores[uid_of(bad)] == 0.0, bad
    assert 0 < scores[uid_of("replay")] < naive / 2  # one honest answer, then only replays
    penalised = {peer for peer, _, _ in market.net.penalties}
    assert penalised == {
        market.miners[uid_of("forged")].net.peer_id,
        market.miners[uid_of("replay")].net.peer_id,
    }
    assert market.miners[uid_of("naive")].calls == 3


async def test_a_killed_miner_scores_zero_and_the_loop_goes_on(tmp_path: Path, autojump_clock: Any) -> None:
    market = Market(tmp_path, ["naive", "naive"], truth_delay_rounds=0)
    loop = market.loop()
    await loop.run_round()
    market.hub.kill(market.miners[2].net.peer_id)
    report = await loop.run_round()
    assert report.outcomes[2].startswith("no answer") and report.outcomes[1] == "scored"
    assert loop.scores()[2] < loop.scores()[1]


async def test_a_new_hotkey_on_a_uid_starts_from_zero(tmp_path: Path, autojump_clock: Any) -> None:
    market = Market(tmp_path, ["naive", "naive"], truth_delay_rounds=0)
    loop = market.loop()
    await loop.run_round()
    assert loop.scores()[2] > 0
    replacement = FakeMiner(market.hub, "replacement", "garbage")
    market.rows[2] = NeuronInfo(2, replacement.key.public_key, replacement.net.peer_id)
    await loop.run_round()
    assert loop.scores()[2] == 0.0 and loop.scores()[1] > 0


async def test_forecast_answers_are_scored_when_the_truth_is_due(tmp_path: Path, autojump_clock: Any) -> None:
    market = Market(tmp_path, ["naive", "garbage"], truth_delay_rounds=2)
    loop = market.loop()
    first = await loop.run_round()
    assert first.outcomes == {1: "pending", 2: first.outcomes[2]} and first.outcomes[2].startswith("invalid")
    assert 1 not in first.scores and first.scores[2] == 0.0  # garbage needs no truth to score 0
    second = await loop.run_round()
    assert 1 not in second.scores
    third = await loop.run_round()  # round 1's answer is due now
    assert third.scores[1] > 0
    assert len(loop.pending_answers) == 2  # rounds 2 and 3 still wait


async def test_scores_pending_answers_and_commits_survive_a_restart(
    tmp_path: Path, autojump_clock: Any
) -> None:
    chain = FakeChain(commit_reveal=True, reveal_period=1)
    market = Market(tmp_path, ["oracle", "garbage"], chain, truth_delay_rounds=1)
    loop = market.loop()
    await loop.run_round()
    await loop.run_round()  # round 1's answer scored; a commit made
    assert len(chain.bodies(CommitWeights)) == 1
    before = (loop.scores(), len(loop.pending_answers), loop.round)

    restarted = market.loop()
    assert (restarted.scores(), len(restarted.pending_answers), restarted.round) == before
    chain.advance_epochs(1)
    report = await restarted.run_round()
    assert "RevealWeights" in report.submitted
    commit, [reveal] = chain.bodies(CommitWeights)[0], chain.bodies(RevealWeights)
    assert commit.commit_hash == commit_hash(
        VALIDATOR.public_key, NETUID, list(reveal.uids), list(reveal.values), reveal.salt, reveal.version_key
    )
    # The file on disk is complete JSON (written atomically), and no temporary file is left.
    state, leftovers = read_state_dir(tmp_path)
    assert state["round"] == 3 and leftovers == []


async def test_an_unusable_state_file_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / f"validator-{NETUID}.json").write_text("{not json")
    loop = Market(tmp_path, ["naive"]).loop()
    assert loop.scores() == {} and loop.round == 0
    assert (tmp_path / f"validator-{NETUID}.unusable").read_text() == "{not json"


async def test_direct_weights_respect_the_rate_limit(tmp_path: Path, autojump_clock: Any) -> None:
    chain = FakeChain(commit_reveal=False, rate_limit=5, tempo=10)
    market = Market(tmp_path, ["oracle", "garbage", "oracle"], chain, truth_delay_rounds=0)
    loop = market.loop()
    await loop.run_round()
    [weights] = chain.bodies(SetWeights)
    assert weights.netuid == NETUID and weights.uids == (1, 3)  # garbage earns no weight
    assert max(weights.values) == 65535
    chain.height += 9  # interval = max(rate limit 5, tempo 10)
    await loop.run_round()
    assert len(chain.bodies(SetWeights)) == 1
    chain.height += 1
    await loop.run_round()
    assert len(chain.bodies(SetWeights)) == 2
    assert not chain.bodies(CommitWeights)


async def test_commit_then_reveal_in_exactly_the_reveal_epoch(tmp_path: Path, autojump_clock: Any) -> None:
    chain = FakeChain(commit_reveal=True, reveal_period=2, rate_limit=0, tempo=10)
    market = Market(tmp_path, ["oracle", "oracle"], chain, truth_delay_rounds=0)
    loop = market.loop()
    await loop.run_round()  # epoch 10: commit A
    assert [type(b) for _, _, b in chain.txs] == [CommitWeights]
    await loop.run_round()  # same epoch: no second commit, nothing to reveal
    assert len(chain.txs) == 1
    chain.advance_epochs(1)  # epoch 11: commit B, A not yet revealable
    await loop.run_round()
    assert [type(b) for _, _, b in chain.txs] == [CommitWeights, CommitWeights]
    chain.advance_epochs(1)  # epoch 12 = 10 + 2: reveal A, commit C
    await loop.run_round()
    reveals = [(epoch, body) for _, epoch, body in chain.txs if isinstance(body, RevealWeights)]
    assert [epoch for epoch, _ in reveals] == [12]
    first_commit = chain.bodies(CommitWeights)[0]
    reveal = reveals[0][1]
    assert first_commit.commit_hash == commit_hash(
        VALIDATOR.public_key, NETUID, list(reveal.uids), list(reveal.values), reveal.salt, reveal.version_key
    )
    assert not chain.bodies(SetWeights)
    # Skipping past B's reveal epoch (13) lets it expire unrevealed; C (epoch 12) is revealed at 14.
    chain.advance_epochs(2)
    await loop.run_round()
    reveal_epochs = [epoch for _, epoch, body in chain.txs if isinstance(body, RevealWeights)]
    assert reveal_epochs == [12, 14]
    assert {c.commit_epoch for c in loop.pending_commits} == {14}


async def test_reveal_epoch_follows_the_chain_when_it_reports_the_commit(
    tmp_path: Path, autojump_clock: Any
) -> None:
    chain = FakeChain(commit_reveal=True, reveal_period=1)
    market = Market(tmp_path, ["oracle"], chain, truth_delay_rounds=0, min_blocks_between_weights=10_000)
    loop = market.loop()
    await loop.run_round()  # commit sent in epoch 10 ...
    [commit] = chain.bodies(CommitWeights)
    chain.commits = [WeightCommit(commit.commit_hash, 11)]  # ... but included in epoch 11
    chain.advance_epochs(1)
    await loop.run_round()
    assert not chain.bodies(RevealWeights)  # epoch 11 is too early for a commit of epoch 11
    chain.advance_epochs(1)
    await loop.run_round()
    assert len(chain.bodies(RevealWeights)) == 1


def test_quantise_weights() -> None:
    assert quantise_weights({}) == ([], [])
    assert quantise_weights({3: 0.0, 1: 0.0}) == ([], [])
    assert quantise_weights({5: 0.2, 2: 0.4, 9: 0.0, 4: 1e-9}) == ([2, 5], [65535, 32768])
    assert quantise_weights({1: float("nan"), 2: 0.3}) == ([2], [65535])


def test_value_over_baseline() -> None:
    averages = {1: (0.5, 0.5), 2: (0.4, 0.5), 3: (0.7, 0.5), 4: (0.6, 0.5), 5: (float("nan"), 0.5)}
    assert value_over_baseline(averages, sharpness=1.0) == pytest.approx({3: 0.2, 4: 0.1})
    assert value_over_baseline(averages, sharpness=2.0) == pytest.approx({3: 0.04, 4: 0.01})
    # Equal to the baseline up to float rounding is still no better than it.
    assert value_over_baseline({1: (0.5022259617593778, 0.5022259617593776)}, sharpness=2.0) == {}


async def test_only_value_over_the_baseline_earns_weight(tmp_path: Path, autojump_clock: Any) -> None:
    chain = FakeChain(commit_reveal=False, tempo=1)
    # uid 1 answers the baseline itself, 2 a seasonal model, 3 the truth, 4 garbage.
    market = Market(tmp_path, ["naive", "seasonal", "oracle", "garbage"], chain, truth_delay_rounds=0)
    loop = market.loop()
    for _ in range(8):
        await loop.run_round()
        chain.height += 1
    scores, baselines = loop.scores(), loop.baselines()
    assert scores[1] == pytest.approx(baselines[1]) and scores[1] > 0.1  # valid answers, paid nothing
    assert scores[2] > baselines[2] and scores[3] > scores[2]
    uids, values = chain.bodies(SetWeights)[-1].uids, chain.bodies(SetWeights)[-1].values
    assert uids == (2, 3)  # neither the baseline nor garbage
    assert values[1] == 65535 and 0 < values[0] < 65535
    # Sharpening: the weight ratio is the squared ratio of the margins over the baseline.
    margin = {uid: scores[uid] - baselines[uid] for uid in (2, 3)}
    assert values[0] / values[1] == pytest.approx((margin[2] / margin[3]) ** 2, abs=1e-4)


async def test_private_challenges_and_seeds_fresh_with_each_block(tmp_path: Path, autojump_clock: Any) -> None:
    from models.challenges import challenge_source

    series = [[float((i * i * 7 + k * 13) % 101) for i in range(120)] for k in range(2)]
    (tmp_path / "series.txt").write_text("\n".join(" ".join(map(str, row)) for row in series))
    market = Market(tmp_path, ["naive"], truth_delay_rounds=0)
    loop = market.loop()
    loop.challenges = challenge_source(loop.task, tmp_path / "series.txt")
    await loop.run_round()
    seen = [request["history"] for request in market.miners[1].requests]
    assert seen and all(
        any(history == row[i : i + len(history)] for row in series for i in range(len(row))) for history in seen
    )
    # The same secret, round and uid give another seed on another head block.
    assert loop._challenge_seed(1, b"\x01" * 32) != loop._challenge_seed(1, b"\x02" * 32)
