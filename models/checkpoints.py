"""Where trained weights live and how they are read back.

A factory looks for its checkpoint in this order:

1. the ``checkpoint`` option: a file path; it must exist (a typo should not silently fall back);
2. ``<model_dir>/<model name>.pt``, where ``model_dir`` is the option of that name or else the
   ``P2PNODE_MODEL_DIR`` environment variable; a missing file here is not an error;
3. nothing found: the factory trains a quick, small version at start (seconds, fixed seed).

Checkpoints are ``torch.save`` dicts of plain data and tensors, read back with
``torch.load(weights_only=True)``, so a checkpoint file cannot run code when it is loaded. Each one
carries a ``format`` tag naming the model and its version, checked on load.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from models.errors import CheckpointError

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "P2PNODE_MODEL_DIR"

M = TypeVar("M")


def find_checkpoint(model_name: str, options: Mapping[str, Any]) -> Path | None:
    """The checkpoint file to load for ``model_name``, or None when the factory should train one."""
    explicit = options.get("checkpoint")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} for model {model_name!r} does not exist")
        return path
    directory = options.get("model_dir") or os.environ.get(MODEL_DIR_ENV)
    if directory:
        path = Path(directory).expanduser() / f"{model_name}.pt"
        if path.is_file():
            return path
    return None


def load_or_train_quick(model_name: str, options: Mapping[str, Any], load: Callable[[str], M],
                        train_quick: Callable[[], M], training_script: str) -> M:
    """The network of ``model_name``: `load` of its checkpoint when `find_checkpoint` finds one,
    else `train_quick()` (the quick start-up version), with a warning naming the script that
    trains a better one."""
    path = find_checkpoint(model_name, options)
    if path is not None:
        return load(str(path))
    log.warning("%s: no checkpoint found; training the quick start-up model (run %s and set %s for a "
                "better one)", model_name, training_script, MODEL_DIR_ENV)
    return train_quick()


def save_checkpoint(path: str | os.PathLike[str], format_tag: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` plus its ``format`` tag atomically (a crash never leaves half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    torch.save({"format": format_tag, **payload}, partial)
    partial.replace(target)
    return target


def load_checkpoint(path: str | os.PathLike[str], format_tag: str) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` with the same ``format_tag``."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; the caller needs one
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != format_tag:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} holds {found!r}, expected {format_tag!r}")
    return data
