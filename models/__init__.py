"""Models and tasks of p2pnode's subnets: the plug-in interface, the registry, the built-ins.

`models` imports torch and numpy only, never p2pnode or protocols: a model can be developed and
tested with nothing but torch. Importing this package does not import torch either (the built-in
models are registered as lazy specs), so a validator that only scores stays light.

Typical use::

    from models import create_model, get_task

    task = get_task("text")
    model = create_model("text-transformer", task, device="cpu")
    request, truth = task.make_challenge(seed=7)
    [response] = model.answer_batch([request])
    score = task.score(request, response, truth)         # in [0, 1]
"""

from __future__ import annotations

from models.base import Model, ModelFactory, Request, Response, Task, Tensors, Truth, resolve_device
from models.errors import (
    CheckpointError,
    DeviceUnavailable,
    DuplicateModel,
    IncompatibleTask,
    InvalidRequest,
    InvalidResponse,
    ModelError,
    ModelLoadError,
    UnknownModel,
    UnknownTask,
)
from models.registry import (
    BUILTIN_MODELS,
    ENTRY_POINT_GROUP,
    ModelRegistry,
    available_models,
    create_model,
    default_registry,
    get_model_factory,
    register_model,
    resolve,
)
from models.tasks import ForecastTask, TextTask, available_tasks, get_task

__all__ = [
    "BUILTIN_MODELS",
    "ENTRY_POINT_GROUP",
    "CheckpointError",
    "DeviceUnavailable",
    "DuplicateModel",
    "ForecastTask",
    "IncompatibleTask",
    "InvalidRequest",
    "InvalidResponse",
    "Model",
    "ModelError",
    "ModelFactory",
    "ModelLoadError",
    "ModelRegistry",
    "Request",
    "Response",
    "Task",
    "Tensors",
    "TextTask",
    "Truth",
    "UnknownModel",
    "UnknownTask",
    "available_models",
    "available_tasks",
    "create_model",
    "default_registry",
    "get_model_factory",
    "get_task",
    "register_model",
    "resolve",
    "resolve_device",
]
