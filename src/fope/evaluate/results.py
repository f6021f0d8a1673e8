"""Where evaluation results live: ``RUN_DIR/eval/<name>.json``, each with a summary of the run it describes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fope.runs import Run

EVAL_DIR = "eval"
PERPLEXITY = "perplexity"
PASSKEY = "passkey"


def results_name(kind: str, data: str | Path | None = None) -> str:
    """``perplexity`` for the run's held-out split, ``perplexity-<data name>`` for other text (file or folder)."""
    if data is None:
        return kind
    stem = Path(data).name.split(".")[0] or "data"
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_-]+', '_', stem)}"


def results_path(run_dir: str | Path, name: str) -> Path:
    """``RUN_DIR/eval/<name>.json``."""
    return Path(run_dir) / EVAL_DIR / f"{name}.json"


def write_results(run_dir: str | Path, name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` as ``RUN_DIR/eval/<name>.json`` (atomically: a reader never sees half a file)."""
    path = results_path(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(temporary, path)
    return path


def read_results(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The results stored as ``RUN_DIR/eval/<name>.json``, or None when there are none."""
    path = results_path(run_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None


def run_summary(run: Run) -> dict[str, Any]:
    """What a result needs to say about its run: where, which checkpoint, the model and the seed."""
    model = run.model.config
    return {
        "path": str(run.path.resolve()),
        "label": run.label,
        "step": run.step,
        "checkpoint": run.checkpoint.name,
        "seed": run.config.train.seed,
        "position": model.position,
        "position_options": dict(model.position_options),
        "train_length": model.train_length,
        "d_model": model.d_model,
        "num_layers": model.num_layers,
        "num_heads": model.num_heads,
        "head_dim": model.head_size,
        "vocab_size": model.vocab_size,
        "parameters": run.model.num_parameters(),
        "data_source": run.config.data.source,
        "passkey_fraction": run.config.data.passkey_fraction,
        "batch_size": run.config.train.batch_size,
        "max_steps": run.config.train.max_steps,
    }


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
