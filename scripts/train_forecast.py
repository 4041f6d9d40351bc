#!/usr/bin/env python3
"""Train the `forecast-mlp` model on synthetic series and save a checkpoint.

    python scripts/train_forecast.py /var/lib/p2pnode/models/forecast-mlp.pt
    P2PNODE_MODEL_DIR=/var/lib/p2pnode/models p2pnode join ... --model forecast-mlp

The defaults (`FULL_TRAIN` in models/forecast_models.py) train in well under two minutes on a CPU
(the loop is capped at ``--max-seconds``, 100 by default). Unless the cap binds, the same arguments
give the same weights (fixed seed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

from models.base import resolve_device
from models.checkpoints import save_checkpoint
from models.forecast_models import (
    FULL_TRAIN,
    MLP_FORMAT,
    ForecastModel,
    MLPConfig,
    NaiveForecast,
    mlp_checkpoint,
    train_mlp,
)
from models.tasks.forecast import ForecastTask
from models.training import add_training_arguments, torch_threads

# Validation challenges use seeds from here on, away from the training series (negative seeds).
VALIDATION_SEED = 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="checkpoint file to write (e.g. <model dir>/forecast-mlp.pt)")
    parser.add_argument("--series", type=int, default=FULL_TRAIN.series)
    parser.add_argument("--steps", type=int, default=FULL_TRAIN.steps)
    parser.add_argument("--seed", type=int, default=FULL_TRAIN.seed)
    parser.add_argument("--validate", type=int, default=500, help="challenges to score the result on")
    add_training_arguments(parser)
    args = parser.parse_args(argv)

    train = replace(
        FULL_TRAIN, series=args.series, steps=args.steps, seed=args.seed, max_seconds=args.max_seconds or None
    )
    config = MLPConfig()

    def progress(step: int, loss: float) -> None:
        print(f"step {step:5d}  loss {loss:.3f}  {time.perf_counter() - started:6.1f} s", flush=True)

    started = time.perf_counter()
    with torch_threads(args.threads):
        model, schedule = train_mlp(config, train, progress)
    seconds = time.perf_counter() - started
    save_checkpoint(args.out, MLP_FORMAT, mlp_checkpoint(model, train))

    task = ForecastTask()
    device = resolve_device("cpu")
    challenges = [task.make_challenge(VALIDATION_SEED + i) for i in range(args.validate)]
    requests = [request for request, _ in challenges]
    for name, module in (("forecast-mlp", model), ("forecast-naive", NaiveForecast(config.horizon))):
        served = ForecastModel(name, task, module, device, window=config.window, horizon=config.horizon)
        scores = [
            task.score(request, response, truth)
            for (request, truth), response in zip(challenges, served.answer_batch(requests), strict=True)
        ]
        print(f"{name}: mean score {statistics.mean(scores):.3f} on {len(scores)} challenges")
    cut = f" (cut short by the {args.max_seconds:.0f} s cap)" if schedule.cut_short else ""
    print(
        f"trained on {train.series} series for {schedule.steps_done} steps{cut} in {seconds:.1f} s; saved {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
