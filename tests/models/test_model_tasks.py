"""The built-in tasks: request validation, deterministic challenges, and scoring."""

from __future__ import annotations

import ast
import math
import subprocess
import sys

import pytest

from models import InvalidRequest, UnknownTask, get_task
from models.tasks import ForecastTask, TextTask, available_tasks, synthetic_series
from models.tasks.corpus import VOCAB, _docstrings, is_heldout, load_corpus, normalize, stdlib_dir


def test_tasks_are_found_by_name_and_unknown_names_list_the_known_ones() -> None:
    assert available_tasks() == ["forecast", "text"]
    with pytest.raises(UnknownTask, match="unknown task 'image'; known tasks: forecast, text"):
        get_task("image")


def test_importing_the_tasks_does_not_import_torch() -> None:
    # A validator that only scores must not pay torch's import time and memory.
    code = "import sys, models, models.tasks; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (None, "$: expected an object, got NoneType"),
        ({}, "$: missing required field 'context'"),
        ({"context": ""}, "$.context: expected at least 1 characters"),
        ({"context": "x" * 1025}, "$.context: expected at most 1024 characters"),
        ({"context": 12}, "$.context: expected a string, got int"),
        ({"context": "ab", "k": 5}, "$: unknown field 'k'"),
        ({"context": "tab\there"}, "$.context[3]: character '\\t' is outside the vocabulary"),
        ({"context": "caf\u00e9"}, "$.context[3]: character 'é' is outside the vocabulary"),
    ],
)
def test_text_rejects_bad_requests_with_a_reason(text_task: TextTask, request_: object, reason: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        text_task.validate_request(request_)
    assert info.value.reason.startswith(reason)


def test_text_challenges_are_deterministic_held_out_and_valid(text_task: TextTask) -> None:
    corpus = load_corpus()
    first = [text_task.make_challenge(seed) for seed in range(50)]
    assert first == [text_task.make_challenge(seed) for seed in range(50)]
    assert len({request["context"] for request, _ in first}) == 50
    for request, truth in first:
        text_task.validate_request(request)
        assert 64 <= len(request["context"]) <= 128
        assert truth in VOCAB
        assert request["context"] + truth in corpus.heldout


def test_the_corpus_is_rebuilt_identically_and_split_by_whole_docstrings() -> None:
    corpus = load_corpus()
    load_corpus.cache_clear()
    rebuilt = load_corpus()
    assert rebuilt is not corpus
    assert rebuilt.fingerprint == corpus.fingerprint
    assert set(corpus.train) <= set(VOCAB) and set(corpus.heldout) <= set(VOCAB)
    assert 0.05 < len(corpus.heldout) / len(corpus.train) < 0.2
    # Every docstring of a listed module lies whole in the part its module:qualname hashes to.
    tree = ast.parse((stdlib_dir() / "inspect.py").read_text(encoding="utf-8"))
    split = {"heldout": 0, "train": 0}
    for qualname, doc in _docstrings(tree):
        part = "heldout" if is_heldout("inspect", qualname) else "train"
        assert normalize(doc) + "\n\n" in getattr(corpus, part)
        split[part] += 1
    assert split["train"] > 0 and split["heldout"] > 0


def distribution(probabilities: dict[str, float]) -> dict[str, list[list[object]]]:
    return {"logprobs": [[ch, math.log(p)] for ch, p in probabilities.items()]}


def test_text_scores_certainty_uniform_and_wrong_answers(text_task: TextTask) -> None:
    request = {"context": "Return the"}
    uniform = distribution(dict.fromkeys(VOCAB, 1 / len(VOCAB)))
    assert text_task.score(request, uniform, " ") == pytest.approx(1 - math.log(1 / 96) / math.log(0.01 / 96))
    assert text_task.score(request, {"logprobs": [[" ", 0.0]]}, " ") == pytest.approx(0.999, abs=1e-3)
    assert text_task.score(request, {"logprobs": [["x", 0.0]]}, " ") == 0.0
    # Unlisted characters share the rest: half on " ", the other half spread over 95 characters.
    half = {"logprobs": [[" ", math.log(0.5)]]}
    assert text_task.probability(half, "q") == pytest.approx(0.5 / 95)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "e",
        {},
        {"logprobs": []},
        {"logprobs": [["e"]]},
        {"logprobs": [["e", 0.5]]},  # a log-probability above 0
        {"logprobs": [["ee", -1.0]]},
        {"logprobs": [["\t", -1.0]]},
        {"logprobs": [["e", -0.1], ["e", -3.0]]},  # listed twice
        {"logprobs": [["e", -0.1], ["a", -0.1]]},  # probabilities sum to 1.81
        {"logprobs": [["e", float("nan")]]},
        {"logprobs": [["e", "-1"]]},
        {"logprobs": [[ch, -0.01] for ch in VOCAB] + [["e", -1.0]]},  # too many entries
        {"logprobs": [["e", -1.0]], "extra": 1},
    ],
)
def test_text_garbage_scores_zero(text_task: TextTask, garbage: object) -> None:
    assert text_task.score({"context": "Th"}, garbage, "e") == 0.0


def test_text_score_rewards_honest_beliefs_over_overconfidence(text_task: TextTask) -> None:
    # If the next character really is "e" with p=0.6, "a" 0.3, "o" 0.1, reporting exactly that
    # earns more on average than sharpening it or betting everything on "e".
    truth = {"e": 0.6, "a": 0.3, "o": 0.1}
    request = {"context": "th"}

    def expected_score(reported: dict[str, float]) -> float:
        return sum(p * text_task.score(request, distribution(reported), ch) for ch, p in truth.items())

    honest = expected_score(truth)
    assert honest > expected_score({"e": 0.8, "a": 0.15, "o": 0.05})
    assert honest > expected_score({"e": 1.0})
    assert honest > expected_score(dict.fromkeys(VOCAB, 1 / 96))


# --- forecast ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ([1, 2], "$: expected an object, got list"),
        ({"history": [1.0] * 10}, "$: missing required field 'horizon'"),
        ({"history": [1.0] * 7, "horizon": 3}, "$.history: expected at least 8 items"),
        ({"history": [1.0] * 1025, "horizon": 3}, "$.history: expected at most 1024 items"),
        ({"history": [1.0] * 9 + ["2"], "horizon": 3}, "$.history[9]: expected a number, got str"),
        ({"history": [1.0] * 9 + [True], "horizon": 3}, "$.history[9]: expected a number, got bool"),
        ({"history": [1.0] * 9 + [math.nan], "horizon": 3}, "$.history[9]: expected a finite number"),
        ({"history": [1.0] * 9 + [1e10], "horizon": 3}, "$.history[9]: 10000000000.0 is above the maximum"),
        ({"history": [1.0] * 10, "horizon": 0}, "$.horizon: 0 is below the minimum 1"),
        ({"history": [1.0] * 10, "horizon": 65}, "$.horizon: 65 is above the maximum 64"),
        ({"history": [1.0] * 10, "horizon": 2.0}, "$.horizon: expected an integer, got float"),
    ],
)
def test_forecast_rejects_bad_requests_with_a_reason(
    forecast_task: ForecastTask, request_: object, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        forecast_task.validate_request(request_)
    assert info.value.reason.startswith(reason)


def test_the_synthetic_series_is_a_deterministic_function_of_its_seed() -> None:
    assert synthetic_series(7, 200) == synthetic_series(7, 200)
    assert synthetic_series(7, 50) == synthetic_series(7, 200)[:50]  # the future extends the past
    assert synthetic_series(7, 200) != synthetic_series(8, 200)
    assert synthetic_series(-7, 200) != synthetic_series(7, 200)


def test_forecast_challenges_are_deterministic_and_keep_the_future_private(
    forecast_task: ForecastTask,
) -> None:
    request, truth = forecast_task.make_challenge(11)
    assert (request, truth) == forecast_task.make_challenge(11)
    assert forecast_task.make_challenge(12)[0] != request
    forecast_task.validate_request(request)
    assert len(request["history"]) == 96 and request["horizon"] == len(truth) == 12
    assert request["history"] + truth == synthetic_series(11, 108)


def test_forecast_scores_fall_with_the_error_and_garbage_scores_zero(forecast_task: ForecastTask) -> None:
    request, truth = forecast_task.make_challenge(3)
    assert forecast_task.score(request, {"forecast": truth}, truth) == 1.0
    scores = [
        forecast_task.score(request, {"forecast": [t + offset for t in truth]}, truth)
        for offset in (0.5, 2, 8)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    for garbage in (
        None,
        {},
        {"forecast": truth[:-1]},
        {"forecast": truth + [1.0]},
        {"forecast": ["1"] * 12},
        {"forecast": [math.inf] * 12},
        {"forecast": truth, "confidence": 1},
    ):
        assert forecast_task.score(request, garbage, truth) == 0.0
