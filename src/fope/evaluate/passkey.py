"""Passkey retrieval: the protocol behind the paper's figure (see docs/evaluation.md).

Prompt = five lines joined by "\\n": the instruction, a filler prefix, the needle, a filler suffix, the question.
The filler is a character slice of ``FILLER`` repeated; its total length ``n`` grows in steps of 128 characters,
the prefix takes a uniform share of it (the needle depth) and the suffix restarts at the string's start. The answer
is right when the first integer of the greedy continuation equals the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

INSTRUCTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
KEY_RANGE = (1, 50000)
FILLER_STEP = 128
_FIRST_INTEGER = re.compile(r"\d+")


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


def build_passkey_prompt(
    encode: Callable[[str], list[int]],
    target_tokens: int,
    rng: np.random.Generator,
    *,
    key: int | None = None,
    depth: float | None = None,
) -> PasskeyPrompt:
    """The longest prompt (filler grown in steps of 128 characters) whose token count is at most ``target_tokens``.

    ``key`` defaults to a uniform draw from [1, 50000] and ``depth`` to a uniform draw from [0, 1], both from ``rng``.
    Raises ``ValueError`` when even the prompt without filler is longer than ``target_tokens``.
    """
    if key is None:
        key = int(rng.integers(KEY_RANGE[0], KEY_RANGE[1] + 1))
    if depth is None:
        depth = float(rng.uniform(0.0, 1.0))
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1]; got {depth}")

    def tokens(steps: int) -> list[int]:
        return encode(passkey_text(key, steps * FILLER_STEP, depth))

    shortest = tokens(0)
    if len(shortest) > target_tokens:
        raise ValueError(
            f"target_tokens={target_tokens} is shorter than the passkey prompt without filler ({len(shortest)} tokens)"
        )
    # Token count grows with the filler; find the last step that fits by doubling then bisecting.
    low, high = 0, 1
    while len(tokens(high)) <= target_tokens:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(tokens(middle)) <= target_tokens:
            low = middle
        else:
            high = middle
    ids = tokens(low)
    return PasskeyPrompt(passkey_text(key, low * FILLER_STEP, depth), ids, key, depth, low * FILLER_STEP)


def first_integer(text: str) -> int | None:
    """The first run of digits in ``text`` as an int, or None when there is none."""
    match = _FIRST_INTEGER.search(text)
    return int(match.group()) if match else None


def score_answer(continuation: str, key: int) -> bool:
    """Right when the first integer of the continuation equals the key (a missing answer is wrong)."""
    return first_integer(continuation) == key


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
    key = int(rng.integers(KEY_RANGE[0], KEY_RANGE[1] + 1))
    depth = float(rng.uniform(0.0, 1.0))
    answer = encode(f" {key}.")  # what greedy decoding must produce after the prompt's final "is"
    budget = max_tokens - len(answer)
    shortest = len(encode(passkey_text(key, 0, depth)))
    if shortest > budget:
        raise ValueError(
            f"max_tokens={max_tokens} cannot hold a passkey example: the prompt without filler and its answer take "
            f"{shortest + len(answer)} tokens with this tokenizer"
        )
    floor = min(max(min_tokens if min_tokens is not None else max_tokens // 4, shortest), budget)
    target = int(rng.integers(floor, budget + 1))
    prompt = build_passkey_prompt(encode, target, rng, key=key, depth=depth)
    return prompt.token_ids + answer


def passkey_mixer(
    encode: Callable[[str], list[int]], min_tokens: int | None = None
) -> Callable[[np.random.Generator, int, int], torch.Tensor]:
    """A ``WindowSampler`` mixer: rows of ``seq_len + 1`` tokens holding one passkey example each, left-padded (-1)."""

    def mix(rng: np.random.Generator, count: int, seq_len: int) -> torch.Tensor:
        rows = torch.full((count, seq_len + 1), -1, dtype=torch.int64)
        for row in range(count):
            example = passkey_training_example(encode, seq_len + 1, rng, min_tokens=min_tokens)
            rows[row, seq_len + 1 - len(example) :] = torch.tensor(example, dtype=torch.int64)
        return rows

    return mix


@dataclass(frozen=True)
class PasskeyTrial:
    """The outcome of one trial."""

    target_tokens: int
    num_tokens: int
    key: int
    depth: float
    continuation: str
    answer: int | None
    correct: bool


def summarize_trials(trials: Sequence[PasskeyTrial], depth_bins: int = 5) -> dict:
    """Accuracy by target length and a depth x length grid (``depth_bins`` equal bins of [0, 1])."""
    lengths = sorted({t.target_tokens for t in trials})
    by_length = []
    grid = np.full((depth_bins, len(lengths)), np.nan)
    counts = np.zeros((depth_bins, len(lengths)), dtype=int)
    for column, length in enumerate(lengths):
        at_length = [t for t in trials if t.target_tokens == length]
        by_length.append(
            {
                "length": length,
                "trials": len(at_length),
                "accuracy": float(np.mean([t.correct for t in at_length])),
                "mean_tokens": float(np.mean([t.num_tokens for t in at_length])),
            }
        )
        for row in range(depth_bins):
            in_bin = [t for t in at_length if min(int(t.depth * depth_bins), depth_bins - 1) == row]
            counts[row, column] = len(in_bin)
            if in_bin:
                grid[row, column] = float(np.mean([t.correct for t in in_bin]))
    return {
        "by_length": by_length,
        "depth_bins": [[row / depth_bins, (row + 1) / depth_bins] for row in range(depth_bins)],
        "grid_lengths": lengths,
        "grid_accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in grid],
        "grid_trials": counts.tolist(),
    }
