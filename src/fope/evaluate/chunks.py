"""Where evaluation text comes from: spans inside single documents, spread over the whole held-out set.

Every length is evaluated on the same spans (each ``max_length + 1`` tokens long), cut into non-overlapping windows
of ``length + 1`` tokens, so differences between lengths come from the context length and not from different text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fope.checks import check_int

#: Default lengths as multiples of the training length: evaluation (``fope eval``) and the analysis contexts.
LENGTH_MULTIPLES = (1, 2, 4, 8, 16)
#: Evaluation lengths may be at most this multiple of the training length (``check_lengths``): far past what any
#: encoding is asked to extrapolate to, and still minutes, not days, of attention over the longest prompt or window.
MAX_LENGTH_RATIO = 256


@dataclass(frozen=True)
class Span:
    """``length`` tokens of document ``document`` starting at ``start`` (``document == -1``: the whole stream)."""

    document: int
    start: int
    length: int


@dataclass(frozen=True)
class SpanSelection:
    """The chosen spans and whether they had to cross document boundaries."""

    spans: list[Span]
    cross_document: bool
    eligible_documents: int


def select_spans(document_lengths: np.ndarray, span_tokens: int, max_spans: int, seed: int = 0) -> SpanSelection:
    """Up to ``max_spans`` non-overlapping spans of ``span_tokens`` tokens, each inside one document.

    Every document at least ``span_tokens`` long offers ``length // span_tokens`` slots; slots are drawn uniformly
    (seeded) from the whole set, so the spans cover the held-out set rather than its first documents. When no document
    is long enough the documents are taken as one stream (``cross_document=True``; separators included) and say so.
    """
    if span_tokens < 2:
        raise ValueError(f"span_tokens must be >= 2; got {span_tokens}")
    if max_spans < 1:
        raise ValueError(f"max_spans must be >= 1; got {max_spans}")
    lengths = np.asarray(document_lengths, dtype=np.int64)
    slots = [(doc, k * span_tokens) for doc, n in enumerate(lengths) for k in range(int(n) // span_tokens)]
    cross_document = not slots
    if cross_document:
        total = int(lengths.sum() + len(lengths))  # each document is followed by one separator token in the stream
        slots = [(-1, k * span_tokens) for k in range(total // span_tokens)]
        if not slots:
            raise ValueError(f"the evaluation data holds {total} tokens, fewer than one span of {span_tokens}")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(slots), size=min(max_spans, len(slots)), replace=False).tolist())
    spans = [Span(slots[i][0], slots[i][1], span_tokens) for i in chosen]
    eligible = int((lengths >= span_tokens).sum())
    return SpanSelection(spans, cross_document, eligible)


def check_lengths(lengths: Sequence[int], train_length: int | None = None) -> list[int]:
    """The evaluation lengths sorted and without repeats; each must be an int >= 1 and, given the training length, at
    most ``MAX_LENGTH_RATIO`` times it (a longer one would run for hours or run out of memory: refused at once)."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Iterable) or not (lengths := list(lengths)):
        raise ValueError(f"lengths must be a non-empty list of ints >= 1; got {lengths!r}")
    for length in lengths:
        check_int("each length", length, minimum=1)
    if train_length is not None:
        limit = MAX_LENGTH_RATIO * train_length
        too_long = sorted({int(length) for length in lengths if length > limit})
        if too_long:
            raise ValueError(
                f"lengths {too_long} are more than {MAX_LENGTH_RATIO} x the training length {train_length} = {limit} "
                f"tokens; use lengths <= {limit} (the default goes to {LENGTH_MULTIPLES[-1]} x)"
            )
    return sorted({int(length) for length in lengths})


def windows(span_tokens: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping windows of ``length + 1`` tokens cut from a span: ``(num_windows, length + 1)``."""
    count = len(span_tokens) // (length + 1)
    return np.asarray(span_tokens[: count * (length + 1)]).reshape(count, length + 1)


def position_buckets(max_length: int, bucket: int) -> list[tuple[int, int]]:
    """``[start, end)`` position ranges of ``bucket`` tokens covering ``max_length`` positions."""
    return [(start, min(start + bucket, max_length)) for start in range(0, max_length, bucket)]
