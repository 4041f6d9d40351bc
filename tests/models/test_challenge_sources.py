"""Challenges miners cannot precompute (issue 15 item 2): a memoriser of the public corpus wins on
public challenges and loses to an honest model on generated and on private ones."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from models import create_model
from models.challenges import ChallengeSource, challenge_source
from models.errors import ChallengeDataError
from models.tasks import ForecastTask, TextTask
from models.tasks.corpus import VOCAB, load_corpus

# Prose written for this test, so it appears in no corpus a miner could have stored.
PRIVATE_TEXT = """\
The lighthouse keeper counted the boats every evening and wrote the number in a small green book.
On calm days the harbour held eleven of them, painted in colours that faded a little each summer.
When the wind turned to the north the fishermen stayed at home, mended their nets by the stove and
argued about the price of salt. The keeper liked those days best, because the lamp needed only
its usual care and the book could rest on the shelf beside the kettle.
A letter arrived in spring asking whether the old lamp could be replaced by an electric one. He
read it twice, folded it into the green book, and went out to look at the sea for a long while.
"""


class Memoriser:
    """Stores the public corpus and answers by looking the end of the context up in it: nearly all
    the probability on the character that followed the longest match, uniform if nothing matches."""

    def __init__(self) -> None:
        corpus = load_corpus()
        self.text = corpus.heldout + "\n" + corpus.train

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        context = request["context"]
        for length in (64, 48, 32, 24):
            if len(context) < length:
                continue
            at = self.text.find(context[-length:])
            if at >= 0 and at + length < len(self.text):
                return {"logprobs": [[self.text[at + length], math.log(0.99)]]}
        return {"logprobs": [[ch, -math.log(len(VOCAB))] for ch in VOCAB]}


@pytest.fixture(scope="module")
def text_models() -> tuple[TextTask, Memoriser, Any]:
    task = TextTask()
    return task, Memoriser(), create_model("text-bigram", task)


def mean_scores(task: TextTask, source: ChallengeSource, memoriser: Memoriser, honest: Any) -> tuple[float, float]:
    challenges = [source.make(seed) for seed in range(150)]
    requests = [request for request, _ in challenges]
    honest_answers = honest.answer_batch(requests)
    memorised = [task.score(r, memoriser.answer(r), t) for r, t in challenges]
    learnt = [task.score(r, a, t) for (r, t), a in zip(challenges, honest_answers, strict=True)]
    return statistics.mean(memorised), statistics.mean(learnt)


def test_the_memoriser_wins_public_challenges(text_models: tuple[TextTask, Memoriser, Any]) -> None:
    task, memoriser, honest = text_models
    memorised, learnt = mean_scores(task, challenge_source(task, kind="public"), memoriser, honest)
    assert memorised > learnt + 0.1, (memorised, learnt)


def test_the_memoriser_loses_generated_challenges(text_models: tuple[TextTask, Memoriser, Any]) -> None:
    task, memoriser, honest = text_models
    source = challenge_source(task)
    assert source.kind == "generated"
    memorised, learnt = mean_scores(task, source, memoriser, honest)
    assert learnt > memorised + 0.05, (memorised, learnt)
    assert memorised < task.baseline_score(*task.make_challenge(0)) + 0.05  # little better than uniform


def test_the_memoriser_loses_private_challenges(
    text_models: tuple[TextTask, Memoriser, Any], tmp_path: Path
) -> None:
    task, memoriser, honest = text_models
    (tmp_path / "private.txt").write_text(PRIVATE_TEXT)
    source = challenge_source(task, tmp_path / "private.txt")
    assert source.kind == "private"
    memorised, learnt = mean_scores(task, source, memoriser, honest)
    assert learnt > memorised + 0.05, (memorised, learnt)


def test_generated_and_private_challenges_are_valid_and_reproducible(tmp_path: Path) -> None:
    text, forecast = TextTask(), ForecastTask()
    series = "\n".join(" ".join(str(float((i * i * 7 + k * 13) % 101)) for i in range(120)) for k in range(3))
    (tmp_path / "series.txt").write_text("# my series\n" + series + "\n")
    (tmp_path / "text.txt").write_text(PRIVATE_TEXT)
    sources = [
        challenge_source(text),
        challenge_source(forecast),
        challenge_source(text, tmp_path / "text.txt"),
        challenge_source(forecast, tmp_path / "series.txt"),
    ]
    for source in sources:
        seen = set()
        for seed in range(30):
            request, truth = source.make(seed)
            assert source.make(seed) == (request, truth)
            source.task.validate_request(request)
            if isinstance(source.task, ForecastTask):
                assert len(truth) == request["horizon"] == forecast.config.horizon
            else:
                assert len(truth) == 1 and truth in VOCAB
            seen.add(repr(request))
        assert len(seen) > 10  # different seeds, different challenges
    # A private forecast window is a window of one of the file's series.
    request, truth = sources[3].make(5)
    rows = [[float(x) for x in line.split()] for line in series.splitlines()]
    window = request["history"] + truth
    assert any(window == row[i : i + len(window)] for row in rows for i in range(len(row)))


def test_unusable_challenge_data_is_a_named_one_line_error(tmp_path: Path) -> None:
    text, forecast = TextTask(), ForecastTask()
    cases = [
        (text, tmp_path / "missing.txt", None, "not a regular file"),
        (text, tmp_path / "short.txt", "too short", "needs more than"),
        (text, tmp_path / "binary.txt", b"\xff\xfe\x00", "not UTF-8"),
        (forecast, tmp_path / "words.txt", "1 2 three", "line 1: not a list of numbers"),
        (forecast, tmp_path / "few.txt", "1 2 3", "needs at least 20"),
        (forecast, tmp_path / "inf.txt", " ".join(["1e999"] * 30), "finite"),
        (forecast, tmp_path / "empty.txt", "# nothing\n", "no series"),
    ]
    for task, path, content, message in cases:
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(ChallengeDataError) as info:
            challenge_source(task, path)
        assert message in str(info.value) and "\n" not in str(info.value), (path, info.value)
