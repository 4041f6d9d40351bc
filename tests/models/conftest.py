"""Shared fixtures for the models tests: tasks, and every built-in model built once per session.

The built-in models are created with an empty model directory, so the trained ones always take
their quick start-up path (seconds, fixed seed) whatever P2PNODE_MODEL_DIR holds on this machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models import BUILTIN_MODELS, Model, create_model, get_task
from models.base import Task
from models.tasks import ForecastTask, TextTask


@pytest.fixture(scope="session")
def text_task() -> TextTask:
    task = get_task("text")
    assert isinstance(task, TextTask)
    return task


@pytest.fixture(scope="session")
def forecast_task() -> ForecastTask:
    task = get_task("forecast")
    assert isinstance(task, ForecastTask)
    return task


def task_of_model(name: str) -> str:
    """Built-in model names start with their task's name (text-..., forecast-...)."""
    return name.split("-", 1)[0]


@pytest.fixture(scope="session")
def empty_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-checkpoints")


@pytest.fixture(scope="session")
def builtin_models(
    text_task: TextTask, forecast_task: ForecastTask, empty_model_dir: Path
) -> Iterator[dict[str, Model]]:
    tasks: dict[str, Task] = {"text": text_task, "forecast": forecast_task}
    options = {"model_dir": str(empty_model_dir)}
    yield {name: create_model(name, tasks[task_of_model(name)], "cpu", options) for name in BUILTIN_MODELS}
