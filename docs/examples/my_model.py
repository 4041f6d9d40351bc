"""A complete custom model for the `forecast` task, in one file: "seasonal naive with drift".

It repeats the last season of the history (the period is the lag whose values differ least from
today's), shifted by how much one season changed the level. Load it without editing p2pnode:

    PYTHONPATH=docs/examples p2pnode join ... --miner my_model:factory --netuid N
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models import ForecastTask, IncompatibleTask, Model, Request, Response, Task, Tensors, resolve_device

WINDOW = 96  # past values the model reads
MAX_PERIOD = 40  # longest season it looks for


class SeasonalNaive(nn.Module):
    def forward(self, history: torch.Tensor, horizon: int) -> torch.Tensor:
        """(B, WINDOW) past values -> (B, horizon) forecasts."""
        width = history.shape[1]
        lags = torch.arange(2, MAX_PERIOD + 1)
        # Mean |x[t] - x[t - lag]| over the last 2 * MAX_PERIOD points, for every lag: (B, lags).
        recent = torch.arange(width - 2 * MAX_PERIOD, width)
        errors = torch.stack(
            [(history[:, recent] - history[:, recent - lag]).abs().mean(1) for lag in lags], 1
        )
        period = lags[errors.argmin(dim=1)].unsqueeze(1)  # (B, 1)
        steps = torch.arange(horizon).unsqueeze(0)  # (1, H)
        seasons_ahead = steps // period + 1  # (B, H)
        source = width - period + steps % period  # where the same phase was last seen
        drift = history[:, -1:] - history.gather(1, width - 1 - period)  # level change over one season
        return history.gather(1, source) + seasons_ahead * drift


class SeasonalForecaster(Model):
    def encode_batch(self, requests: Sequence[Request]) -> Tensors:
        rows = []
        for request in requests:
            history = [float(value) for value in request["history"][-WINDOW:]]
            rows.append([history[0]] * (WINDOW - len(history)) + history)  # left-pad short histories
        return {
            "history": torch.tensor(rows, dtype=torch.float64, device=self.device),
            "horizon": torch.tensor([request["horizon"] for request in requests], device=self.device),
        }

    def forward(self, batch: Tensors) -> Tensors:
        forecast = self.module(batch["history"], int(batch["horizon"].max()))  # one pass for the batch
        return {"forecast": forecast, "horizon": batch["horizon"]}

    def decode_batch(self, outputs: Tensors) -> list[Response]:
        rows, horizons = outputs["forecast"].tolist(), outputs["horizon"].tolist()
        return [{"forecast": [round(v, 4) for v in row[:h]]} for row, h in zip(rows, horizons, strict=True)]


def factory(task: Task, device: str = "cpu", **options: Any) -> Model:
    if not isinstance(task, ForecastTask):
        raise IncompatibleTask(f"my_model serves the forecast task, not {task.name!r}")
    return SeasonalForecaster("my-seasonal-naive", task, SeasonalNaive(), resolve_device(device))
