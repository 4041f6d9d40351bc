"""Built-in models of the `text` task, from worst to best.

    text-uniform       every character equally likely (the floor: scores about 0.50)
    text-unigram       character frequencies of the training corpus
    text-bigram        next-character frequencies given the last character
    text-transformer   a tiny character-level GPT (`models.gpt`) reading up to `block_size` characters

All four share `TextModel`: the context is cut to the model's window, tokenised, right-padded into
one (B, T) tensor, run through the module once, and the log-softmax at each request's last real
position becomes its response (all 96 characters, best first, logprobs rounded to 4 decimals).

Weights of `text-transformer`: see `models.checkpoints` for where a checkpoint is looked for
(``scripts/train_text.py`` writes one, about two minutes on a CPU). Without one the factory trains
`QUICK_CONFIG` for `QUICK_TRAIN.steps` steps at start (fixed seed, once per process) and logs a
warning. Measured on the shared 2-core development machine: 6-8 s when it was quiet, 46 s (14 s of
CPU) at a load average of 7-10; a 60 s cap stops it on a machine slower still, and then says so,
because the weights are no longer reproducible. The frequency models are counted from the corpus at start (well under a second
after the corpus is built).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.base import Model, Request, Response, Task, Tensors, require_task, resolve_device
from models.checkpoints import load_checkpoint, load_or_train_quick
from models.errors import CheckpointError
from models.gpt import CharGPT, GPTConfig, TrainConfig, train_char_gpt
from models.tasks.corpus import VOCAB, load_corpus
from models.tasks.text import TextTask
from models.training import TRAINING_THREADS, torch_threads

TRANSFORMER_FORMAT = "p2pnode.text-transformer/1"
# The quick start-up model: small enough to train in a few seconds on two CPU cores, and it
# still clearly beats the bigram baseline (it reads the last 16 characters).
QUICK_CONFIG = GPTConfig(vocab_size=len(VOCAB), block_size=16, n_layer=2, n_head=4, n_embd=64)
QUICK_TRAIN = TrainConfig(steps=600, batch_size=32, learning_rate=5e-3, seed=0, max_seconds=60.0)
# The model `scripts/train_text.py` trains by default. One step took 0.04-0.12 s on the shared
# 2-core machine depending on its load, so the script caps the training loop at 100 s (see
# `models.training.Schedule`) to stay under two minutes; on a busy machine it stops early.
FULL_CONFIG = GPTConfig(vocab_size=len(VOCAB), block_size=64, n_layer=2, n_head=4, n_embd=64)
FULL_TRAIN = TrainConfig(steps=2000, batch_size=32, learning_rate=4e-3, seed=0)
# Add-k smoothing of the frequency models: no character is ever given probability 0.
SMOOTHING = 0.5

# Byte value -> token id for the vocabulary's characters (others map to -1 and are never used:
# requests are validated and the corpus is normalised to VOCAB).
_BYTE_TO_TOKEN = torch.full((128,), -1, dtype=torch.long)
for _token, _char in enumerate(VOCAB):
    _BYTE_TO_TOKEN[ord(_char)] = _token


def encode_text(text: str) -> torch.Tensor:
    """Token ids (int64, 1-D) of text made of VOCAB characters."""
    raw = torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8)
    return _BYTE_TO_TOKEN[raw.long()]


class UniformNextChar(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.zeros(tokens.shape[0], self.vocab_size, device=tokens.device)  # (B, V)


class UnigramNextChar(nn.Module):
    logprobs: torch.Tensor

    def __init__(self, logprobs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logprobs", logprobs)  # (V,)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.logprobs.expand(tokens.shape[0], -1)  # (B, V)


class BigramNextChar(nn.Module):
    logprobs: torch.Tensor

    def __init__(self, logprobs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logprobs", logprobs)  # (V, V): row = previous char, column = next

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = tokens.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return self.logprobs[last]  # (B, V)


class GPTNextChar(nn.Module):
    def __init__(self, gpt: CharGPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.gpt(tokens)  # (B, T, V); causal, so right padding never reaches position length-1
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, logits.shape[-1])
        return logits.gather(1, index).squeeze(1)  # (B, V)


class TextModel(Model):
    """A next-character module (tokens, lengths) -> logits (B, V) served as a `text` model."""

    def __init__(
        self, name: str, task: Task, module: nn.Module, device: torch.device, context_window: int
    ) -> None:
        super().__init__(name, task, module, device)
        self.context_window = context_window

    def encode_batch(self, requests: Sequence[Request]) -> Tensors:
        contexts = [encode_text(request["context"][-self.context_window :]) for request in requests]
        lengths = torch.tensor([len(context) for context in contexts])
        tokens = torch.zeros(len(contexts), int(lengths.max()), dtype=torch.long)  # (B, T), right-padded
        for row, context in enumerate(contexts):
            tokens[row, : len(context)] = context
        return {"tokens": tokens.to(self.device), "lengths": lengths.to(self.device)}

    def forward(self, batch: Tensors) -> Tensors:
        logits = self.module(batch["tokens"], batch["lengths"]).float()
        return {"logprobs": torch.log_softmax(logits, dim=-1)}  # (B, V)

    def decode_batch(self, outputs: Tensors) -> list[Response]:
        values, order = outputs["logprobs"].sort(dim=-1, descending=True, stable=True)
        responses: list[Response] = []
        for row_values, row_order in zip(values.tolist(), order.tolist(), strict=True):
            pairs = [
                [VOCAB[token], min(0.0, round(value, 4))]
                for token, value in zip(row_order, row_values, strict=True)
            ]
            responses.append({"logprobs": pairs})
        return responses


@functools.lru_cache(maxsize=1)
def _frequency_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """(unigram (V,), bigram (V, V)) log-probabilities counted on the training corpus."""
    tokens = encode_text(load_corpus().train)
    size = len(VOCAB)
    unigram = torch.bincount(tokens, minlength=size).double() + SMOOTHING
    pairs = torch.bincount(tokens[:-1] * size + tokens[1:], minlength=size * size).view(size, size).double()
    bigram = pairs + SMOOTHING
    unigram_logprobs = (unigram / unigram.sum()).log().float()
    bigram_logprobs = (bigram / bigram.sum(dim=1, keepdim=True)).log().float()
    return unigram_logprobs, bigram_logprobs


def uniform_factory(task: Task, device: str = "cpu", **options: Any) -> TextModel:
    require_task(task, TextTask, "text-uniform")
    return TextModel(
        "text-uniform", task, UniformNextChar(len(VOCAB)), resolve_device(device), context_window=1
    )


def unigram_factory(task: Task, device: str = "cpu", **options: Any) -> TextModel:
    require_task(task, TextTask, "text-unigram")
    unigram, _ = _frequency_tables()
    return TextModel(
        "text-unigram", task, UnigramNextChar(unigram.clone()), resolve_device(device), context_window=1
    )


def bigram_factory(task: Task, device: str = "cpu", **options: Any) -> TextModel:
    require_task(task, TextTask, "text-bigram")
    _, bigram = _frequency_tables()
    return TextModel(
        "text-bigram", task, BigramNextChar(bigram.clone()), resolve_device(device), context_window=1
    )


@functools.lru_cache(maxsize=1)
def _quick_trained_state(corpus_fingerprint: str) -> dict[str, torch.Tensor]:
    # Keyed by the corpus so a different corpus can never reuse stale weights; cached so that a
    # process creating the model twice (tests, a restart of the miner service) trains once.
    with torch_threads(TRAINING_THREADS):
        model, schedule = train_char_gpt(QUICK_CONFIG, encode_text(load_corpus().train), QUICK_TRAIN)
    schedule.warn_if_cut_short("text-transformer")
    return model.state_dict()


def quick_transformer() -> CharGPT:
    """The start-up `CharGPT`: `QUICK_CONFIG` trained for `QUICK_TRAIN` (deterministic unless capped)."""
    model = CharGPT(QUICK_CONFIG)
    model.load_state_dict(_quick_trained_state(load_corpus().fingerprint))
    return model


def transformer_checkpoint(
    model: CharGPT, train: TrainConfig, steps_done: int, heldout_nats: float
) -> dict[str, Any]:
    """The payload `scripts/train_text.py` saves and `transformer_factory` loads."""
    return {
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "vocab": VOCAB,
        "corpus_fingerprint": load_corpus().fingerprint,
        "train": {
            "steps": train.steps,
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "seed": train.seed,
            "steps_done": steps_done,
        },
        "heldout_nats": heldout_nats,
    }


def load_transformer(path: str) -> CharGPT:
    """A `CharGPT` from a checkpoint saved with `transformer_checkpoint`."""
    data = load_checkpoint(path, TRANSFORMER_FORMAT)
    if data.get("vocab") != VOCAB:
        raise CheckpointError(f"checkpoint {path!r} was trained on another vocabulary")
    try:
        model = CharGPT(GPTConfig(**data["config"]))
        model.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path!r} does not fit the text transformer: {exc}") from exc
    return model


def transformer_factory(task: Task, device: str = "cpu", **options: Any) -> TextModel:
    """`text-transformer`: loads a checkpoint if one is found, else trains the quick version.

    Options: ``checkpoint`` (file path) or ``model_dir`` (directory holding text-transformer.pt);
    ``P2PNODE_MODEL_DIR`` is the default directory.
    """
    require_task(task, TextTask, "text-transformer")
    torch_device = resolve_device(device)
    gpt = load_or_train_quick("text-transformer", options, load_transformer, quick_transformer, "scripts/train_text.py")
    return TextModel(
        "text-transformer", task, GPTNextChar(gpt), torch_device, context_window=gpt.config.block_size
    )
