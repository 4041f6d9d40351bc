"""Every built-in model on the CPU: valid answers, one-pass batching, quality order, checkpoints."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from models import (
    BUILTIN_MODELS,
    CheckpointError,
    DeviceUnavailable,
    IncompatibleTask,
    InvalidRequest,
    Model,
    Request,
    create_model,
    resolve_device,
)
from models.base import Task
from models.checkpoints import MODEL_DIR_ENV, save_checkpoint
from models.forecast_models import (
    MLP_FORMAT,
    ForecastMLP,
    MLPConfig,
    MLPTrainConfig,
    mlp_checkpoint,
    train_mlp,
)
from models.gpt import CharGPT, GPTConfig, TrainConfig, train_char_gpt
from models.tasks import ForecastTask, TextTask
from models.tasks.corpus import load_corpus
from models.text_models import TRANSFORMER_FORMAT, encode_text, transformer_checkpoint

# Seeds far from the ones other tests use; held-out text (text) and fresh series (forecast).
QUALITY_SEEDS = range(10_000, 10_300)


def task_for(name: str, text_task: TextTask, forecast_task: ForecastTask) -> Task:
    # Built-in model names start with their task's name (text-..., forecast-...).
    return text_task if name.startswith("text-") else forecast_task


def mean_score(model: Model, challenges: Sequence[tuple[Request, Any]]) -> float:
    responses = model.answer_batch([request for request, _ in challenges])
    return statistics.mean(
        model.task.score(request, response, truth)
        for (request, truth), response in zip(challenges, responses, strict=True)
    )


def assert_same_responses(batched: list[dict], single: list[dict]) -> None:
    """Equal up to the last rounded digit: a batched matmul may differ from a lone one in the last bit."""
    assert len(batched) == len(single)
    for one, other in zip(batched, single, strict=True):
        ((key, values),) = one.items()
        ((other_key, other_values),) = other.items()
        assert key == other_key and len(values) == len(other_values)
        for value, other_value in zip(values, other_values, strict=True):
            if isinstance(value, list):  # text: [char, logprob]; the order may swap between near-ties
                assert dict(values)[value[0]] == pytest.approx(dict(other_values)[value[0]], abs=2e-4)
            else:
                assert value == pytest.approx(other_value, abs=1e-3)


@pytest.fixture(params=sorted(BUILTIN_MODELS))
def model_and_task(
    request: pytest.FixtureRequest, builtin_models: dict[str, Model], text_task: TextTask, forecast_task: ForecastTask
) -> tuple[Model, Task]:
    """Each built-in model (built once per session) with the task it serves."""
    return builtin_models[request.param], task_for(request.param, text_task, forecast_task)


def test_every_builtin_model_answers_challenges_with_valid_responses(model_and_task: tuple[Model, Task]) -> None:
    model, task = model_and_task
    assert model.task is task and model.device == torch.device("cpu")
    challenges = [task.make_challenge(seed) for seed in range(8)]
    responses = model.answer_batch([request for request, _ in challenges])
    assert len(responses) == 8
    for (request, truth), response in zip(challenges, responses, strict=True):
        assert task.validate_response(request, response) is response
        assert 0.0 < task.score(request, response, truth) <= 1.0


def test_one_batched_pass_answers_like_one_request_at_a_time(model_and_task: tuple[Model, Task]) -> None:
    model, task = model_and_task
    requests = [task.make_challenge(seed)[0] for seed in range(12)]
    # Unequal lengths, so the batch really is padded.
    if isinstance(task, TextTask):
        requests += [{"context": "a"}, {"context": "The"}, {"context": "x" * 1024}]
    else:
        requests += [
            {"history": [1, 2, 3, 4, 5, 6, 7, 8], "horizon": 1},
            {"history": [5.0] * 300, "horizon": 64},
        ]
    assert_same_responses(model.answer_batch(requests), [model.answer(request) for request in requests])


def test_a_bad_request_in_a_batch_is_named_by_its_index(builtin_models: dict[str, Model]) -> None:
    with pytest.raises(InvalidRequest) as info:
        builtin_models["text-bigram"].answer_batch([{"context": "ok"}, {"context": ""}])
    assert info.value.index == 1 and "request 1" in str(info.value)
    assert builtin_models["text-bigram"].answer_batch([]) == []


def test_the_trained_transformer_beats_the_frequency_baselines_on_held_out_text(
    builtin_models: dict[str, Model], text_task: TextTask
) -> None:
    challenges = [text_task.make_challenge(seed) for seed in QUALITY_SEEDS]
    scores = {
        name: mean_score(builtin_models[name], challenges)
        for name in BUILTIN_MODELS
        if name.startswith("text")
    }
    assert scores["text-uniform"] == pytest.approx(0.502, abs=1e-3)
    assert scores["text-unigram"] > scores["text-uniform"] + 0.05
    assert scores["text-bigram"] > scores["text-unigram"] + 0.03
    # The quick start-up transformer (seconds of training) already wins clearly.
    assert scores["text-transformer"] > scores["text-bigram"] + 0.03, scores


def test_the_trained_mlp_beats_the_naive_forecast(
    builtin_models: dict[str, Model], forecast_task: ForecastTask
) -> None:
    challenges = [forecast_task.make_challenge(seed) for seed in QUALITY_SEEDS]
    naive = mean_score(builtin_models["forecast-naive"], challenges)
    mlp = mean_score(builtin_models["forecast-mlp"], challenges)
    assert mlp > naive + 0.2, (mlp, naive)


def test_a_model_refuses_a_task_it_does_not_serve(text_task: TextTask, forecast_task: ForecastTask) -> None:
    with pytest.raises(IncompatibleTask, match="'text-bigram' serves the 'text' task, not 'forecast'"):
        create_model("text-bigram", forecast_task)
    with pytest.raises(IncompatibleTask, match="'forecast-naive' serves the 'forecast' task"):
        create_model("forecast-naive", text_task)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_asking_for_cuda_without_it_is_a_clear_error(text_task: TextTask) -> None:
    with pytest.raises(DeviceUnavailable, match="'cuda' was asked for but CUDA is not available"):
        create_model("text-uniform", text_task, device="cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_unknown_devices_are_refused() -> None:
    for device in ("gpu", "mps", "cuda:x", ""):
        with pytest.raises(DeviceUnavailable):
            resolve_device(device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_builtin_model_runs_on_cuda_and_agrees_with_the_cpu(
    name: str,
    builtin_models: dict[str, Model],
    text_task: TextTask,
    forecast_task: ForecastTask,
    empty_model_dir: Path,
) -> None:
    task = task_for(name, text_task, forecast_task)
    model = create_model(name, task, device="cuda", options={"model_dir": str(empty_model_dir)})
    assert next(
        iter(model.module.state_dict().values()), torch.zeros(0, device="cuda")
    ).is_cuda or name.endswith(("uniform", "naive"))
    requests = [task.make_challenge(seed)[0] for seed in range(16)]
    assert_same_responses(model.answer_batch(requests), builtin_models[name].answer_batch(requests))


# --- checkpoints ------------------------------------------------------------------------------


def tiny_gpt() -> tuple[CharGPT, TrainConfig]:
    train = TrainConfig(steps=5, batch_size=4, learning_rate=1e-3, seed=3)
    config = GPTConfig(block_size=8, n_layer=1, n_head=2, n_embd=16)
    model, _ = train_char_gpt(config, encode_text(load_corpus().train[:5000]), train)
    return model, train


def test_training_is_deterministic() -> None:
    first, _ = tiny_gpt()
    second, _ = tiny_gpt()
    for (key, value), (other_key, other_value) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert key == other_key and torch.equal(value, other_value)
    small = MLPTrainConfig(series=20, steps=5, batch_size=8)
    (one, _), (two, _) = train_mlp(MLPConfig(hidden=8), small), train_mlp(MLPConfig(hidden=8), small)
    assert all(
        torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True)
    )


def test_the_transformer_loads_its_checkpoint_from_the_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text_task: TextTask
) -> None:
    gpt, train = tiny_gpt()
    save_checkpoint(
        tmp_path / "text-transformer.pt",
        TRANSFORMER_FORMAT,
        transformer_checkpoint(gpt, train, train.steps, 4.0),
    )
    request = {"context": "Return the"}
    expected = torch.log_softmax(gpt(encode_text(request["context"][-8:]).unsqueeze(0))[0, -1], dim=-1)

    from_option = create_model("text-transformer", text_task, options={"model_dir": str(tmp_path)})
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    from_env = create_model("text-transformer", text_task)
    for model in (from_option, from_env):
        assert model.context_window == 8  # type: ignore[attr-defined]  # the checkpoint's block_size
        answer = dict(model.answer(request)["logprobs"])
        assert answer["e"] == pytest.approx(expected[text_task.vocab.index("e")].item(), abs=1e-4)


def test_the_mlp_loads_its_checkpoint_from_an_explicit_path(
    tmp_path: Path, forecast_task: ForecastTask
) -> None:
    mlp, _ = train_mlp(MLPConfig(hidden=8), MLPTrainConfig(series=20, steps=5, batch_size=8))
    path = save_checkpoint(
        tmp_path / "weights.pt", MLP_FORMAT, mlp_checkpoint(mlp, MLPTrainConfig(series=20, steps=5))
    )
    model = create_model("forecast-mlp", forecast_task, options={"checkpoint": str(path)})
    assert isinstance(model.module, ForecastMLP) and model.module.config.hidden == 8
    request, _ = forecast_task.make_challenge(1)
    assert len(model.answer(request)["forecast"]) == request["horizon"]


def test_bad_checkpoints_are_named_errors(
    tmp_path: Path, text_task: TextTask, forecast_task: ForecastTask
) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("text-transformer", text_task, options={"checkpoint": str(tmp_path / "missing.pt")})
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_model("text-transformer", text_task, options={"checkpoint": str(garbage)})
    mlp, _ = train_mlp(MLPConfig(hidden=8), MLPTrainConfig(series=20, steps=1, batch_size=8))
    other = save_checkpoint(
        tmp_path / "mlp.pt", MLP_FORMAT, mlp_checkpoint(mlp, MLPTrainConfig(series=20, steps=1))
    )
    with pytest.raises(
        CheckpointError, match="holds 'p2pnode.forecast-mlp/1', expected 'p2pnode.text-transformer/1'"
    ):
        create_model("text-transformer", text_task, options={"checkpoint": str(other)})


def test_a_time_cap_stops_training_and_says_so() -> None:
    config = MLPTrainConfig(series=20, steps=10**9, batch_size=8, max_seconds=0.2)
    _, schedule = train_mlp(MLPConfig(hidden=8), config)
    assert schedule.cut_short and 0 < schedule.steps_done < 10**9
    _, uncapped = train_mlp(MLPConfig(hidden=8), MLPTrainConfig(series=20, steps=3, batch_size=8))
    assert not uncapped.cut_short and uncapped.steps_done == 3


def test_each_task_baseline_is_its_trivial_model(
    builtin_models: dict[str, Model], text_task: TextTask, forecast_task: ForecastTask
) -> None:
    # The baseline a miner must beat to be paid is what the trivial built-in model answers:
    # uniform for text, the last value for forecasts (equal scores, up to float rounding).
    for task, trivial in ((text_task, "text-uniform"), (forecast_task, "forecast-naive")):
        challenges = [task.make_challenge(seed) for seed in range(20)]
        responses = builtin_models[trivial].answer_batch([request for request, _ in challenges])
        for (request, truth), response in zip(challenges, responses, strict=True):
            assert task.validate_response(request, task.baseline_response(request))
            baseline = task.baseline_score(request, truth)
            assert 0.0 < baseline < 1.0
            assert task.score(request, response, truth) == pytest.approx(baseline, abs=1e-12)
    # Every other built-in model beats its task's baseline on average.
    for name in BUILTIN_MODELS:
        task = task_for(name, text_task, forecast_task)
        if name in ("text-uniform", "forecast-naive"):
            continue
        challenges = [task.make_challenge(seed) for seed in QUALITY_SEEDS[:100]]
        baseline = statistics.mean(task.baseline_score(request, truth) for request, truth in challenges)
        assert mean_score(builtin_models[name], challenges) > baseline + 0.01, name
