#!/usr/bin/env python3
"""Train the `text-transformer` model on the standard-library docstring corpus and save a checkpoint.

    python scripts/train_text.py /var/lib/p2pnode/models/text-transformer.pt
    P2PNODE_MODEL_DIR=/var/lib/p2pnode/models p2pnode join ... --model text-transformer

The defaults (`FULL_CONFIG`, `FULL_TRAIN` in models/text_models.py) train in under two minutes on
a CPU: the training loop is capped at ``--max-seconds`` (100 by default). When the cap does not
bind, the same Python build and arguments give the same weights (fixed seed); when it binds (a slow
or busy machine) the learning-rate schedule is compressed to fit, and the script says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from models.checkpoints import save_checkpoint
from models.gpt import mean_nats, train_char_gpt
from models.tasks.corpus import load_corpus
from models.text_models import (
    FULL_CONFIG,
    FULL_TRAIN,
    TRANSFORMER_FORMAT,
    encode_text,
    transformer_checkpoint,
)
from models.training import add_training_arguments, torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="checkpoint file to write (e.g. <model dir>/text-transformer.pt)")
    parser.add_argument("--steps", type=int, default=FULL_TRAIN.steps)
    parser.add_argument("--batch-size", type=int, default=FULL_TRAIN.batch_size)
    parser.add_argument("--learning-rate", type=float, default=FULL_TRAIN.learning_rate)
    parser.add_argument("--seed", type=int, default=FULL_TRAIN.seed)
    add_training_arguments(parser)
    args = parser.parse_args(argv)

    train = replace(
        FULL_TRAIN,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_seconds=args.max_seconds or None,
    )
    started = time.perf_counter()
    corpus = load_corpus()
    tokens, heldout = encode_text(corpus.train), encode_text(corpus.heldout)
    print(
        f"corpus: {len(corpus.train)} training + {len(corpus.heldout)} held-out characters from "
        f"{len(corpus.modules)} modules (Python {corpus.python_version}, fingerprint {corpus.fingerprint[:16]}) "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    def progress(step: int, loss: float) -> None:
        if step % 250 == 0:
            print(
                f"step {step:5d}  loss {loss:.3f}  {time.perf_counter() - training_started:6.1f} s",
                flush=True,
            )

    training_started = time.perf_counter()
    with torch_threads(args.threads):
        model, schedule = train_char_gpt(FULL_CONFIG, tokens, train, progress)
    training_seconds = time.perf_counter() - training_started
    heldout_nats = mean_nats(model, heldout)
    payload = transformer_checkpoint(model, train, schedule.steps_done, heldout_nats)
    save_checkpoint(args.out, TRANSFORMER_FORMAT, payload)
    cut = f" (cut short by the {args.max_seconds:.0f} s cap)" if schedule.cut_short else ""
    print(
        f"trained {FULL_CONFIG} for {schedule.steps_done} steps{cut} in {training_seconds:.1f} s "
        f"(total {time.perf_counter() - started:.1f} s); held-out loss {heldout_nats:.3f} nats/char; "
        f"saved {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
