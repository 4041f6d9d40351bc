"""The `text` task: predict the next character of standard-library docstrings.

Request::

    {"context": "Return the number of items in the "}      # 1..1024 characters of VOCAB

Response: log-probabilities (natural log) of candidate next characters, best first or in any
order, at most one entry per character::

    {"logprobs": [["s", -0.41], ["c", -2.3], [" ", -3.0], ...]}   # 1..96 pairs, each logprob <= 0

Characters a response leaves out share the remaining probability mass ``1 - sum(exp(logprob))``
equally, so a short top-k list and the full 96-entry distribution are both valid answers; the full
one scores best when the model is calibrated. The listed probabilities may not sum to more than 1
(a small rounding slack is allowed and renormalised away).

Challenge: a seeded position in the held-out part of the corpus (see `models.tasks.corpus`); the
request is the 64..128 characters before it, the truth is the character at it.

Score: the log-likelihood the response gives the true character, made finite and mapped to [0, 1].
The validator first mixes the response with a little uniform mass,
``q' = (1 - epsilon) * q + epsilon / 96`` with epsilon = 0.01, so no answer costs more than
``log(epsilon / 96)`` (about -9.17 nats); the score is then
``1 - log q'(truth) / log(epsilon / 96)``: 0.999 for certainty on the right character, 0.0 for
certainty on a wrong one, and 0.502 for the uniform distribution. This is an affine map of the log
score of q', so it stays a proper scoring rule: a miner maximises its expected score by reporting
its true beliefs, not by being overconfident. A response that fails validation scores 0.0.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from models.base import Request, Response, Task
from models.errors import ChallengeDataError, InvalidRequest, InvalidResponse
from models.schema import Schema
from models.tasks.corpus import VOCAB, load_corpus, normalize

# A response's probabilities may add up to a bit more than 1 after rounding (4 decimals of nats
# is a relative error of 1e-4 per entry); anything beyond this slack is an invalid distribution.
PROBABILITY_SLACK = 1e-3
# Log-probabilities below this are treated as this (exp underflows long before; keeps numbers sane).
MIN_LOGPROB = -1000.0
# The most characters one generation request may ask for (longer texts take several requests).
MAX_GENERATE_TOKENS = 64
MAX_SEED = 2**53  # integers JSON carries exactly
# How far outside a token's CDF interval a draw may fall and still count as consistent.
CONSISTENCY_SLACK = 1e-3


def is_generation(request: Request) -> bool:
    """A request to generate text ("max_tokens" present) rather than for a distribution."""
    return "max_tokens" in request


def sampling_uniform(seed: int, position: int) -> float:
    """The uniform draw in [0, 1) for the `position`-th character generated with `seed`."""
    digest = hashlib.sha256(b"p2pnode.text.sample/%d/%d" % (seed, position)).digest()
    return int.from_bytes(digest[:7], "big") / 2**56


@dataclass(frozen=True)
class TextTaskConfig:
    max_context_chars: int = 1024  # longest request a miner must accept
    challenge_min_chars: int = 64  # challenge contexts are drawn between these lengths
    challenge_max_chars: int = 128
    epsilon: float = 0.01  # uniform mass mixed into every response before scoring


class TextTask(Task):
    """Next-character prediction over `VOCAB` on the held-out standard-library docstrings."""

    name = "text"
    generates = True
    vocab = VOCAB

    def __init__(self, config: TextTaskConfig | None = None) -> None:
        self.config = config or TextTaskConfig()
        self._index = {ch: i for i, ch in enumerate(VOCAB)}

    @functools.cached_property
    def request_schema(self) -> Schema:  # built once: validation runs per request
        return {
            "type": "object",
            "properties": {
                "context": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": self.config.max_context_chars,
                    "description": "the text so far; newline and printable ASCII only",
                },
                # Present: a generation request (answered with "text"), else a distribution.
                "max_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_GENERATE_TOKENS,
                    "description": "generate this many characters by sampling the model",
                },
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "0: greedy"},
                "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "description": "sampling seed"},
            },
            "required": ["context"],
        }

    @functools.cached_property
    def response_schema(self) -> Schema:
        pair: dict[str, Any] = {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "prefixItems": [
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1,
                    "description": "a character of the vocabulary",
                },
                {"type": "number", "maximum": 0, "description": "its natural-log probability"},
            ],
            "items": False,
        }
        return {
            "type": "object",
            "properties": {
                "logprobs": {"type": "array", "minItems": 1, "maxItems": len(VOCAB), "items": pair},
                "text": {"type": "string", "maxLength": MAX_GENERATE_TOKENS, "description": "generated text"},
            },
        }

    def check_request(self, request: Request) -> None:
        if ("temperature" in request or "seed" in request) and "max_tokens" not in request:
            raise InvalidRequest("$: temperature and seed go with max_tokens (a generation request)")
        index = self._index
        for position, ch in enumerate(request["context"]):
            if ch not in index:
                raise InvalidRequest(
                    f"$.context[{position}]: character {ch!r} is outside the vocabulary (newline and printable ASCII)"
                )

    def check_response(self, request: Request, response: Response) -> None:
        if is_generation(request):
            if set(response) != {"text"}:
                raise InvalidResponse("$: a generation request is answered with exactly {\"text\": ...}")
            text = response["text"]
            if len(text) > request["max_tokens"]:
                raise InvalidResponse(f"$.text: {len(text)} characters, more than max_tokens {request['max_tokens']}")
            for position, ch in enumerate(text):
                if ch not in self._index:
                    raise InvalidResponse(f"$.text[{position}]: {ch!r} is outside the vocabulary")
            return
        if set(response) != {"logprobs"}:
            raise InvalidResponse("$: a distribution request is answered with exactly {\"logprobs\": ...}")
        seen: set[str] = set()
        total = 0.0
        for position, (ch, logprob) in enumerate(response["logprobs"]):
            if ch not in self._index:
                raise InvalidResponse(f"$.logprobs[{position}][0]: {ch!r} is not in the vocabulary")
            if ch in seen:
                raise InvalidResponse(f"$.logprobs[{position}][0]: {ch!r} is listed twice")
            seen.add(ch)
            total += math.exp(max(logprob, MIN_LOGPROB))
        if total > 1.0 + PROBABILITY_SLACK:
            raise InvalidResponse(f"$.logprobs: probabilities sum to {total:.6f}, more than 1")

    def make_challenge(self, seed: int) -> tuple[Request, str]:
        """A held-out context and its next character; the same seed gives the same pair.

        Depends on the corpus, hence on the Python build (see `models.tasks.corpus`).
        """
        heldout = load_corpus().heldout
        # A string seed is hashed with sha512 by `random`: stable across platforms and versions,
        # and the prefix keeps this task's draws apart from other users of the same seed.
        rng = random.Random(f"p2pnode.text/{seed}")
        length = rng.randint(self.config.challenge_min_chars, self.config.challenge_max_chars)
        position = rng.randrange(length, len(heldout))
        return {"context": heldout[position - length : position]}, heldout[position]

    def baseline_response(self, request: Request) -> Response:
        """Every character equally likely: what a miner knows without having learnt anything."""
        return {"logprobs": [[ch, -math.log(len(VOCAB))] for ch in VOCAB]}

    def generate_challenge(self, seed: int) -> tuple[Request, str]:
        """A context of fresh text and its next character: the training corpus's words recombined by
        a word-level chain from `seed`. The words are real (a model of the language predicts them);
        the text as a whole appears nowhere, so a miner that stored the corpus has nothing to look up.
        """
        rng = random.Random(f"p2pnode.text.generated/{seed}")
        words, successors = _word_chain()
        length = rng.randint(self.config.challenge_min_chars, self.config.challenge_max_chars)
        word = rng.choice(words)
        text = [word]
        size = len(word)
        while size <= length:
            following = successors.get(word)
            word = rng.choice(following) if following else rng.choice(words)
            text.append(word)
            size += 1 + len(word)
        generated = " ".join(text)
        end = rng.randint(length, len(generated) - 1)
        return {"context": generated[end - length : end]}, generated[end]

    def load_challenge_data(self, text: str) -> str:
        """Private challenge text: mapped onto the vocabulary, long enough for one challenge."""
        data = normalize(text)
        if len(data) <= self.config.challenge_max_chars:
            raise ChallengeDataError(
                f"challenge text has {len(data)} characters; the text task needs more than "
                f"{self.config.challenge_max_chars}"
            )
        return data

    def challenge_from_data(self, data: str, seed: int) -> tuple[Request, str]:
        """A context cut from the validator's private text (by `seed`) and its next character."""
        rng = random.Random(f"p2pnode.text.private/{seed}")
        length = rng.randint(self.config.challenge_min_chars, self.config.challenge_max_chars)
        position = rng.randrange(length, len(data))
        return {"context": data[position - length : position]}, data[position]

    def is_generation(self, request: Request) -> bool:
        return is_generation(request)

    def generation_step(self, request: Request, generated: str) -> Request:
        return {"context": (request["context"] + generated)[-self.config.max_context_chars :]}

    def next_token(self, request: Request, step_response: Response, position: int) -> str:
        temperature = float(request.get("temperature", 1.0))
        return self.sample(step_response, sampling_uniform(int(request.get("seed", 0)), position), temperature)

    def token_consistent(self, request: Request, step_response: Response, position: int, token: str) -> bool:
        if token not in self._index:
            return False
        uniform = sampling_uniform(int(request.get("seed", 0)), position)
        temperature = float(request.get("temperature", 1.0))
        if temperature <= 0:
            return self.sample(step_response, uniform, 0.0) == token
        # The token's interval of the CDF must hold the draw, give or take rounding: a miner's
        # distributions may differ in the last digits between a batched and a lone forward pass.
        weights = [p ** (1.0 / temperature) if p > 0 else 0.0 for p in (self.probability(step_response, ch) for ch in VOCAB)]
        total = sum(weights)
        if not total > 0:
            return False
        index = self._index[token]
        low = sum(weights[:index]) / total
        high = low + weights[index] / total
        return low - CONSISTENCY_SLACK <= uniform < high + CONSISTENCY_SLACK

    def sample(self, response: Response, uniform: float, temperature: float) -> str:
        """The character a generator draws from a distribution `response` with the uniform draw
        `uniform` in [0, 1): inverse CDF over the vocabulary's order of p ** (1 / temperature),
        normalised (unlisted characters share the rest); temperature 0 takes the most likely.
        Deterministic, so anyone holding the distribution and the draw can check a generation."""
        probabilities = [self.probability(response, ch) for ch in VOCAB]
        if temperature <= 0:
            return VOCAB[max(range(len(VOCAB)), key=lambda i: (probabilities[i], -i))]
        weights = [p ** (1.0 / temperature) if p > 0 else 0.0 for p in probabilities]
        total = sum(weights)
        if not total > 0 or not math.isfinite(total):
            return VOCAB[max(range(len(VOCAB)), key=lambda i: (probabilities[i], -i))]
        target, cumulative = uniform * total, 0.0
        for ch, weight in zip(VOCAB, weights, strict=True):
            cumulative += weight
            if target < cumulative:
                return ch
        return VOCAB[-1]

    def probability(self, response: Response, char: str) -> float:
        """The probability a valid response gives ``char`` (unlisted characters share the rest)."""
        listed = {ch: math.exp(max(logprob, MIN_LOGPROB)) for ch, logprob in response["logprobs"]}
        total = sum(listed.values())
        if total > 1.0:  # rounding slack: renormalise rather than reward an overfull distribution
            listed = {ch: p / total for ch, p in listed.items()}
            total = 1.0
        if char in listed:
            return listed[char]
        unlisted = len(VOCAB) - len(listed)
        return (1.0 - total) / unlisted if unlisted else 0.0

    def score_valid(self, request: Request, response: Response, truth: str) -> float:
        epsilon = self.config.epsilon
        floor = math.log(epsilon / len(VOCAB))  # the worst possible log q'(truth)
        mixed = (1.0 - epsilon) * self.probability(response, truth) + epsilon / len(VOCAB)
        return 1.0 - math.log(mixed) / floor


@functools.cache
def _word_chain() -> tuple[list[str], dict[str, list[str]]]:
    """The training corpus's words, and for each word the words that follow it (with repeats)."""
    words = load_corpus().train.split()
    successors: dict[str, list[str]] = {}
    for word, following in zip(words, words[1:], strict=False):
        successors.setdefault(word, []).append(following)
    return words, successors

