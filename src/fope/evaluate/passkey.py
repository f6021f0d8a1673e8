"""Passkey retrieval: the protocol behind the paper's figure (see docs/evaluation.md).

The prompt (instruction, filler prefix, needle, filler suffix, question) is ``fope.data.passkey``'s. The answer is
right when the first integer of the greedy continuation equals the key. The evaluation loop is
``fope.evaluate.retrieval``'s, shared with the other retrieval tasks; this module is its passkey face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fope.checks import check_keywords
from fope.data.passkey import PasskeyPrompt, build_passkey_prompt
from fope.data.retrieval import PasskeyTask, integers, passkey_prompt, score_integers
from fope.data.tokenizer import Tokenizer
from fope.evaluate.results import PASSKEY, evaluate_run_model
from fope.evaluate.retrieval import (
    DEFAULT_TRIALS,
    MAX_LENGTH_MULTIPLE,
    RetrievalOptions,
    RetrievalTrial,
    default_lengths,
    evaluate_retrieval,
    format_retrieval,
    run_trials,
    summarize_trials,
    trial_rng,
)
from fope.evaluate.schema import RetrievalResult

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = [
    "DEFAULT_TRIALS",
    "MAX_LENGTH_MULTIPLE",
    "MAX_NEW_TOKENS",
    "PasskeyTrial",
    "build_passkey_prompt",
    "default_passkey_lengths",
    "evaluate_passkey",
    "evaluate_run_passkey",
    "first_integer",
    "format_passkey",
    "min_prompt_tokens",
    "run_trial",
    "score_answer",
    "summarize_trials",
    "trial_rng",
]

TASK = PasskeyTask()
#: Tokens a passkey answer may take (five digits and what follows them).
MAX_NEW_TOKENS = 10
#: A passkey trial is a retrieval trial whose ``key`` and ``answer`` are single ints.
PasskeyTrial = RetrievalTrial


def first_integer(text: str) -> int | None:
    """The first run of digits in ``text`` as an int, or None when there is none."""
    found = integers(text)
    return found[0] if found else None


def score_answer(continuation: str, key: int) -> bool:
    """Right when the first integer of the continuation equals the key (a missing answer is wrong)."""
    return score_integers(continuation, (key,))[1]


def min_prompt_tokens(encode: Callable[[str], list[int]]) -> int:
    """Tokens of the prompt without filler (the most over the smallest, the largest and 64 seeded keys), plus the
    end-of-document token that opens every prompt."""
    return 1 + TASK.shortest_tokens(encode)


def default_passkey_lengths(encode: Callable[[str], list[int]], train_length: int) -> list[int]:
    """``train_length`` x 1, 2, 4, 8, 16, those that hold the prompt without filler (``default_lengths``)."""
    return default_lengths(TASK, encode, train_length)


def run_trial(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: PasskeyPrompt,
    target_tokens: int,
    max_new_tokens: int,
    device: torch.device,
) -> PasskeyTrial:
    """One trial alone: greedy decoding with the KV cache after the end-of-document token and the prompt
    (``fope.evaluate.retrieval.run_trials`` with one row)."""
    return run_trials(model, tokenizer, TASK, [passkey_prompt(prompt)], target_tokens, max_new_tokens, device)[0]


def evaluate_passkey(
    model: nn.Module,
    tokenizer: Tokenizer,
    *,
    lengths: Sequence[int] | None = None,
    train_length: int | None = None,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    max_new_tokens: int = MAX_NEW_TOKENS,
    depth_bins: int = 5,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> RetrievalResult:
    """Passkey accuracy at each length (``trials`` seeded prompts each), the depth x length grid and every trial.

    Trial ``t`` draws its key and depth from ``(seed, t)``, so every length asks the same questions. ``lengths``
    default to 1, 2, 4, 8 and 16 x ``train_length`` (default: the model's), those that hold the prompt.
    ``batch_size`` prompts of one token count decode together (default: as many as hold 16384 tokens, at most
    ``trials``); the results do not depend on it. ``device`` (default: the model's) receives the model.
    """
    results = evaluate_retrieval(
        model,
        tokenizer,
        TASK,
        lengths=lengths,
        train_length=train_length,
        trials=trials,
        seed=seed,
        max_new_tokens=max_new_tokens,
        depth_bins=depth_bins,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return {**results, "evaluation": PASSKEY}


def evaluate_run_passkey(
    run_dir: str | Path,
    *,
    device: str = "auto",
    step: int | None = None,
    write: bool = True,
    **options: Unpack[RetrievalOptions],
) -> RetrievalResult:
    """``fope passkey``: a run's passkey accuracy against length, saved as ``RUN_DIR/eval/passkey.json``
    (``options``: ``evaluate_passkey``'s)."""
    check_keywords("evaluate_run_passkey", options, RetrievalOptions)  # before the run is loaded
    return evaluate_run_model(run_dir, PASSKEY, evaluate_passkey, step=step, device=device, write=write, **options)


def format_passkey(results: dict[str, Any]) -> str:
    """A short text table: accuracy, mean prompt tokens and filler characters per length."""
    return format_retrieval(results)
