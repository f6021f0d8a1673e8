"""The results' types: one per evaluator, as ``RUN_DIR/eval/<name>.json`` holds it (JSON, so ``TypedDict``s).

- ``PerplexityResult``: ``fope eval`` (``fope.evaluate.perplexity``), ``eval/perplexity[-<data>].json``.
- ``RetrievalResult``: ``fope passkey`` (``evaluation`` ``passkey``, ``eval/passkey.json``) and ``fope retrieval``
  (``retrieval``, ``eval/retrieval-<task>.json``): one trial loop (``fope.evaluate.retrieval``), so one type.

Each evaluator's settings (what makes two results the same evaluation) are ``fope.evaluate.results.SETTINGS``, and
the one rule that compares them is ``fope.evaluate.results.mismatches``. A result written by ``evaluate_run`` also
names its run (``run``: ``RunSummary``). tests/evaluate/test_schema.py checks real results against these types, key
for key wherever a type names the keys (``position_options`` and the ``merged`` entries stay open mappings), so a key
added to an evaluator without its type here fails there. The types are for readers and type checkers; the values stay
plain dicts, as the JSON files hold them.
"""

from __future__ import annotations

from typing import Any, TypedDict

from fope.evaluate.results import PASSKEY, PERPLEXITY, RETRIEVAL

__all__ = [
    "RESULT_TYPES",
    "LengthRow",
    "PerplexityRecord",
    "PerplexityResult",
    "PositionBucket",
    "RetrievalResult",
    "RunSummary",
    "Spans",
]


class RunSummary(TypedDict):
    """The run a result describes (``fope.evaluate.results.run_summary``): where, which checkpoint, the model."""

    path: str
    label: str | None
    step: int
    checkpoint: str
    seed: int
    position: str
    position_options: dict[str, Any]
    train_length: int
    d_model: int
    num_layers: int
    num_heads: int
    head_dim: int
    vocab_size: int
    parameters: int
    data_source: str
    passkey_fraction: float
    retrieval_tasks: list[str]
    batch_size: int
    max_steps: int


class PositionBucket(TypedDict):
    """Mean loss over the positions ``[start, end)`` of every window of one length."""

    start: int
    end: int
    tokens: int
    loss: float


class PerplexityRecord(TypedDict):
    """One length: the windows read, their mean loss, perplexity and bits per byte (None without byte counts)."""

    length: int
    windows: int
    tokens: int
    bytes: int
    loss: float
    perplexity: float
    bits_per_byte: float | None
    seconds: float
    position_buckets: list[PositionBucket]


class Spans(TypedDict):
    """The span draw every length reads (``fope.evaluate.chunks``): how many, how long, from which documents."""

    count: int
    span_tokens: int
    max_spans: int
    seed: int
    documents: int
    eligible_documents: int
    documents_used: int
    cross_document: bool
    note: str | None


class _PerplexityWritten(TypedDict, total=False):
    run: RunSummary  # added by evaluate_run
    data: str  # the text: "held-out split" or its resolved path
    data_path: str  # the held-out split's token store
    merged: list[dict[str, Any]]  # lengths kept from earlier evaluations, with the spans they read (merge_by_length)


class PerplexityResult(_PerplexityWritten):
    """``evaluate_perplexity``'s result: loss at each length on the same spans."""

    evaluation: str  # "perplexity"
    train_length: int
    lengths: list[int]
    bucket_tokens: int
    spans: Spans
    bytes_counted_by: str
    device: str
    results: list[PerplexityRecord]


class LengthRow(TypedDict):
    """One length: trials, share answered right, mean prompt tokens and filler characters, seconds taken."""

    length: int
    trials: int
    accuracy: float
    mean_tokens: float
    mean_filler_chars: float
    seconds: float


class _RetrievalWritten(TypedDict, total=False):
    run: RunSummary  # added by evaluate_run


class RetrievalResult(_RetrievalWritten):
    """``evaluate_retrieval``'s (and ``evaluate_passkey``'s) result: accuracy at each length, the depth x length grid
    (None where no trial fell) and every trial."""

    evaluation: str  # "passkey" or "retrieval"
    task: str
    train_length: int
    lengths: list[int]
    trials_per_length: int
    seed: int
    max_new_tokens: int
    batch_size: int | None
    min_prompt_tokens: int
    device: str
    by_length: list[LengthRow]
    depth_bins: list[list[float]]
    grid_lengths: list[int]
    grid_accuracy: list[list[float | None]]
    grid_trials: list[list[int]]
    trials: list[dict[str, Any]]  # each a fope.evaluate.retrieval.RetrievalTrial as dataclasses.asdict gives it


#: The result type of each evaluation (a result's ``evaluation`` key).
RESULT_TYPES: dict[str, type[PerplexityResult] | type[RetrievalResult]] = {
    PERPLEXITY: PerplexityResult,
    PASSKEY: RetrievalResult,
    RETRIEVAL: RetrievalResult,
}
