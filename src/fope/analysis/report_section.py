"""Attention past the training length as a ``fope compare`` section (``--attention``).

For every run: attention entropy and attention mass beyond the training length at 1x..16x the training length, on
the same held-out windows; configurations (labels) are averaged over their runs; one comparison figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fope.analysis.attention import context_behaviour
from fope.analysis.pipeline import compare_behaviour, token_windows
from fope.evaluate.chunks import LENGTH_MULTIPLES


def _average(behaviours: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over runs of the per-context means (the runs of one configuration)."""
    keys = ("entropy", "normalized_entropy", "mass_beyond_train_length")
    return {
        "train_length": behaviours[0]["train_length"],
        "multiples": behaviours[0]["multiples"],
        "n": len(behaviours),
        **{key: np.mean([b[key] for b in behaviours], axis=0).tolist() for key in keys},
    }


def attention_section(
    runs: Sequence[Any],
    out_dir: Path,
    *,
    sequences: int = 2,
    multiples: Sequence[int] = LENGTH_MULTIPLES,
    seed: int = 0,
) -> Any:
    """A ``ReportSection`` comparing attention entropy and mass beyond L by context length across configurations."""
    from fope.report import ReportSection, render_table
    from fope.runs import load_run

    per_label: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, dict[str, Any]] = {}
    for result in runs:
        run = load_run(result.path)
        train_length = run.train_length
        windows = token_windows(run.val_store(), max(multiples) * train_length, sequences, seed)
        with torch.inference_mode():
            behaviour = context_behaviour(run.model, windows, train_length=train_length, multiples=multiples)
        name = f"{result.label} ({result.path.name})"
        raw[name] = behaviour
        per_label.setdefault(result.label, []).append(compare_behaviour({name: behaviour})[name])
    figure = "attention-context.png"
    compare_behaviour(raw, out_dir / figure)
    averaged = {label: _average(values) for label, values in per_label.items()}
    header = ["configuration", "n", *(f"{m}x" for m in multiples)]

    def table(key: str) -> str:
        rows = [[label, str(a["n"]), *(f"{v:.3f}" for v in a[key])] for label, a in averaged.items()]
        return render_table(header, rows)

    lines = [
        "Mean over layers and heads, on the same held-out windows for every run, averaged over a configuration's runs.",
        "Normalized entropy is entropy / ln(number of keys): 1 is uniform attention. Mass beyond L is the share of",
        "attention on keys more than the training length away.",
        "",
        "**Normalized attention entropy**",
        "",
        table("normalized_entropy"),
        "",
        "**Attention mass beyond the training length**",
        "",
        table("mass_beyond_train_length"),
    ]
    return ReportSection("Attention past the training length", "\n".join(lines), (figure,), {"by_label": averaged})
