"""Where evaluation results live: ``RUN_DIR/eval/<name>.json``, each with a summary of the run it describes.

Results merge by length: evaluating some lengths again (``fope eval RUN --lengths 1024``, ``fope passkey RUN --lengths
1024``) adds or updates those lengths and keeps the others, as long as the stored results describe the same
checkpoint and settings: for perplexity the same data and span draw (``merge_by_length``), for passkey and retrieval
the same task, trials, seed and answer length (``merge_trials``); results of another checkpoint or settings are
replaced.

Whether a stored result answers an evaluation someone asks for is decided in one place, ``mismatches``: a merge here,
a campaign deciding what is left to compute (``fope.experiments.campaign``) or what its results folder already holds
(``fope.experiments.stored``), and a report noting a stale result (``fope.report.load``) each describe what they ask
as an ``EvaluationRequest``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fope.checks import check_folder
from fope.files import write_atomic

if TYPE_CHECKING:
    from fope.runs import Run

EVAL_DIR = "eval"
PERPLEXITY = "perplexity"
PASSKEY = "passkey"
RETRIEVAL = "retrieval"
#: Characters of a data name in a results file name (``perplexity-<name>.json``); longer names are cut and hashed.
MAX_STEM = 200


def results_name(kind: str, data: str | Path | None = None) -> str:
    """``perplexity`` for the run's held-out split, ``perplexity-<data name>`` for other text (file or folder), the
    name cut to ``MAX_STEM`` characters and a hash when longer."""
    if data is None:
        return kind
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(data).name.split(".")[0] or "data")
    if len(stem) > MAX_STEM:  # keep the file name (and its temporary) under 255 bytes; distinct names stay distinct
        stem = f"{stem[: MAX_STEM - 9]}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"
    return f"{kind}-{stem}"


def retrieval_name(task: str) -> str:
    """``retrieval-<task>``: the results of ``fope retrieval --task <task>`` (``fope.data.retrieval.TASK_NAMES``)."""
    return f"{RETRIEVAL}-{task}"


def check_eval_folder(run_dir: str | Path) -> Path:
    """``RUN_DIR/eval``, where results are written, checked to be a folder (or makeable) before any work."""
    return check_folder("eval/ (where the results are written)", Path(run_dir) / EVAL_DIR)


def results_path(run_dir: str | Path, name: str) -> Path:
    """``RUN_DIR/eval/<name>.json``."""
    return Path(run_dir) / EVAL_DIR / f"{name}.json"


#: Where a result names its checkpoint: the step and the checkpoint folder's name (``run_summary``).
CHECKPOINT_SETTINGS = ("run.step", "run.checkpoint")


@dataclass(frozen=True)
class PerplexitySettings:
    """What changes a perplexity result's numbers at every length (``evaluate_perplexity``): the text (None: the run's
    held-out split), the training length and loss-bucket size, and the span draw."""

    data: str | None
    train_length: int
    bucket_tokens: int
    max_spans: int
    seed: int

    #: Where each setting sits in a result (dotted: ``spans.seed`` is ``result["spans"]["seed"]``).
    KEYS: ClassVar[dict[str, str]] = {
        "data": "data",
        "train_length": "train_length",
        "bucket_tokens": "bucket_tokens",
        "max_spans": "spans.max_spans",
        "seed": "spans.seed",
    }


@dataclass(frozen=True)
class TrialSettings:
    """What decides a passkey or retrieval result's answers at every length (``evaluate_retrieval``): the task, the
    training length, the trials per length and their seed, the answer budget and the depth bins (``[start, end]``
    pairs, as JSON holds them)."""

    task: str
    train_length: int
    trials_per_length: int
    seed: int
    max_new_tokens: int
    depth_bins: list[list[float]]

    KEYS: ClassVar[dict[str, str]] = {
        name: name for name in ("task", "train_length", "trials_per_length", "seed", "max_new_tokens", "depth_bins")
    }


#: Each evaluation's settings: two results of one checkpoint that agree on them answer the same question, so their
#: lengths merge.
SETTINGS: dict[str, type[PerplexitySettings] | type[TrialSettings]] = {
    PERPLEXITY: PerplexitySettings,
    PASSKEY: TrialSettings,
    RETRIEVAL: TrialSettings,
}


def settings_of(result: Mapping[str, Any]) -> PerplexitySettings | TrialSettings | None:
    """``result``'s settings (None for a value it lacks), or None for an evaluation without ``SETTINGS``."""
    kind = SETTINGS.get(result.get("evaluation"))
    if kind is None:
        return None
    return kind(**{name: setting(result, key) for name, key in kind.KEYS.items()})


def asked(settings: PerplexitySettings | TrialSettings) -> dict[str, Any]:
    """``settings`` as a request asks them: dotted key in the result -> value."""
    return {key: getattr(settings, name) for name, key in settings.KEYS.items()}


@dataclass(frozen=True)
class EvaluationRequest:
    """What a caller asks of a stored result (``mismatches``); what it leaves out is not asked.

    ``evaluation``: the evaluator (``perplexity``, ``passkey``, ``retrieval``), None when the caller knows it from where
    it read the result. ``settings``: dotted key -> the value the result must hold there (a missing key holds None);
    the checkpoint is asked as ``run.step`` (and ``run.checkpoint``) where it applies. ``lengths``: lengths the result
    must hold, but for those shorter than its ``min_prompt_tokens`` (an evaluator never asks a prompt that cannot fit).
    """

    evaluation: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    lengths: Collection[int] = ()


def setting(result: Mapping[str, Any], key: str) -> Any:
    """``result``'s value at dotted ``key`` (``spans.seed``), None where there is none."""
    value: Any = result
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def request_of(result: Mapping[str, Any]) -> EvaluationRequest:
    """The request ``result`` answers exactly: its evaluation, checkpoint and settings (``settings_of``)."""
    settings = settings_of(result)
    checkpoint = {key: setting(result, key) for key in CHECKPOINT_SETTINGS}
    return EvaluationRequest(result.get("evaluation"), {**checkpoint, **({} if settings is None else asked(settings))})


def mismatches(result: Mapping[str, Any], request: EvaluationRequest) -> list[str]:
    """Where ``result`` does not answer ``request``, one ``key: X there, Y here`` (or ``lengths: [...] missing``) per
    difference; empty when it does. The one rule for "is this the same evaluation?"."""
    found = []
    if request.evaluation is not None and result.get("evaluation") != request.evaluation:
        found.append(f"evaluation: {result.get('evaluation')!r} there, {request.evaluation!r} here")
    for key, value in request.settings.items():
        if setting(result, key) != value:
            found.append(f"{key}: {setting(result, key)!r} there, {value!r} here")
    if request.lengths:
        shortest = result.get("min_prompt_tokens") or 0
        missing = sorted(set(n for n in request.lengths if n >= shortest) - set(result.get("lengths") or ()))
        if missing:
            found.append(f"lengths: {missing} missing")
    return found


def merge_by_length(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s perplexity records, plus ``old``'s at the lengths ``new`` did not evaluate.

    Only when both describe the same evaluation (checkpoint, data, training length, span count and seed); otherwise
    ``new`` alone. The merged result lists every length; ``spans`` is ``new``'s (cross-document flag and notes of
    both), and ``merged`` records, for the lengths kept from earlier evaluations, the spans they were read from
    (spans are ``max(lengths) + 1`` tokens, so an evaluation of other lengths may read other windows).
    """
    if old is None or new.get("evaluation") != PERPLEXITY or mismatches(old, request_of(new)):
        return new
    if not isinstance(old.get("spans"), dict) or not isinstance(old.get("results"), list):
        return new
    evaluated = {record["length"] for record in new["results"]}
    kept = [record for record in old["results"] if record["length"] not in evaluated]
    if not kept:
        return new
    earlier = []
    covered: set[int] = set()
    for entry in old.get("merged", []):
        lengths = [length for length in entry["lengths"] if length not in evaluated]
        covered.update(entry["lengths"])
        if lengths:
            earlier.append({**entry, "lengths": lengths})
    own = [record["length"] for record in kept if record["length"] not in covered]
    if own:
        earlier.append({"lengths": own, "spans": old["spans"]})
    notes = [note for note in (old["spans"].get("note"), new["spans"].get("note")) if note]
    spans = {
        **new["spans"],
        "cross_document": bool(old["spans"].get("cross_document") or new["spans"].get("cross_document")),
        "note": "; ".join(dict.fromkeys(notes)) or None,
    }
    records = sorted([*kept, *new["results"]], key=lambda record: record["length"])
    return {
        **new,
        "lengths": [record["length"] for record in records],
        "spans": spans,
        "results": records,
        "merged": sorted(earlier, key=lambda entry: entry["lengths"][0]),
    }


def merge_trials(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s passkey or retrieval results, plus ``old``'s at the lengths ``new`` did not evaluate.

    Only when both describe the same evaluation (checkpoint, task, training length, trials, seed, answer tokens, depth
    bins); otherwise ``new`` alone. Trial ``t`` asks the same question at every length, so the merged file is what
    one evaluation of all the lengths gives: per-length rows, depth x length grid columns and trials of each length
    come from the evaluation that last ran it.
    """
    if old is None or new.get("evaluation") not in (PASSKEY, RETRIEVAL) or mismatches(old, request_of(new)):
        return new
    if not all(isinstance(old.get(key), list) for key in ("by_length", "trials", "grid_lengths", "grid_accuracy")):
        return new
    evaluated = {row["length"] for row in new["by_length"]}
    if not {row["length"] for row in old["by_length"]} - evaluated:
        return new
    rows = sorted(
        [row for row in old["by_length"] if row["length"] not in evaluated] + new["by_length"],
        key=lambda row: row["length"],
    )
    lengths = [row["length"] for row in rows]
    trials = [trial for trial in old["trials"] if trial["target_tokens"] not in evaluated] + new["trials"]
    columns = {length: (old, index) for index, length in enumerate(old["grid_lengths"])}
    columns |= {length: (new, index) for index, length in enumerate(new["grid_lengths"])}
    grids = {
        key: [[columns[length][0][key][row][columns[length][1]] for length in lengths] for row in range(len(new[key]))]
        for key in ("grid_accuracy", "grid_trials")
    }
    return {
        **new,
        "lengths": lengths,
        "by_length": rows,
        "grid_lengths": lengths,
        **grids,
        "trials": sorted(trials, key=lambda trial: trial["target_tokens"]),  # stable: trial order within a length
    }


#: How results of each evaluation merge with those already stored under the same name.
_MERGES: dict[str, Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]] = {
    PERPLEXITY: merge_by_length,
    PASSKEY: merge_trials,
    RETRIEVAL: merge_trials,
}


def write_results(run_dir: str | Path, name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` as ``RUN_DIR/eval/<name>.json`` (atomically: a reader never sees half a file).

    Results are merged by length with what the file holds (``merge_by_length``, ``merge_trials``).
    """
    merge = _MERGES.get(results.get("evaluation"))
    if merge is not None:
        # an unreadable file is replaced, never a reason to lose the new results
        results = merge(readable_results(run_dir, name), results)
    return write_atomic(results_path(run_dir, name), json.dumps(results, indent=1) + "\n")


def read_results(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The results stored as ``RUN_DIR/eval/<name>.json``, or None when there are none."""
    path = results_path(run_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None


def readable_results(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    """``read_results``, or None also when the file does not read as a JSON mapping (cut short, garbage): what needs
    it then computes the evaluation again, and ``write_results`` replaces the file."""
    try:
        results = read_results(run_dir, name)
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def evaluate_run(
    run_dir: str | Path,
    name: str,
    evaluate: Callable[[Run], dict[str, Any]],
    *,
    step: int | None = None,
    device: str = "auto",
    write: bool = True,
) -> dict[str, Any]:
    """``evaluate(run)`` on the run at ``run_dir`` (checkpoint ``step``, default the latest, on ``device``) after the
    run's summary (``run_summary``); written as ``RUN_DIR/eval/<name>.json`` when ``write``."""
    from fope.device import resolve_device
    from fope.runs import load_run

    if write:  # before the work, not after it
        check_eval_folder(run_dir)
    run = load_run(run_dir, step=step, device=resolve_device(device))
    results = {"run": run_summary(run), **evaluate(run)}
    if write:
        write_results(run.path, name, results)
    return results


def evaluate_run_model(
    run_dir: str | Path,
    name: str,
    evaluate_model: Callable[..., dict[str, Any]],
    *,
    step: int | None = None,
    device: str = "auto",
    write: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """``evaluate_run`` of ``evaluate_model(model, tokenizer, train_length=, **options)`` with the run's model,
    tokenizer and training length."""

    def evaluate(run: Run) -> dict[str, Any]:
        return evaluate_model(run.model, run.tokenizer, train_length=run.train_length, **options)

    return evaluate_run(run_dir, name, evaluate, step=step, device=device, write=write)


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
        "retrieval_tasks": list(run.config.data.retrieval_tasks),
        "batch_size": run.config.train.batch_size,
        "max_steps": run.config.train.max_steps,
    }
