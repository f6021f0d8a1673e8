"""Perplexity against length: the same spans of held-out text, cut into windows of each length (docs/evaluation.md).

For every length the evaluation reads the same spans (``max(lengths) + 1`` tokens each, inside single documents when
the documents are long enough, see ``fope.evaluate.chunks``), cuts them into non-overlapping windows of
``length + 1`` tokens and predicts tokens 1..length of each window from the ones before. It reports mean token loss
(nats), perplexity, bits per byte, and the loss by position bucket (where does it break?).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import decoders, pre_tokenizers
from torch import nn

from fope.checks import check_int
from fope.data.corpus import Document, decode_text, jsonl_documents, text_dir_documents
from fope.data.store import TokenStore
from fope.data.tokenizer import Tokenizer
from fope.device import model_device, resolve_device
from fope.evaluate.chunks import (
    LENGTH_MULTIPLES,
    Span,
    SpanSelection,
    check_lengths,
    position_buckets,
    select_spans,
    windows,
)
from fope.evaluate.results import PERPLEXITY, evaluate_run, results_name
from fope.evaluate.schema import PerplexityResult
from fope.progress import progress_bar
from fope.runs import Run

if TYPE_CHECKING:
    from tqdm import tqdm

DEFAULT_MAX_SPANS = 32
DEFAULT_BATCH_TOKENS = 16384
#: Logits computed at once when scoring (elements): 16 MiB of float32 (and as much for their log-softmax).
LOGIT_CHUNK_ELEMENTS = 2**22
#: The keys of the per-length records ``fope eval --json`` prints.
RECORD_KEYS = ("length", "tokens", "loss", "perplexity", "bits_per_byte")


def default_lengths(train_length: int) -> list[int]:
    """``train_length`` times each of ``LENGTH_MULTIPLES``."""
    check_int("train_length", train_length, minimum=1)
    return [train_length * multiple for multiple in LENGTH_MULTIPLES]


def read_documents(path: str | Path, text_field: str = "text") -> list[Document]:
    """Evaluation text: a folder of ``.txt`` files, one ``.txt`` file, or a ``.jsonl`` file (one document per line)."""
    path = Path(path)
    if path.is_dir():
        return text_dir_documents(path)
    if not path.is_file():
        what = "is not a folder or a regular file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"evaluation data {str(path)!r} {what}; give a folder of .txt, a .txt or .jsonl")
    if path.suffix == ".jsonl":
        return jsonl_documents(path, text_field)
    if path.suffix == ".txt":
        return [Document(path.name, decode_text(path.read_bytes(), str(path)), path.name)]
    raise ValueError(f"evaluation data must be a folder of .txt files, a .txt or a .jsonl file; got {str(path)!r}")


def document_tokens(data: TokenStore | Sequence[Document], tokenizer: Tokenizer) -> list[np.ndarray]:
    """Token ids of every evaluation document (without EOS): read from a store, or tokenized with ``tokenizer``."""
    if isinstance(data, TokenStore):
        return [data.document(i) for i in range(data.num_documents)]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(f"data must be a TokenStore or a list of Documents; got {type(data).__name__}")
    documents = list(data)
    if not documents:
        raise ValueError("the evaluation data holds no documents")
    wrong = next((document for document in documents if not isinstance(document, Document)), None)
    if wrong is not None:
        raise TypeError(
            f"data must be a TokenStore or a list of Documents (fope.data.corpus); got a list holding "
            f"{type(wrong).__name__}"
        )
    return [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch([d.text for d in documents])]


def span_ids(documents: Sequence[np.ndarray], span: Span, eos_id: int) -> np.ndarray:
    """The tokens of ``span``: a slice of one document, or (``document == -1``) of the documents joined by EOS."""
    if span.document >= 0:
        return np.asarray(documents[span.document][span.start : span.start + span.length], dtype=np.int64)
    pieces, offset, end = [], 0, span.start + span.length
    for ids in documents:
        size = len(ids) + 1
        if offset + size > span.start and offset < end:
            joined = np.append(np.asarray(ids, dtype=np.int64), eos_id)
            pieces.append(joined[max(span.start - offset, 0) : end - offset])
        offset += size
        if offset >= end:
            break
    return np.concatenate(pieces)


def token_byte_counts(tokenizer: Tokenizer) -> np.ndarray | None:
    """UTF-8 bytes of every token id when the tokenizer is byte-level BPE (special tokens count 0), else None.

    A byte-level token is a fixed byte string whose characters map one-to-one to bytes, so the bytes of any token
    sequence are the sum of its tokens' counts, exactly (also where a window cuts a multi-byte character).
    """
    backend = getattr(tokenizer, "backend", None)
    if backend is None or not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special = {token.content for token in backend.get_added_tokens_decoder().values()}
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for token_id in range(tokenizer.vocab_size):
        token = backend.id_to_token(token_id)
        if token is None or token in special:
            continue
        if not set(token) <= alphabet:
            return None
        counts[token_id] = len(token)
    return counts


def byte_counter(tokenizer: Tokenizer) -> tuple[str, Callable[[np.ndarray], int]]:
    """How bytes are counted (a name for the results) and a function: token rows -> their UTF-8 bytes."""
    table = token_byte_counts(tokenizer)
    if table is not None:
        return "token table", lambda rows: int(table[rows].sum())
    # Other tokenizers: decode each row; a character cut by a window edge may then count as U+FFFD (3 bytes).
    return "decoding windows", lambda rows: sum(len(tokenizer.decode(row.tolist()).encode("utf-8")) for row in rows)


def token_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Float32 cross-entropy of every target ``(B, T)``; logits are made a few positions at a time to bound memory."""
    hidden = model.hidden_states(inputs)
    step = max(1, LOGIT_CHUNK_ELEMENTS // (inputs.shape[0] * model.config.vocab_size))
    losses = []
    for start in range(0, inputs.shape[1], step):
        logits = model.lm_head(hidden[:, start : start + step]).float()
        losses.append(F.cross_entropy(logits.transpose(1, 2), targets[:, start : start + step], reduction="none"))
    return torch.cat(losses, dim=1)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def _spans_note(selection: SpanSelection, span_tokens: int, num_documents: int) -> str | None:
    if selection.cross_document:
        return (
            f"no evaluation document holds {span_tokens} tokens, so the spans come from the documents joined by EOS: "
            "windows cross document boundaries"
        )
    if selection.eligible_documents < num_documents:
        return (
            f"spans come from the {selection.eligible_documents} of {num_documents} documents that hold at least "
            f"{span_tokens} tokens"
        )
    return None


def _evaluate_length(
    model: nn.Module,
    spans: np.ndarray,
    length: int,
    bucket: int,
    batch_tokens: int,
    device: torch.device,
    count_bytes: Callable[[np.ndarray], int],
    bar: tqdm,
) -> dict[str, Any]:
    start_time = time.perf_counter()
    cut = np.concatenate([windows(span, length) for span in spans])
    sums = np.zeros(length, dtype=np.float64)  # summed on the host in float64 (some devices have no float64)
    rows = max(1, batch_tokens // length)
    for first in range(0, len(cut), rows):
        block = torch.as_tensor(cut[first : first + rows], device=device)
        sums += token_losses(model, block[:, :-1], block[:, 1:]).sum(dim=0).cpu().numpy()
        bar.update(block.shape[0] * length)
    count, tokens = len(cut), len(cut) * length
    loss, num_bytes = float(sums.sum()) / tokens, count_bytes(cut[:, 1:])
    return {
        "length": length,
        "windows": count,
        "tokens": tokens,
        "bytes": num_bytes,
        "loss": loss,
        "perplexity": _perplexity(loss),
        "bits_per_byte": float(sums.sum()) / math.log(2) / num_bytes if num_bytes else None,
        "seconds": time.perf_counter() - start_time,
        "position_buckets": [
            {"start": a, "end": b, "tokens": count * (b - a), "loss": float(sums[a:b].sum()) / (count * (b - a))}
            for a, b in position_buckets(length, bucket)
        ],
    }


def evaluate_perplexity(
    model: nn.Module,
    data: TokenStore | Sequence[Document],
    tokenizer: Tokenizer,
    *,
    lengths: Sequence[int] | None = None,
    train_length: int,
    max_spans: int = DEFAULT_MAX_SPANS,
    seed: int = 0,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> PerplexityResult:
    """Loss, perplexity and bits per byte at each length on the same spans, plus loss by position bucket.

    ``data`` is a token store (the run's held-out split) or documents to tokenize with ``tokenizer``. ``lengths``
    default to ``train_length`` x ``LENGTH_MULTIPLES``; buckets are ``train_length`` positions wide. Batches hold
    about ``batch_tokens`` tokens. ``device`` (default: the model's) receives the model.
    """
    train_length = check_int("train_length", train_length, minimum=1)
    max_spans = check_int("max_spans", max_spans, minimum=1)
    batch_tokens = check_int("batch_tokens", batch_tokens, minimum=1)
    seed = check_int("seed", seed, minimum=0)  # numpy's default_rng takes any int >= 0
    lengths = default_lengths(train_length) if lengths is None else check_lengths(lengths, train_length)
    documents = document_tokens(data, tokenizer)
    span_tokens = lengths[-1] + 1
    selection = select_spans(np.array([len(ids) for ids in documents]), span_tokens, max_spans, seed)
    spans = np.stack([span_ids(documents, span, tokenizer.eos_id) for span in selection.spans])
    bytes_method, count_bytes = byte_counter(tokenizer)
    device = model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    total = sum(len(spans) * (span_tokens // (length + 1)) * length for length in lengths)
    bar = progress_bar(
        total=total, disable=not progress, desc="perplexity", unit="tok", unit_scale=True, dynamic_ncols=True
    )
    try:
        with torch.inference_mode():
            records = [
                _evaluate_length(model, spans, length, train_length, batch_tokens, device, count_bytes, bar)
                for length in lengths
            ]
    finally:
        bar.close()
        model.train(was_training)
    return {
        "evaluation": "perplexity",
        "train_length": train_length,
        "lengths": lengths,
        "bucket_tokens": train_length,
        "spans": {
            "count": len(selection.spans),
            "span_tokens": span_tokens,
            "max_spans": max_spans,
            "seed": seed,
            "documents": len(documents),
            "eligible_documents": selection.eligible_documents,
            "documents_used": len({span.document for span in selection.spans}),
            "cross_document": selection.cross_document,
            "note": _spans_note(selection, span_tokens, len(documents)),
        },
        "bytes_counted_by": bytes_method,
        "device": str(device),
        "results": records,
    }


def records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-length records with only ``RECORD_KEYS`` (what ``fope eval --json`` prints)."""
    return [{key: record[key] for key in RECORD_KEYS} for record in results["results"]]


def evaluate_run_perplexity(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    text_field: str = "text",
    lengths: Sequence[int] | None = None,
    max_spans: int = DEFAULT_MAX_SPANS,
    seed: int = 0,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    device: str = "auto",
    step: int | None = None,
    progress: bool = True,
    write: bool = True,
) -> PerplexityResult:
    """``fope eval``: a run's perplexity against length on its held-out split (or on ``data``), saved in ``eval/``.

    The results go to ``RUN_DIR/eval/perplexity.json``, or ``perplexity-<data name>.json`` for other text.
    """

    def evaluate(run: Run) -> dict[str, Any]:
        source = run.val_store() if data is None else read_documents(data, text_field)
        results = evaluate_perplexity(
            run.model,
            source,
            run.tokenizer,
            lengths=lengths,
            train_length=run.train_length,
            max_spans=max_spans,
            seed=seed,
            batch_tokens=batch_tokens,
            progress=progress,
        )
        where = (
            {"data": "held-out split", "data_path": str(source.path)}
            if data is None
            else {"data": str(Path(data).resolve())}
        )
        return {**where, **results}

    return evaluate_run(run_dir, results_name(PERPLEXITY, data), evaluate, step=step, device=device, write=write)


def format_perplexity(results: dict[str, Any]) -> str:
    """A short text table of the per-length results, with the span set-up and any cross-document note."""
    train_length = results["train_length"]
    spans = results["spans"]
    lines = [
        f"{spans['count']} spans of {spans['span_tokens']} tokens from {spans['documents_used']} documents "
        f"(seed {spans['seed']}); training length {train_length}",
        f"{'length':>8} {'x':>5} {'windows':>8} {'loss':>8} {'perplexity':>12} {'bits/byte':>10} {'seconds':>8}",
    ]
    for record in results["results"]:
        bits = "-" if record["bits_per_byte"] is None else f"{record['bits_per_byte']:.4f}"
        lines.append(
            f"{record['length']:>8} {record['length'] / train_length:>5g} {record['windows']:>8} "
            f"{record['loss']:>8.4f} {record['perplexity']:>12.3f} {bits:>10} {record['seconds']:>8.1f}"
        )
    if spans["note"]:
        lines.append(f"note: {spans['note']}")
    return "\n".join(lines)
