"""The passkey prompt, as text and tokens, and the training mixer that packs passkey examples into batches.

Prompt = five lines joined by "\\n": the instruction, a filler prefix, the needle, a filler suffix, the question.
The filler is a character slice of ``FILLER`` repeated; its total length ``n`` grows in steps of 16 characters,
the prefix takes a uniform share of it (the needle depth) and the suffix restarts at the string's start.
Evaluation (``fope.evaluate.passkey``) asks these prompts; training (``data.passkey_fraction``) learns from them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fope.checks import check_int

__all__ = [
    "FILLER",
    "FILLER_STEP",
    "INSTRUCTION",
    "KEY_RANGE",
    "QUESTION",
    "PasskeyPrompt",
    "build_passkey_prompt",
    "draw_key",
    "example_prompt_tokens",
    "filler",
    "fit_filler",
    "needle",
    "passkey_mixer",
    "passkey_text",
    "passkey_training_example",
]

# Compact by design (docs/retrieval.md): without filler the prompt is ~55 tokens with the tiny lab's tokenizer, so at
# its training length of 128 more than half of an in-length prompt is filler. The original (Landmark Attention) prompt
# took 109 tokens there and left no distance to retrieve across.
INSTRUCTION = "Remember the pass key."
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
KEY_RANGE = (10000, 99999)
FILLER_STEP = 16


def draw_key(rng: np.random.Generator) -> int:
    """A five-digit key of distinct digits (the first not 0): each digit of the answer has one place in the needle."""
    first = int(rng.integers(1, 10))
    rest = rng.permutation([digit for digit in range(10) if digit != first])[:4]
    return int("".join(str(digit) for digit in [first, *rest.tolist()]))


def check_key(key: object) -> int:
    """A key the scorer can match (its first run of digits): an int >= 0. ``draw_key``'s keys are five distinct
    digits; a key given by hand need not be."""
    if isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0:
        raise ValueError(f"key must be an int >= 0 (the answer is read as digits); got {key!r}")
    return int(key)


def needle(key: int) -> str:
    """The line that hides the key."""
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def filler(num_chars: int) -> str:
    """The first ``num_chars`` characters of ``FILLER`` repeated."""
    repeats = num_chars // len(FILLER) + 1
    return (FILLER * repeats)[:num_chars]


@dataclass(frozen=True)
class PasskeyPrompt:
    """One trial: the prompt text and its token ids, the key, the needle depth (prefix / filler) and filler size."""

    text: str
    token_ids: list[int]
    key: int
    depth: float
    filler_chars: int

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def passkey_text(key: int, filler_chars: int, depth: float) -> str:
    """The five-line prompt: ``filler_chars`` of filler, ``round(depth * filler_chars)`` of them before the needle."""
    prefix_chars = round(depth * filler_chars)
    return "\n".join([INSTRUCTION, filler(prefix_chars), needle(key), filler(filler_chars - prefix_chars), QUESTION])


def fit_filler(
    encode: Callable[[str], list[int]],
    text: Callable[[int], str],
    target_tokens: int,
    name: str,
    step: int = FILLER_STEP,
) -> tuple[int, list[int]]:
    """The most filler characters (a multiple of ``step``) for which ``encode(text(chars))`` takes at most
    ``target_tokens`` tokens, and those tokens; ``ValueError`` when even ``text(0)`` is longer.

    The token count grows with the filler, so the last step that fits is found by doubling, then bisecting.
    """

    def tokens(steps: int) -> list[int]:
        return encode(text(steps * step))

    shortest = tokens(0)
    if len(shortest) > target_tokens:
        raise ValueError(
            f"target_tokens={target_tokens} is shorter than the {name} prompt without filler ({len(shortest)} tokens)"
        )
    low, high = 0, 1
    while len(tokens(high)) <= target_tokens:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(tokens(middle)) <= target_tokens:
            low = middle
        else:
            high = middle
    return low * step, tokens(low)


def build_passkey_prompt(
    encode: Callable[[str], list[int]],
    target_tokens: int,
    rng: np.random.Generator,
    *,
    key: int | None = None,
    depth: float | None = None,
) -> PasskeyPrompt:
    """The longest prompt (filler grown in steps of 16 characters) whose token count is at most ``target_tokens``.

    ``key`` defaults to ``draw_key(rng)`` and ``depth`` to a uniform draw from [0, 1], both from ``rng``.
    Raises ``ValueError`` when even the prompt without filler is longer than ``target_tokens``.
    """
    target_tokens = check_int("target_tokens", target_tokens, minimum=1)
    if (key is None or depth is None) and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (numpy.random.default_rng); got {type(rng).__name__}")
    key = check_key(draw_key(rng) if key is None else key)
    depth = float(rng.uniform(0.0, 1.0)) if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, numbers.Real) or not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1] (a number); got {depth!r}")
    depth = float(depth)

    chars, ids = fit_filler(encode, lambda chars: passkey_text(key, chars, depth), target_tokens, "passkey")
    return PasskeyPrompt(passkey_text(key, chars, depth), ids, key, depth, chars)


def example_prompt_tokens(
    rng: np.random.Generator, max_tokens: int, min_tokens: int | None, *, shortest: int, answer: int, name: str
) -> int:
    """The prompt length of a training example: uniform between ``min_tokens`` (default ``max_tokens // 4``, at least
    ``shortest``, the prompt without filler) and the longest that leaves room for the ``answer`` tokens."""
    budget = max_tokens - answer
    if shortest > budget:
        raise ValueError(
            f"max_tokens={max_tokens} cannot hold a {name} example: the prompt without filler and its answer take "
            f"{shortest + answer} tokens with this tokenizer"
        )
    floor = min(max(min_tokens if min_tokens is not None else max_tokens // 4, shortest), budget)
    return int(rng.integers(floor, budget + 1))


def passkey_training_example(
    encode: Callable[[str], list[int]],
    max_tokens: int,
    rng: np.random.Generator,
    *,
    min_tokens: int | None = None,
) -> list[int]:
    """A passkey prompt followed by its answer (`` {key}.``), at most ``max_tokens`` tokens, for mixing into training.

    The prompt length is drawn uniformly between ``min_tokens`` (default ``max_tokens // 4``) and the longest that
    still leaves room for the answer, so the model sees the needle at every depth and distance up to ``max_tokens``.
    """
    key = draw_key(rng)
    depth = float(rng.uniform(0.0, 1.0))
    answer = encode(f" {key}.")  # what greedy decoding must produce after the prompt's final "is"
    shortest = len(encode(passkey_text(key, 0, depth)))
    target = example_prompt_tokens(rng, max_tokens, min_tokens, shortest=shortest, answer=len(answer), name="passkey")
    prompt = build_passkey_prompt(encode, target, rng, key=key, depth=depth)
    return prompt.token_ids + answer


def passkey_mixer(
    encode: Callable[[str], list[int]], eos_id: int, min_tokens: int | None = None
) -> Callable[[np.random.Generator, int, int], torch.Tensor]:
    """A ``WindowSampler`` mixer: each row ends with the end-of-document token and one passkey example.

    The example is packed after the row's own corpus text (entries -1 keep it), the way every document follows the
    previous one in the training stream; evaluation prompts likewise open with the end-of-document token.
    """

    def mix(rng: np.random.Generator, count: int, seq_len: int) -> torch.Tensor:
        rows = torch.full((count, seq_len + 1), -1, dtype=torch.int64)
        for row in range(count):
            example = [eos_id, *passkey_training_example(encode, seq_len, rng, min_tokens=min_tokens)]
            rows[row, seq_len + 1 - len(example) :] = torch.tensor(example, dtype=torch.int64)
        return rows

    return mix
