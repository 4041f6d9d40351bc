"""A tiny character-level GPT, in the style of nanoGPT: a config dataclass, shape comments, no tricks.

Used by the `text-transformer` model. Sequences are right-padded in a batch, and attention is
causal, so position ``t`` never sees padding placed after it: a batched answer equals the answer
for the same context alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.training import Schedule, cosine_rate


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 128  # longest context the model reads; longer ones are cut on the left
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(channels, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q = q.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2)
        k = k.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2)
        v = v.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, n_head, T, head_size)
        y = y.transpose(1, 2).contiguous().view(batch, time, channels)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CharGPT(nn.Module):
    """Token and position embeddings, `n_layer` pre-norm blocks, a tied output head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in nanoGPT
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections keeps early training stable.
        for name, parameter in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for the next token at every position: (B, T) int64 -> (B, T, vocab_size)."""
        _, time = tokens.shape
        if time > self.config.block_size:
            raise ValueError(f"sequence of {time} tokens exceeds block_size {self.config.block_size}")
        positions = torch.arange(time, device=tokens.device)  # (T,)
        x = self.wte(tokens) + self.wpe(positions)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    warmup_steps: int = 20
    weight_decay: float = 0.01
    max_seconds: float | None = None  # a time cap (see `models.training.Schedule`); None = deterministic


def _windows(tokens: torch.Tensor, starts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of the windows starting at ``starts``: two (B, length) tensors."""
    offsets = torch.arange(length + 1)
    chunk = tokens[starts.unsqueeze(1) + offsets]  # (B, length + 1)
    return chunk[:, :-1], chunk[:, 1:]


def train_char_gpt(
    config: GPTConfig,
    tokens: torch.Tensor,
    train: TrainConfig,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[CharGPT, Schedule]:
    """Train a fresh `CharGPT` on a 1-D int64 token tensor; return it and its finished `Schedule`.

    AdamW with a linear warmup and a cosine decay, gradient clipping at 1.0, random windows of
    `block_size` tokens. Without a time cap the same inputs give the same weights. The global torch
    RNG is left as it was (initialisation runs inside `fork_rng`), so training does not disturb the
    caller's randomness. ``progress(step, loss)`` is called every 50 steps.
    """
    if len(tokens) <= config.block_size + 1:
        raise ValueError(f"need more than {config.block_size + 1} tokens to train, got {len(tokens)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model = CharGPT(config)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train.learning_rate, betas=(0.9, 0.99), weight_decay=train.weight_decay
    )
    generator = torch.Generator().manual_seed(train.seed)
    schedule = Schedule(train.steps, train.max_seconds)
    step = 0
    while (fraction := schedule.fraction(step)) < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = cosine_rate(train.learning_rate, fraction, step, train.warmup_steps)
        starts = torch.randint(
            0, len(tokens) - config.block_size - 1, (train.batch_size,), generator=generator
        )
        inputs, targets = _windows(tokens, starts, config.block_size)
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, config.vocab_size), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if progress is not None and step % 50 == 0:
            progress(step, loss.item())
        step += 1
    return model.eval(), schedule


@torch.no_grad()
def mean_nats(model: CharGPT, tokens: torch.Tensor, max_windows: int = 256) -> float:
    """Mean next-token cross-entropy (nats) over consecutive `block_size` windows of ``tokens``."""
    length = model.config.block_size
    starts = torch.arange(0, len(tokens) - length - 1, length)[:max_windows]
    inputs, targets = _windows(tokens, starts, length)
    logits = model.eval()(inputs)
    return F.cross_entropy(logits.view(-1, model.config.vocab_size), targets.reshape(-1)).item()
