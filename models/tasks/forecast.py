"""The `forecast` task: predict the next values of a numeric series; the truth arrives later.

Request::

    {"history": [12.5, 13.1, ...], "horizon": 12}     # 8..1024 past values (oldest first), 1..64 steps

Response::

    {"forecast": [14.0, 14.6, ...]}                   # exactly `horizon` finite numbers

Numbers are JSON numbers (int or float, finite, |x| <= 1e9).

Challenge: a synthetic series from `synthetic_series(seed)`: level + linear trend + two seasonal
harmonics (period 7, 12, 24 or 30) + AR(1) noise, every parameter drawn from the seed. The request
holds its first `history_len` values; the truth is the next `horizon` values. With a live data
feed the validator would keep the request and score it once the future is observed; the synthetic
generator simply knows the future already and keeps it private, and `score` is the same either way.

Score: mean absolute error over the horizon, scaled by the mean absolute one-step change of the
history (the in-sample error of "tomorrow equals today", as in MASE), mapped into (0, 1] by
``1 / (1 + scaled_error)``: 1.0 for a perfect forecast, 0.5 when the error equals one typical step.
The scale makes scores comparable across series of any size. A response that fails validation
scores 0.0.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

from models.base import Request, Response, Task
from models.errors import ChallengeDataError, InvalidResponse
from models.schema import Schema

MAX_ABS_VALUE = 1e9
SEASON_PERIODS = (7, 12, 24, 30)


def synthetic_series(seed: int, length: int) -> list[float]:
    """A deterministic seasonal + trend + noise series: the same (seed, length) gives the same values.

    Uses only the standard library's Mersenne Twister seeded by a string (hashed with sha512), so
    every peer computes the same values on any platform. Values are rounded to 4 decimals so they
    travel exactly in any JSON or CBOR encoding.
    """
    rng = random.Random(f"p2pnode.forecast/{seed}")
    level = rng.uniform(-100.0, 100.0)
    slope = rng.uniform(-0.5, 0.5)
    period = rng.choice(SEASON_PERIODS)
    amplitude = rng.uniform(2.0, 20.0)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    amplitude_2 = rng.uniform(0.0, 0.5) * amplitude  # second harmonic: non-sinusoidal seasons
    phase_2 = rng.uniform(0.0, 2.0 * math.pi)
    noise_sd = rng.uniform(0.05, 0.3) * amplitude
    persistence = rng.uniform(0.0, 0.7)  # AR(1) coefficient of the noise
    innovation_sd = noise_sd * math.sqrt(1.0 - persistence**2)  # keeps the noise's variance at noise_sd**2
    noise = rng.gauss(0.0, noise_sd)
    values: list[float] = []
    for t in range(length):
        angle = 2.0 * math.pi * t / period
        value = (
            level
            + slope * t
            + amplitude * math.sin(angle + phase)
            + amplitude_2 * math.sin(2.0 * angle + phase_2)
            + noise
        )
        values.append(round(value, 4))
        noise = persistence * noise + rng.gauss(0.0, innovation_sd)
    return values


def step_scale(history: list[float]) -> float:
    """Mean absolute one-step change of ``history`` (floored so a flat series cannot divide by 0)."""
    changes = [abs(b - a) for a, b in zip(history, history[1:], strict=False)]
    return max(sum(changes) / len(changes), 1e-6) if changes else 1.0


@dataclass(frozen=True)
class ForecastTaskConfig:
    max_history: int = 1024  # longest history a miner must accept
    max_horizon: int = 64  # farthest step a request may ask for
    history_len: int = 96  # challenge shape
    horizon: int = 12



def _values(min_items: int, max_items: int, description: str = "") -> Schema:
    """The schema of a series: between `min_items` and `max_items` bounded numbers."""
    schema: Schema = {
        "type": "array",
        "minItems": min_items,
        "maxItems": max_items,
        "items": {"type": "number", "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE},
    }
    if description:
        schema["description"] = description
    return schema


class ForecastTask(Task):
    """Forecast `horizon` future values of a numeric series from its history."""

    name = "forecast"

    def __init__(self, config: ForecastTaskConfig | None = None) -> None:
        self.config = config or ForecastTaskConfig()

    @functools.cached_property
    def request_schema(self) -> Schema:  # built once: validation runs per request
        return {
            "type": "object",
            "properties": {
                "history": _values(8, self.config.max_history, "past values, oldest first"),
                "horizon": {"type": "integer", "minimum": 1, "maximum": self.config.max_horizon},
            },
            "required": ["history", "horizon"],
        }

    @functools.cached_property
    def response_schema(self) -> Schema:
        return {
            "type": "object",
            "properties": {"forecast": _values(1, self.config.max_horizon)},
            "required": ["forecast"],
        }

    def check_response(self, request: Request, response: Response) -> None:
        if len(response["forecast"]) != request["horizon"]:
            raise InvalidResponse(
                f"$.forecast: expected {request['horizon']} values (the horizon), got {len(response['forecast'])}"
            )

    def make_challenge(self, seed: int) -> tuple[Request, list[float]]:
        """The first `history_len` values of series ``seed`` and, privately, the next `horizon`."""
        values = synthetic_series(seed, self.config.history_len + self.config.horizon)
        history = values[: self.config.history_len]
        return {"history": history, "horizon": self.config.horizon}, values[self.config.history_len :]

    def load_challenge_data(self, text: str) -> list[list[float]]:
        """Private series: one per line, numbers separated by commas or spaces ('#' starts a comment).

        Each series needs at least 8 values of history plus the horizon; all values are finite and
        within the task's range.
        """
        series: list[list[float]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].replace(",", " ").strip()
            if not line:
                continue
            try:
                values = [float(x) for x in line.split()]
            except ValueError:
                raise ChallengeDataError(f"challenge data line {number}: not a list of numbers") from None
            if not all(math.isfinite(v) and abs(v) <= MAX_ABS_VALUE for v in values):
                raise ChallengeDataError(f"challenge data line {number}: values must be finite, |v| <= {MAX_ABS_VALUE:g}")
            if len(values) < 8 + self.config.horizon:
                raise ChallengeDataError(
                    f"challenge data line {number}: {len(values)} values; a series needs at least "
                    f"{8 + self.config.horizon} (8 of history and the horizon of {self.config.horizon})"
                )
            series.append([round(v, 4) for v in values])
        if not series:
            raise ChallengeDataError("challenge data holds no series")
        return series

    def challenge_from_data(self, data: list[list[float]], seed: int) -> tuple[Request, list[float]]:
        """A window of one of the validator's private series (by `seed`): history, then the truth."""
        rng = random.Random(f"p2pnode.forecast.private/{seed}")
        values = data[rng.randrange(len(data))]
        horizon = self.config.horizon
        history_len = min(self.config.history_len, len(values) - horizon)
        start = rng.randint(0, len(values) - history_len - horizon)
        history = values[start : start + history_len]
        return {"history": history, "horizon": horizon}, values[start + history_len : start + history_len + horizon]

    def baseline_response(self, request: Request) -> Response:
        """The future equals the last value: the forecast every forecaster must beat."""
        return {"forecast": [request["history"][-1]] * request["horizon"]}

    def scaled_error(self, request: Request, response: Response, truth: list[float]) -> float:
        """Mean absolute error over the horizon in units of the history's typical step."""
        forecast = response["forecast"]
        error = sum(abs(f - t) for f, t in zip(forecast, truth, strict=True)) / len(truth)
        return error / step_scale(request["history"])

    def score_valid(self, request: Request, response: Response, truth: list[float]) -> float:
        if len(truth) != len(response["forecast"]):
            raise ValueError(f"truth has {len(truth)} values for a horizon of {len(response['forecast'])}")
        return 1.0 / (1.0 + self.scaled_error(request, response, truth))
