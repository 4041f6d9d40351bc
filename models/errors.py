"""The exceptions of the `models` package: one root, one class per failure a caller handles.

    ModelError                  root: catch this to handle any failure of a model or task
    ├── InvalidRequest          a request does not match the task's schema (``.reason``, ``.index``)
    ├── InvalidResponse         a response does not match the task's schema (``.reason``)
    ├── DeviceUnavailable       the asked-for torch device is absent or unknown
    ├── IncompatibleTask        a factory was given a task it does not serve
    ├── CheckpointError         a checkpoint file is missing, unreadable or for another model
    ├── DuplicateModel          a model name is registered twice
    ├── UnknownModel            no model is registered under that name (lists the known ones)
    ├── UnknownTask             no task has that name (lists the known ones)
    └── ModelLoadError          a ``package.module:factory`` spec or an entry point cannot be loaded

A miner server answers `InvalidRequest` to the caller (it is the caller's fault) and treats every
other `ModelError` from its own model as a local bug or misconfiguration.
"""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised by `models`."""


class InvalidRequest(ModelError):
    """A request does not match its task's request schema.

    ``reason`` says what is wrong, with a JSON path (``$.context``); ``index`` is the position of the
    bad request inside a batch, or None for a single request.
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        where = "" if index is None else f"request {index}: "
        super().__init__(f"invalid request: {where}{reason}")


class InvalidResponse(ModelError):
    """A response does not match its task's response schema (``reason`` says what is wrong)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid response: {reason}")


class DeviceUnavailable(ModelError):
    """The torch device asked for does not exist here (for example CUDA on a CPU-only build)."""


class IncompatibleTask(ModelError):
    """A model factory was handed a task it cannot serve."""


class CheckpointError(ModelError):
    """A checkpoint cannot be used: missing, unreadable, or saved for another model or vocabulary."""


class DuplicateModel(ModelError):
    """A model name is already registered (to a different factory)."""


class UnknownModel(ModelError, LookupError):
    """No model is registered under the asked-for name."""


class UnknownTask(ModelError, LookupError):
    """No task has the asked-for name."""


class ModelLoadError(ModelError):
    """A ``package.module:factory`` spec or a ``p2pnode.models`` entry point cannot be loaded."""


class ChallengeDataError(ModelError):
    """A validator's private challenge data cannot be used for its task (the message says why)."""
