"""Where a validator's challenges come from, so that miners cannot have stored the answers.

    source = challenge_source(task, data_path=None)     # generated, or private with a path
    request, truth = source.make(seed)

- ``public``: the task's `make_challenge`, cut from public data (the text task's held-out corpus
  ships with every Python). Reproducible, so it measures models, but a miner can memorise it.
- ``generated``: the task's `generate_challenge`, made afresh from the seed (recombined text, new
  synthetic series). The default for validators.
- ``private``: drawn from a file only the validator holds (``--challenge-data PATH``).

Validators derive each seed from their own secret mixed with the current block hash, so a miner
can predict neither the seed nor, with `generated` or `private`, the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.base import Request, Task, Truth
from models.errors import ChallengeDataError

__all__ = ["MAX_CHALLENGE_DATA_BYTES", "ChallengeSource", "challenge_source"]

MAX_CHALLENGE_DATA_BYTES = 256 * 1024 * 1024
SOURCES = ("public", "generated", "private")


class ChallengeSource:
    """Challenges of one kind for one task: `make(seed) -> (request, truth)`."""

    def __init__(self, task: Task, kind: str, data: Any = None) -> None:
        if kind not in SOURCES:
            raise ChallengeDataError(f"unknown challenge source {kind!r}; expected one of {', '.join(SOURCES)}")
        self.task = task
        self.kind = kind
        self._data = data

    def make(self, seed: int) -> tuple[Request, Truth]:
        if self.kind == "private":
            return self.task.challenge_from_data(self._data, seed)
        if self.kind == "generated":
            return self.task.generate_challenge(seed)
        return self.task.make_challenge(seed)


def challenge_source(task: Task, data_path: Path | str | None = None, kind: str | None = None) -> ChallengeSource:
    """Private challenges from `data_path` when given, else `kind` (default: generated).

    Raises `ChallengeDataError` with a one-line reason when the file cannot be used.
    """
    if data_path is None:
        return ChallengeSource(task, kind or "generated")
    path = Path(data_path)
    try:
        if not path.is_file():
            raise ChallengeDataError(f"challenge data {path}: not a regular file")
        if path.stat().st_size > MAX_CHALLENGE_DATA_BYTES:
            raise ChallengeDataError(f"challenge data {path}: larger than {MAX_CHALLENGE_DATA_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChallengeDataError(f"challenge data {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ChallengeDataError(f"challenge data {path}: not UTF-8 text") from None
    return ChallengeSource(task, "private", task.load_challenge_data(text))
