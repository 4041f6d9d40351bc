"""Built-in models of the `forecast` task.

    forecast-naive   "the future equals the last value" (the baseline every forecaster must beat)
    forecast-mlp     a small MLP on the last `window` values, trained on synthetic series

Both share `ForecastModel`: each history is cut (or left-padded with its first value) to the
model's window and normalised by its own last value and mean absolute step, so one set of weights
serves series of any level and scale; the module predicts normalised changes for `horizon` steps
and the requested prefix is returned, de-normalised, rounded to 4 decimals.

Weights of `forecast-mlp`: see `models.checkpoints` for where a checkpoint is looked for
(``scripts/train_forecast.py`` writes one). Without one the factory trains `QUICK_TRAIN` at start
(fixed seed, once per process; 3.5-8 s measured on the shared 2-core machine, 3 s of CPU; capped
at 30 s) and logs a warning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import Model, Request, Response, Task, Tensors, require_task, resolve_device
from models.checkpoints import load_checkpoint, load_or_train_quick
from models.errors import CheckpointError, IncompatibleTask
from models.tasks.forecast import ForecastTask, synthetic_series
from models.training import TRAINING_THREADS, Schedule, cosine_rate, torch_threads

MLP_FORMAT = "p2pnode.forecast-mlp/1"


@dataclass(frozen=True)
class MLPConfig:
    window: int = 96  # past values the model reads
    horizon: int = 64  # future values it predicts (the task's longest horizon)
    hidden: int = 256


@dataclass(frozen=True)
class MLPTrainConfig:
    series: int  # distinct synthetic series to train on
    steps: int
    batch_size: int = 256
    learning_rate: float = 2e-3
    seed: int = 0
    max_seconds: float | None = None  # a time cap (see `models.training.Schedule`); None = deterministic


QUICK_TRAIN = MLPTrainConfig(series=1500, steps=400, max_seconds=30.0)
FULL_TRAIN = MLPTrainConfig(series=20000, steps=4000)


class NaiveForecast(nn.Module):
    """Predicts no change: every normalised future step is 0, i.e. the last value."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, normalised: torch.Tensor) -> torch.Tensor:
        return torch.zeros(normalised.shape[0], self.horizon, device=normalised.device)  # (B, H)


class ForecastMLP(nn.Module):
    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.window, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.horizon),
        )

    def forward(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.net(normalised)  # (B, window) -> (B, horizon)


def normalise(
    windows: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalised windows, last values, scales) of left-padded float64 windows (B, W).

    The scale is the mean absolute one-step change over each window's real values (padding
    repeats the first value, so it adds zero changes and is left out of the count).
    """
    last = windows[:, -1:]  # (B, 1)
    steps = (windows[:, 1:] - windows[:, :-1]).abs().sum(dim=1, keepdim=True)  # (B, 1)
    scale = (steps / (lengths.unsqueeze(1) - 1).clamp(min=1)).clamp(min=1e-6)
    return ((windows - last) / scale).float(), last, scale


class ForecastModel(Model):
    """A module (B, window) normalised history -> (B, horizon) normalised future, as a `forecast` model."""

    def __init__(
        self,
        name: str,
        task: ForecastTask,
        module: nn.Module,
        device: torch.device,
        window: int,
        horizon: int,
    ) -> None:
        super().__init__(name, task, module, device)
        if horizon < task.config.max_horizon:
            raise IncompatibleTask(
                f"model {name!r} predicts {horizon} steps; the task allows {task.config.max_horizon}"
            )
        self.window = window

    def encode_batch(self, requests: Sequence[Request]) -> Tensors:
        rows: list[list[float]] = []
        for request in requests:
            history = [float(value) for value in request["history"][-self.window :]]
            rows.append([history[0]] * (self.window - len(history)) + history)
        lengths = torch.tensor([min(len(request["history"]), self.window) for request in requests])
        windows = torch.tensor(rows, dtype=torch.float64)  # (B, W); float64 keeps large levels exact
        normalised, last, scale = normalise(windows, lengths)
        horizons = torch.tensor([request["horizon"] for request in requests])
        return {
            "normalised": normalised.to(self.device),
            "last": last.to(self.device),
            "scale": scale.to(self.device),
            "horizon": horizons.to(self.device),
        }

    def forward(self, batch: Tensors) -> Tensors:
        changes = self.module(batch["normalised"]).double()  # (B, H)
        return {"forecast": batch["last"] + batch["scale"] * changes, "horizon": batch["horizon"]}

    def decode_batch(self, outputs: Tensors) -> list[Response]:
        responses: list[Response] = []
        for row, horizon in zip(outputs["forecast"].tolist(), outputs["horizon"].tolist(), strict=True):
            responses.append({"forecast": [round(value, 4) for value in row[:horizon]]})
        return responses


def naive_factory(task: Task, device: str = "cpu", **options: Any) -> ForecastModel:
    forecast = require_task(task, ForecastTask, "forecast-naive")
    horizon = forecast.config.max_horizon
    return ForecastModel(
        "forecast-naive", forecast, NaiveForecast(horizon), resolve_device(device), window=2, horizon=horizon
    )


def training_windows(config: MLPConfig, series: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised inputs (N, window), normalised targets (N, horizon)) from synthetic series.

    Training series use negative seeds, -1 - i, apart from the non-negative seeds validators
    usually draw; the generator is public, so this is tidiness rather than secrecy.
    """
    rows = [synthetic_series(-1 - seed * series - i, config.window + config.horizon) for i in range(series)]
    values = torch.tensor(rows, dtype=torch.float64)  # (N, window + horizon)
    history, future = values[:, : config.window], values[:, config.window :]
    lengths = torch.full((series,), config.window)
    inputs, last, scale = normalise(history, lengths)
    return inputs, ((future - last) / scale).float()


def train_mlp(
    config: MLPConfig, train: MLPTrainConfig, progress: Callable[[int, float], None] | None = None
) -> tuple[ForecastMLP, Schedule]:
    """Train a `ForecastMLP` with an L1 loss (the score is a mean absolute error).

    Returns the model and its finished `Schedule`; without a time cap the result is deterministic.
    """
    inputs, targets = training_windows(config, train.series, train.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model = ForecastMLP(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(train.seed)
    schedule = Schedule(train.steps, train.max_seconds)
    model.train()
    step = 0
    while (fraction := schedule.fraction(step)) < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = cosine_rate(train.learning_rate, fraction, step, warmup_steps=0)
        index = torch.randint(0, len(inputs), (train.batch_size,), generator=generator)
        loss = F.l1_loss(model(inputs[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None and step % 250 == 0:
            progress(step, loss.item())
        step += 1
    return model.eval(), schedule


@functools.lru_cache(maxsize=1)
def _quick_trained_state() -> dict[str, torch.Tensor]:
    # Cached so that a process creating the model twice trains once.
    with torch_threads(TRAINING_THREADS):
        model, schedule = train_mlp(MLPConfig(), QUICK_TRAIN)
    schedule.warn_if_cut_short("forecast-mlp")
    return model.state_dict()


def mlp_checkpoint(model: ForecastMLP, train: MLPTrainConfig) -> dict[str, Any]:
    """The payload `scripts/train_forecast.py` saves and `mlp_factory` loads."""
    return {"config": asdict(model.config), "state_dict": model.state_dict(), "train": asdict(train)}


def load_mlp(path: str) -> ForecastMLP:
    data = load_checkpoint(path, MLP_FORMAT)
    try:
        model = ForecastMLP(MLPConfig(**data["config"]))
        model.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path!r} does not fit the forecast MLP: {exc}") from exc
    return model.eval()


def _quick_mlp() -> ForecastMLP:
    mlp = ForecastMLP(MLPConfig())
    mlp.load_state_dict(_quick_trained_state())
    return mlp


def mlp_factory(task: Task, device: str = "cpu", **options: Any) -> ForecastModel:
    """`forecast-mlp`: loads a checkpoint if one is found, else trains the quick version.

    Options: ``checkpoint`` (file path) or ``model_dir`` (directory holding forecast-mlp.pt);
    ``P2PNODE_MODEL_DIR`` is the default directory.
    """
    forecast = require_task(task, ForecastTask, "forecast-mlp")
    torch_device = resolve_device(device)
    mlp = load_or_train_quick("forecast-mlp", options, load_mlp, _quick_mlp, "scripts/train_forecast.py")
    return ForecastModel(
        "forecast-mlp", forecast, mlp, torch_device, window=mlp.config.window, horizon=mlp.config.horizon
    )
