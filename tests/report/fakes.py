"""Evaluation results as the evaluators write them, made from a few numbers (no model), and stored run files."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fope.report.store import evaluation_entry, run_record, write_json

TRAIN_LENGTH = 32
#: What every fake stored perplexity / passkey evaluation was computed with.
PERPLEXITY_SETTINGS = {"data": None, "max_spans": 24}
PASSKEY_SETTINGS = {"trials": 100}


def perplexity_result(losses: Mapping[int, float], train_length: int = TRAIN_LENGTH, seed: int = 0) -> dict:
    """``fope eval``'s output: ``losses`` by length, buckets of ``train_length`` positions at that loss."""
    records = [
        {
            "length": length,
            "windows": 2,
            "tokens": 2 * length,
            "bytes": 8 * length,
            "loss": loss,
            "perplexity": math.exp(loss),
            "bits_per_byte": loss / 4,
            "seconds": 0.5,
            "position_buckets": [
                {"start": start, "end": start + train_length, "tokens": 2 * train_length, "loss": loss}
                for start in range(0, length, train_length)
            ],
        }
        for length, loss in sorted(losses.items())
    ]
    return {
        "run": {"path": "/elsewhere/runs/x", "label": "x", "seed": seed, "step": 8},
        "evaluation": "perplexity",
        "data": "held-out split",
        "data_path": "/elsewhere/data/val",
        "train_length": train_length,
        "lengths": sorted(losses),
        "bucket_tokens": train_length,
        "spans": {
            "count": 2,
            "span_tokens": max(losses) + 1,
            "max_spans": 24,
            "seed": 0,
            "documents": 4,
            "eligible_documents": 4,
            "documents_used": 2,
            "cross_document": False,
            "note": None,
        },
        "bytes_counted_by": "tokenizer",
        "device": "cpu",
        "results": records,
    }


def passkey_result(accuracy: Mapping[int, float], train_length: int = TRAIN_LENGTH, trials: int = 100) -> dict:
    """``fope passkey``'s output with ``accuracy`` by length, a 2-bin depth grid and the per-trial dump."""
    lengths = sorted(accuracy)
    return {
        "evaluation": "passkey",
        "train_length": train_length,
        "lengths": lengths,
        "trials_per_length": trials,
        "seed": 0,
        "max_new_tokens": 10,
        "min_prompt_tokens": 20,
        "device": "cpu",
        "by_length": [
            {"length": n, "trials": trials, "accuracy": accuracy[n], "mean_tokens": n - 1.0, "seconds": 1.0}
            for n in lengths
        ],
        "depth_bins": [[0.0, 0.5], [0.5, 1.0]],
        "grid_lengths": lengths,
        "grid_accuracy": [[accuracy[n] for n in lengths], [accuracy[n] for n in lengths]],
        "grid_trials": [[trials // 2] * len(lengths)] * 2,
        "trials": [{"length": n, "key": 12345, "correct": True, "filler_chars": 900} for n in lengths] * trials,
    }


def summary(label: str, seed: int, position: str = "rope") -> dict:
    """A run summary as ``run_summary`` gives it (the path is dropped when stored)."""
    return {
        "path": f"/elsewhere/runs/{label}-s{seed}",
        "label": label,
        "step": 8,
        "checkpoint": "step_0000008",
        "seed": seed,
        "position": position,
        "position_options": {},
        "train_length": TRAIN_LENGTH,
        "d_model": 32,
        "num_layers": 2,
        "num_heads": 2,
        "head_dim": 16,
        "max_steps": 8,
    }


def stored_run(
    root: Path,
    name: str,
    label: str,
    seed: int,
    losses: Mapping[int, float],
    *,
    accuracy: Mapping[int, float] | None = None,
    config: Mapping[str, Any] | None = None,
    out: Path = Path("/nowhere"),
) -> dict:
    """Write ``RESULTS/runs/<name>.json`` with a perplexity (and passkey) evaluation; returns the record."""
    evaluations = {"perplexity": evaluation_entry(perplexity_result(losses, seed=seed), PERPLEXITY_SETTINGS, out)}
    if accuracy is not None:
        evaluations["passkey"] = evaluation_entry(passkey_result(accuracy), PASSKEY_SETTINGS, out)
    record = run_record(name, config or {"name": label, "train": {"seed": seed}}, summary(label, seed), evaluations)
    write_json(root / "runs" / f"{name}.json", record)
    return record
