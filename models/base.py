"""The model plug-in interface: what a task is, what a model is, and how a batch is answered.

A **task** (one per subnet) owns the request/response schemas, makes challenges from a seed, and
scores responses. A **model** wraps a torch ``nn.Module`` bound to one task and answers many requests
with ONE forward pass::

    requests ──validate──▶ encode_batch ──▶ forward (one pass) ──▶ decode_batch ──validate──▶ responses

A model host writes a **factory** ``factory(task, device, **options) -> Model`` and registers it (see
`models.registry` and docs/model-hosts.md). Requests and responses are plain JSON-like dicts (str,
int, float, list, dict), so the node can carry them in its wire format without knowing the task.

Importing this module does not import torch: a validator that only scores (`models.tasks`) never
pays for it. torch is imported when a device is resolved or a batch is answered.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from models.errors import (
    ChallengeDataError,
    DeviceUnavailable,
    IncompatibleTask,
    InvalidRequest,
    InvalidResponse,
    ModelError,
)
from models.schema import Schema, SchemaViolation, validate

if TYPE_CHECKING:
    import torch
    from torch import nn

# A request or a response: a JSON-like dict whose shape the task's schema fixes.
Request = dict[str, Any]
Response = dict[str, Any]
# What a challenge keeps private until scoring (the held-out character, the future values ...).
Truth = Any
# What flows between encode_batch, forward and decode_batch: named tensors, first axis = batch.
Tensors = dict[str, "torch.Tensor"]
# `factory(task, device, **options) -> Model`. Options are strings (they come from the command line
# or a config file); a factory that takes none may be written as `factory(task, device)`.
ModelFactory = Callable[..., "Model"]
TaskT = TypeVar("TaskT", bound="Task")


class Task(ABC):
    """One kind of work a subnet buys: schemas, challenges and scoring.

    Subclasses set `name`, build `request_schema` / `response_schema`, and implement
    `make_challenge` and `score_valid`; `check_request` / `check_response` add the rules a schema
    cannot state (a character outside the vocabulary, a forecast of the wrong length ...).
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def request_schema(self) -> Schema:
        """The JSON-Schema subset (see `models.schema`) every request must match."""

    @property
    @abstractmethod
    def response_schema(self) -> Schema:
        """The JSON-Schema subset every response must match."""

    def check_request(self, request: Request) -> None:
        """Rules beyond the schema; raise `InvalidRequest`. The request already matches the schema."""
        return None  # a hook: the schema alone is enough for some tasks

    def check_response(self, request: Request, response: Response) -> None:
        """Rules beyond the schema; raise `InvalidResponse`. The response already matches the schema."""
        return None  # a hook: the schema alone is enough for some tasks

    def validate_request(self, request: object) -> Request:
        """Return ``request`` typed as a `Request`, or raise `InvalidRequest` saying why not."""
        try:
            validate(request, self.request_schema)
        except SchemaViolation as exc:
            raise InvalidRequest(str(exc)) from None
        checked: Request = request  # type: ignore[assignment]  # the schema guarantees a str-keyed dict
        self.check_request(checked)
        return checked

    def validate_response(self, request: Request, response: object) -> Response:
        """Return ``response`` typed as a `Response`, or raise `InvalidResponse` saying why not."""
        try:
            validate(response, self.response_schema)
        except SchemaViolation as exc:
            raise InvalidResponse(str(exc)) from None
        checked: Response = response  # type: ignore[assignment]
        self.check_response(request, checked)
        return checked

    @abstractmethod
    def make_challenge(self, seed: int) -> tuple[Request, Truth]:
        """A valid request and the private truth to score it with; the same seed gives the same pair."""

    generates: ClassVar[bool] = False  # answers generation requests (see `is_generation`)

    def is_generation(self, request: Request) -> bool:
        """Whether `request` asks to generate (answered by sampling the model step by step)."""
        return False

    def generation_step(self, request: Request, generated: str) -> Request:
        """The model request for the next token of a generation, given what was generated so far."""
        raise NotImplementedError(f"the {self.name!r} task does not generate")

    def next_token(self, request: Request, step_response: Response, position: int) -> str:
        """The token a generation draws at `position` from the model's answer to its step request."""
        raise NotImplementedError(f"the {self.name!r} task does not generate")

    def token_consistent(self, request: Request, step_response: Response, position: int, token: str) -> bool:
        """Whether `token` is what a generation draws at `position` from `step_response` (up to the
        rounding of reported numbers): how a validator checks a miner's generation."""
        raise NotImplementedError(f"the {self.name!r} task does not generate")

    def generate_challenge(self, seed: int) -> tuple[Request, Truth]:
        """A challenge generated afresh from `seed` rather than cut from public data, so a miner
        cannot have stored its answer. Tasks whose `make_challenge` is generated already keep it."""
        return self.make_challenge(seed)

    def load_challenge_data(self, text: str) -> Any:
        """Parse a validator's private challenge data (a file's text); raises `ChallengeDataError`."""
        raise ChallengeDataError(f"the {self.name!r} task takes no challenge data")

    def challenge_from_data(self, data: Any, seed: int) -> tuple[Request, Truth]:
        """A challenge drawn (by `seed`) from data that `load_challenge_data` returned."""
        raise ChallengeDataError(f"the {self.name!r} task takes no challenge data")

    @abstractmethod
    def score_valid(self, request: Request, response: Response, truth: Truth) -> float:
        """Score a response that already passed `validate_response`; higher is better."""

    def baseline_response(self, request: Request) -> Response | None:
        """The trivial answer anyone can give without a model; a miner is paid only for beating it.

        None: the task has no baseline (its scores are then paid as they are).
        """
        return None

    def baseline_score(self, request: Request, truth: Truth) -> float:
        """The score of `baseline_response` on this challenge (0.0 when there is no baseline)."""
        response = self.baseline_response(request)
        return 0.0 if response is None else self.score(request, response, truth)

    def score(self, request: Request, response: object, truth: Truth) -> float:
        """Score any response in [0, 1]: an invalid or garbage response scores 0.0, it never raises.

        The response comes from a remote miner, so anything can arrive here; the request and truth
        are the validator's own (from `make_challenge`).
        """
        try:
            checked = self.validate_response(request, response)
        except InvalidResponse:
            return 0.0
        value = self.score_valid(request, checked, truth)
        if not math.isfinite(value):
            return 0.0
        return min(1.0, max(0.0, value))


class Model(ABC):
    """A torch module bound to a task and a device, answering a batch with one forward pass.

    Subclasses implement the three steps; `answer_batch` strings them together and checks both
    ends. ``max_batch_size`` is a hint to the miner server, which bounds the batches it forms (this
    class never splits a batch: one call is one forward pass).
    """

    max_batch_size: int = 64

    def __init__(self, name: str, task: Task, module: nn.Module, device: torch.device) -> None:
        self.name = name
        self.task = task
        self.device = device
        self.module = module.to(device).eval()

    @abstractmethod
    def encode_batch(self, requests: Sequence[Request]) -> Tensors:
        """Turn validated requests into input tensors on `device`, first axis = request index."""

    @abstractmethod
    def forward(self, batch: Tensors) -> Tensors:
        """Run the module once over the whole batch; carry along whatever `decode_batch` needs."""

    @abstractmethod
    def decode_batch(self, outputs: Tensors) -> list[Response]:
        """Turn output tensors (moved to the CPU) into one response per request, in order."""

    def answer_batch(self, requests: Sequence[object]) -> list[Response]:
        """Answer every request with one forward pass.

        Raises:
            InvalidRequest: a request does not match the task (``.index`` says which). A server
                that batches callers together validates each request on arrival with
                `Task.validate_request`, so one bad caller cannot fail the others.
            ModelError: the model produced a response its own task rejects (a bug in the model).
        """
        checked: list[Request] = []
        for index, request in enumerate(requests):
            try:
                checked.append(self.task.validate_request(request))
            except InvalidRequest as exc:
                raise InvalidRequest(exc.reason, index=index) from None
        if not checked:
            return []
        import torch

        with torch.inference_mode():
            outputs = self.forward(self.encode_batch(checked))
        responses = self.decode_batch({key: value.cpu() for key, value in outputs.items()})
        if len(responses) != len(checked):
            raise ModelError(
                f"model {self.name!r} returned {len(responses)} responses for {len(checked)} requests"
            )
        for request, response in zip(checked, responses, strict=True):
            try:
                self.task.validate_response(request, response)
            except InvalidResponse as exc:
                raise ModelError(f"model {self.name!r} produced an invalid response: {exc.reason}") from None
        return responses

    def answer(self, request: object) -> Response:
        """Answer one request (a batch of one)."""
        return self.answer_batch([request])[0]


def require_task(task: Task, expected: type[TaskT], model_name: str) -> TaskT:
    """Return ``task`` typed as ``expected``, or raise `IncompatibleTask` (a factory's first check)."""
    if not isinstance(task, expected):
        raise IncompatibleTask(
            f"model {model_name!r} serves the {expected.name!r} task, not {getattr(task, 'name', task)!r}"
        )
    return task


def resolve_device(device: str = "cpu") -> torch.device:
    """The torch device for ``device``: "cpu" (the default), "cuda", "cuda:N", or "auto".

    "auto" picks CUDA when torch sees a GPU and the CPU otherwise. Asking for CUDA explicitly when
    it is absent raises `DeviceUnavailable` rather than silently running on the CPU.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            )
            raise DeviceUnavailable(
                f"device {device!r} was asked for but CUDA is not available "
                f"(torch {torch.__version__} is {build}); use device='cpu'"
            )
        index_text = device.partition(":")[2]
        if index_text:
            if not index_text.isdigit():
                raise DeviceUnavailable(f"device {device!r}: expected 'cuda:N' with N a GPU index")
            count = torch.cuda.device_count()
            if int(index_text) >= count:
                raise DeviceUnavailable(f"device {device!r}: only {count} CUDA device(s) are present")
        return torch.device(device)
    raise DeviceUnavailable(f"unknown device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
