"""Subnet tasks: one per kind of work a subnet buys (schemas, challenges, scoring).

Importing this package does not import torch, so a validator that only scores stays light.
"""

from __future__ import annotations

from collections.abc import Callable

from models.base import Task
from models.errors import UnknownTask
from models.tasks.forecast import ForecastTask, ForecastTaskConfig, synthetic_series
from models.tasks.text import TextTask, TextTaskConfig

# Task name -> constructor with the default configuration.
TASKS: dict[str, Callable[[], Task]] = {
    TextTask.name: TextTask,
    ForecastTask.name: ForecastTask,
}


def get_task(name: str) -> Task:
    """A task with its default configuration; `UnknownTask` lists the known names."""
    try:
        make = TASKS[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return make()


def available_tasks() -> list[str]:
    return sorted(TASKS)


__all__ = [
    "TASKS",
    "ForecastTask",
    "ForecastTaskConfig",
    "TextTask",
    "TextTaskConfig",
    "available_tasks",
    "get_task",
    "synthetic_series",
]
