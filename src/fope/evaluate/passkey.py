"""Passkey retrieval: the protocol behind the paper's figure (see docs/evaluation.md).

The prompt (instruction, filler prefix, needle, filler suffix, question) is ``fope.data.passkey``'s. The answer is
right when the first integer of the greedy continuation equals the key.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fope.checks import check_int
from fope.data.passkey import KEY_RANGE, PasskeyPrompt, build_passkey_prompt, passkey_text
from fope.data.tokenizer import Tokenizer
from fope.device import model_device
from fope.evaluate.chunks import check_lengths
from fope.evaluate.results import PASSKEY, evaluate_run
from fope.runs import Run

DEFAULT_TRIALS = 100
#: Default lengths stop at this multiple of the training length.
MAX_LENGTH_MULTIPLE = 16
_FIRST_INTEGER = re.compile(r"\d+")


def first_integer(text: str) -> int | None:
    """The first run of digits in ``text`` as an int, or None when there is none."""
    match = _FIRST_INTEGER.search(text)
    return int(match.group()) if match else None


def score_answer(continuation: str, key: int) -> bool:
    """Right when the first integer of the continuation equals the key (a missing answer is wrong)."""
    return first_integer(continuation) == key


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


def min_prompt_tokens(encode: Callable[[str], list[int]]) -> int:
    """Tokens of the prompt without filler (the most over the smallest, the largest and 64 seeded keys), plus the
    end-of-document token that opens every prompt."""
    sample = np.random.default_rng(0).integers(KEY_RANGE[0], KEY_RANGE[1] + 1, size=64).tolist()
    return 1 + max(len(encode(passkey_text(key, 0, 0.0))) for key in {*KEY_RANGE, *sample})


def default_passkey_lengths(encode: Callable[[str], list[int]], train_length: int) -> list[int]:
    """Powers of two from the smallest that holds the prompt without filler up to 16 x ``train_length``."""
    top = MAX_LENGTH_MULTIPLE * check_int("train_length", train_length, minimum=1)
    shortest = min_prompt_tokens(encode)
    length = 1 << (shortest - 1).bit_length()
    if length > top:
        raise ValueError(
            f"the passkey prompt without filler takes {shortest} tokens, more than {MAX_LENGTH_MULTIPLE} x "
            f"train_length={train_length}; pass lengths explicitly"
        )
    lengths = []
    while length <= top:
        lengths.append(length)
        length *= 2
    return lengths


def trial_rng(seed: int, trial: int) -> np.random.Generator:
    """The generator of trial ``trial``: the same key and depth at every length, whatever the number of trials."""
    return np.random.default_rng([seed, trial])


def run_trial(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: PasskeyPrompt,
    target_tokens: int,
    max_new_tokens: int,
    device: torch.device,
) -> PasskeyTrial:
    """Greedy decoding (KV cache: one prefill, then one token per step) after the prompt, scored by first integer.

    The prompt is a new document, so it is preceded by the end-of-document token, as every document in the training
    stream is (the tokenizer has no separate beginning-of-text token); models trained with passkey examples saw them
    the same way.
    """
    ids = torch.tensor([[tokenizer.eos_id, *prompt.token_ids]], dtype=torch.long, device=device)
    output = model.generate(ids, max_new_tokens, temperature=0.0, eos_id=tokenizer.eos_id)
    new = output[0, ids.shape[1] :].tolist()
    if tokenizer.eos_id in new:
        new = new[: new.index(tokenizer.eos_id)]
    continuation = tokenizer.decode(new)
    correct = score_answer(continuation, prompt.key)
    return PasskeyTrial(
        target_tokens, ids.shape[1], prompt.key, prompt.depth, continuation, first_integer(continuation), correct
    )


def evaluate_passkey(
    model: nn.Module,
    tokenizer: Tokenizer,
    *,
    lengths: Sequence[int] | None = None,
    train_length: int | None = None,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    max_new_tokens: int = 10,
    depth_bins: int = 5,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Passkey accuracy at each length (``trials`` seeded prompts each), the depth x length grid and every trial.

    Trial ``t`` draws its key and depth from ``(seed, t)``, so every length asks the same questions. ``lengths``
    default to powers of two from the smallest that holds the prompt up to 16 x ``train_length`` (default: the
    model's). ``device`` (default: the model's) receives the model.
    """
    trials = check_int("trials", trials, minimum=1)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    depth_bins = check_int("depth_bins", depth_bins, minimum=1)
    if train_length is None:
        train_length = model.config.train_length
    shortest = min_prompt_tokens(tokenizer.encode)
    if lengths is None:
        lengths = default_passkey_lengths(tokenizer.encode, train_length)
    lengths = check_lengths(lengths)
    if lengths[0] < shortest:
        too_short = [length for length in lengths if length < shortest]
        raise ValueError(
            f"passkey lengths {too_short} cannot hold the prompt without filler ({shortest} tokens with this "
            f"tokenizer); use lengths >= {shortest}"
        )
    device = model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.to(device).eval()
    outcomes: list[PasskeyTrial] = []
    filler_chars: list[int] = []
    seconds = {}
    bar = tqdm(total=len(lengths) * trials, disable=not progress, desc="passkey", unit="trial", dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for length in lengths:
                start = time.perf_counter()
                for trial in range(trials):
                    # one token of the budget opens the document (see run_trial)
                    prompt = build_passkey_prompt(tokenizer.encode, length - 1, trial_rng(seed, trial))
                    outcomes.append(run_trial(model, tokenizer, prompt, length, max_new_tokens, device))
                    filler_chars.append(prompt.filler_chars)
                    bar.update(1)
                seconds[length] = time.perf_counter() - start
    finally:
        bar.close()
        model.train(was_training)
    summary = summarize_trials(outcomes, depth_bins)
    for row in summary["by_length"]:
        row["seconds"] = seconds[row["length"]]
        chars = [chars for chars, t in zip(filler_chars, outcomes, strict=True) if t.target_tokens == row["length"]]
        row["mean_filler_chars"] = float(np.mean(chars))
    return {
        "evaluation": "passkey",
        "train_length": train_length,
        "lengths": lengths,
        "trials_per_length": trials,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "min_prompt_tokens": shortest,
        "device": str(device),
        **summary,
        "trials": [
            {**dataclasses.asdict(outcome), "filler_chars": chars}
            for outcome, chars in zip(outcomes, filler_chars, strict=True)
        ],
    }


def evaluate_run_passkey(
    run_dir: str | Path,
    *,
    lengths: Sequence[int] | None = None,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    max_new_tokens: int = 10,
    depth_bins: int = 5,
    device: str = "auto",
    step: int | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """``fope passkey``: a run's passkey accuracy against length, saved as ``RUN_DIR/eval/passkey.json``."""

    def evaluate(run: Run) -> dict[str, Any]:
        return evaluate_passkey(
            run.model,
            run.tokenizer,
            lengths=lengths,
            train_length=run.train_length,
            trials=trials,
            seed=seed,
            max_new_tokens=max_new_tokens,
            depth_bins=depth_bins,
            progress=progress,
        )

    return evaluate_run(run_dir, PASSKEY, evaluate, step=step, device=device, write=write)


def format_passkey(results: dict[str, Any]) -> str:
    """A short text table: accuracy, mean prompt tokens and filler characters per length."""
    lines = [
        f"{results['trials_per_length']} trials per length (seed {results['seed']}); "
        f"training length {results['train_length']}",
        f"{'length':>8} {'tokens':>8} {'filler chars':>13} {'accuracy':>9} {'seconds':>8}",
    ]
    for row in results["by_length"]:
        lines.append(
            f"{row['length']:>8} {row['mean_tokens']:>8.0f} {row['mean_filler_chars']:>13.0f} "
            f"{row['accuracy']:>9.1%} {row['seconds']:>8.1f}"
        )
    return "\n".join(lines)
