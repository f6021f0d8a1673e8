"""Retrieval evaluation, written once for every task of ``fope.data.retrieval`` (passkey too; see docs/evaluation.md).

Trial ``t`` of every length draws its prompt from ``(seed, t)``; decoding is greedy with the KV cache (one prefill,
then one token per step), stopping at the end-of-document token; the task scores the continuation. Results are
accuracy by length and a depth x length grid, with every trial.

Batching: the prompts of one length are grouped by exact token count and each group runs up to ``batch_size`` rows
per ``model.generate`` call. The rows of a batch have one length, so there is no padding: every row keeps its own
positions ``0..n-1`` and attends to its own tokens only, whatever the position encoding (ALiBi's bias and FoPE's
features included), and any model with ``generate(input_ids, max_new_tokens, temperature=, eos_id=)`` batches. The
result is the one-at-a-time result; only float reduction order may differ between batch sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from torch import nn

from fope.checks import check_int, check_keywords
from fope.data.retrieval import RetrievalPrompt, RetrievalTask, retrieval_task
from fope.data.tokenizer import Tokenizer
from fope.device import model_device, resolve_device
from fope.evaluate.chunks import LENGTH_MULTIPLES, check_lengths
from fope.evaluate.perplexity import DEFAULT_BATCH_TOKENS
from fope.evaluate.results import RETRIEVAL, evaluate_run_model, retrieval_name
from fope.evaluate.schema import RetrievalResult
from fope.progress import progress_bar

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

DEFAULT_TRIALS = 100
#: Default lengths stop at this multiple of the training length.
MAX_LENGTH_MULTIPLE = LENGTH_MULTIPLES[-1]


@dataclass(frozen=True)
class RetrievalTrial:
    """The outcome of one trial. ``key`` is the expected answer and ``answer`` what the continuation gave: one int
    (None when it gave none) for one-value tasks, lists for several values."""

    target_tokens: int
    num_tokens: int
    key: int | list[int]
    depth: float
    continuation: str
    answer: int | list[int] | None
    correct: bool
    filler_chars: int


def summarize_trials(trials: Sequence[RetrievalTrial], depth_bins: int = 5) -> dict:
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
                "mean_filler_chars": float(np.mean([t.filler_chars for t in at_length])),
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


def as_task(task: str | RetrievalTask) -> RetrievalTask:
    """A task given by name (``fope.data.retrieval.TASK_NAMES``) or as itself."""
    return retrieval_task(task) if isinstance(task, str) else task


def min_prompt_tokens(task: str | RetrievalTask, encode: Callable[[str], list[int]]) -> int:
    """Tokens of the task's prompt without filler (``task.shortest_tokens``), plus the end-of-document token that
    opens every prompt."""
    return 1 + as_task(task).shortest_tokens(encode)


def default_lengths(task: str | RetrievalTask, encode: Callable[[str], list[int]], train_length: int) -> list[int]:
    """``train_length`` times each of ``LENGTH_MULTIPLES`` (1x..16x) that holds the prompt without filler.

    Shorter lengths are left out: the question is what happens past the training length, and a prompt much shorter
    than the training length is mostly instruction with little filler to retrieve across (ask them with lengths).
    """
    task = as_task(task)
    check_int("train_length", train_length, minimum=1)
    shortest = min_prompt_tokens(task, encode)
    lengths = [train_length * multiple for multiple in LENGTH_MULTIPLES if train_length * multiple >= shortest]
    if not lengths:
        raise ValueError(
            f"the {task.name} prompt without filler takes {shortest} tokens, more than {MAX_LENGTH_MULTIPLE} x "
            f"train_length={train_length}; pass lengths explicitly"
        )
    return lengths


def trial_rng(seed: int, trial: int) -> np.random.Generator:
    """The generator of trial ``trial``: the same question at every length, whatever the number of trials."""
    return np.random.default_rng([seed, trial])


def batch_rows(batch_size: int | None, length: int, trials: int) -> int:
    """Rows per ``generate`` call: ``batch_size``, or by default as many as hold 16384 tokens (the perplexity
    evaluation's batch), at most ``trials``."""
    if batch_size is None:
        return max(1, min(trials, DEFAULT_BATCH_TOKENS // length))
    return check_int("batch_size", batch_size, minimum=1)


def same_length_batches(prompts: Sequence[RetrievalPrompt], rows: int) -> list[list[int]]:
    """Indices of ``prompts`` in batches of at most ``rows`` prompts with the same token count."""
    groups: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(prompt.num_tokens, []).append(index)
    return [group[start : start + rows] for _, group in sorted(groups.items()) for start in range(0, len(group), rows)]


def run_trials(
    model: nn.Module,
    tokenizer: Tokenizer,
    task: RetrievalTask,
    prompts: Sequence[RetrievalPrompt],
    target_tokens: int,
    max_new_tokens: int,
    device: torch.device,
) -> list[RetrievalTrial]:
    """Greedy decoding of prompts of one token count in one batch (KV cache: one prefill, then one token per step).

    Each prompt is a new document, so it is preceded by the end-of-document token, as every document in the training
    stream is (the tokenizer has no separate beginning-of-text token); models trained with retrieval examples saw them
    the same way. A row's continuation ends at its first end-of-document token.
    """
    if len({prompt.num_tokens for prompt in prompts}) != 1:
        raise ValueError(f"a batch needs prompts of one token count; got {sorted({p.num_tokens for p in prompts})}")
    eos = tokenizer.eos_id
    ids = torch.tensor([[eos, *prompt.token_ids] for prompt in prompts], dtype=torch.long, device=device)
    output = model.generate(ids, max_new_tokens, temperature=0.0, eos_id=eos).tolist()
    trials = []
    for prompt, row in zip(prompts, output, strict=True):
        new = row[ids.shape[1] :]
        if eos in new:
            new = new[: new.index(eos)]
        continuation = tokenizer.decode(new)
        found, correct = task.score(continuation, prompt)
        single = len(prompt.answer) == 1
        key = prompt.answer[0] if single else list(prompt.answer)
        answer = (found[0] if found else None) if single else found
        trials.append(
            RetrievalTrial(
                target_tokens, ids.shape[1], key, prompt.depth, continuation, answer, correct, prompt.filler_chars
            )
        )
    return trials


def check_task_lengths(
    task: RetrievalTask, encode: Callable[[str], list[int]], lengths: Sequence[int] | None, train_length: int
) -> tuple[list[int], int]:
    """The lengths to evaluate (default: ``default_lengths``) and the shortest prompt; lengths that cannot hold the
    prompt without filler are an error that names them."""
    shortest = min_prompt_tokens(task, encode)
    lengths = check_lengths(default_lengths(task, encode, train_length) if lengths is None else lengths, train_length)
    too_short = [length for length in lengths if length < shortest]
    if too_short:
        raise ValueError(
            f"{task.name} lengths {too_short} cannot hold the prompt without filler ({shortest} tokens with this "
            f"tokenizer); use lengths >= {shortest}"
        )
    return lengths, shortest


def build_prompts(
    task: RetrievalTask, encode: Callable[[str], list[int]], length: int, trials: int, seed: int
) -> list[RetrievalPrompt]:
    """The prompts of one length; one token of the budget opens the document (see ``run_trials``)."""
    prompts = []
    for trial in range(trials):
        try:
            prompts.append(task.prompt(encode, length - 1, trial_rng(seed, trial)))
        except ValueError as error:  # a draw longer than the ones min_prompt_tokens measured
            raise ValueError(f"{task.name} length {length} cannot hold trial {trial}: {error}") from None
    return prompts


def evaluate_retrieval(
    model: nn.Module,
    tokenizer: Tokenizer,
    task: str | RetrievalTask = "passkey",
    *,
    lengths: Sequence[int] | None = None,
    train_length: int | None = None,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    max_new_tokens: int | None = None,
    depth_bins: int = 5,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> RetrievalResult:
    """Accuracy of ``task`` at each length (``trials`` seeded prompts each), the depth x length grid and every trial.

    Trial ``t`` draws its prompt from ``(seed, t)``, so every length asks the same questions. ``lengths`` default to
    1, 2, 4, 8 and 16 x ``train_length`` (default: the model's), those that hold the prompt.
    ``max_new_tokens`` defaults to the task's. ``batch_size`` rows of one token count decode together (default: as
    many as hold 16384 tokens, at most ``trials``). ``device`` (default: the model's) receives the model.
    """
    task = as_task(task)
    trials = check_int("trials", trials, minimum=1)
    max_new_tokens = check_int(
        "max_new_tokens", task.max_new_tokens if max_new_tokens is None else max_new_tokens, minimum=1
    )
    depth_bins = check_int("depth_bins", depth_bins, minimum=1)
    if batch_size is not None:
        check_int("batch_size", batch_size, minimum=1)
    if train_length is None:
        train_length = model.config.train_length
    lengths, shortest = check_task_lengths(task, tokenizer.encode, lengths, train_length)
    device = model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    outcomes: list[RetrievalTrial] = []
    seconds = {}
    bar = progress_bar(
        total=len(lengths) * trials, disable=not progress, desc=task.name, unit="trial", dynamic_ncols=True
    )
    try:
        with torch.inference_mode():
            for length in lengths:
                start = time.perf_counter()
                prompts = build_prompts(task, tokenizer.encode, length, trials, seed)
                at_length: list[RetrievalTrial | None] = [None] * trials
                for batch in same_length_batches(prompts, batch_rows(batch_size, length, trials)):
                    done = run_trials(
                        model, tokenizer, task, [prompts[i] for i in batch], length, max_new_tokens, device
                    )
                    for index, outcome in zip(batch, done, strict=True):
                        at_length[index] = outcome
                    bar.update(len(batch))
                outcomes.extend(at_length)
                seconds[length] = time.perf_counter() - start
    finally:
        bar.close()
        model.train(was_training)
    summary = summarize_trials(outcomes, depth_bins)
    for row in summary["by_length"]:
        row["seconds"] = seconds[row["length"]]
    return {
        "evaluation": RETRIEVAL,
        "task": task.name,
        "train_length": train_length,
        "lengths": lengths,
        "trials_per_length": trials,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "min_prompt_tokens": shortest,
        "device": str(device),
        **summary,
        "trials": [dataclasses.asdict(outcome) for outcome in outcomes],
    }


class RetrievalOptions(TypedDict, total=False):
    """What ``evaluate_run_retrieval`` and ``evaluate_run_passkey`` hand on to the evaluator (``evaluate_retrieval`` /
    ``evaluate_passkey``, which hold the defaults and the checks)."""

    lengths: Sequence[int] | None
    trials: int
    seed: int
    max_new_tokens: int | None
    depth_bins: int
    batch_size: int | None
    progress: bool


def evaluate_run_retrieval(
    run_dir: str | Path,
    task: str | RetrievalTask,
    *,
    device: str = "auto",
    step: int | None = None,
    write: bool = True,
    **options: Unpack[RetrievalOptions],
) -> RetrievalResult:
    """``fope retrieval``: a run's accuracy on ``task`` against length, saved as
    ``RUN_DIR/eval/retrieval-<task>.json`` (``options``: ``evaluate_retrieval``'s)."""
    task = as_task(task)  # an unknown name fails before the run is loaded
    check_keywords("evaluate_run_retrieval", options, RetrievalOptions)
    name, evaluate = retrieval_name(task.name), functools.partial(evaluate_retrieval, task=task)
    return evaluate_run_model(run_dir, name, evaluate, step=step, device=device, write=write, **options)


def format_retrieval(results: dict[str, Any]) -> str:
    """A short text table: accuracy, mean prompt tokens and filler characters per length."""
    lines = [
        f"{results['task']}: {results['trials_per_length']} trials per length (seed {results['seed']}); "
        f"training length {results['train_length']}",
        f"{'length':>8} {'tokens':>8} {'filler chars':>13} {'accuracy':>9} {'seconds':>8}",
    ]
    for row in results["by_length"]:
        lines.append(
            f"{row['length']:>8} {row['mean_tokens']:>8.0f} {row['mean_filler_chars']:>13.0f} "
            f"{row['accuracy']:>9.1%} {row['seconds']:>8.1f}"
        )
    return "\n".join(lines)
