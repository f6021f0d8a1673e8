"""Reading a run's evaluation results for a report: what exists, what is stale, what is missing. Nothing is computed.

A report never runs an evaluation. ``load_results`` reads ``RUN_DIR/eval/*.json``; a missing result is None and listed
in ``RunResults.missing``, a stale one (computed on another checkpoint than the run's latest) is used with a note.
``pending_evaluations`` says which evaluations a run still needs, so that a caller (``fope compare``, a campaign) can
run them before reporting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fope.config import MAX_NAME_LENGTH
from fope.evaluate.results import (
    PASSKEY,
    PERPLEXITY,
    EvaluationRequest,
    mismatches,
    read_results,
    results_name,
    results_path,
)
from fope.report.checks import ReportError, check_run_results

__all__ = [
    "ReportError",
    "ReportSection",
    "RunResults",
    "SectionBuilder",
    "check_distinct_runs",
    "check_run_dir",
    "latest_step",
    "load_results",
    "pending_evaluations",
    "unique_run_dirs",
]


@dataclass
class RunResults:
    """One run's evaluation results (None where missing) and what the report must say about them.

    ``missing`` names the evaluations (``perplexity``, ``passkey``) that have no result file; ``notes`` says what is
    stale. ``stored``: read from a results folder (``fope.report.store``), where ``path`` is the run's file.
    """

    path: Path
    label: str
    summary: dict[str, Any]
    perplexity: dict[str, Any] | None
    passkey: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    data: str | None = None
    stored: bool = False

    def __post_init__(self) -> None:
        self.label = short_label(self.label)

    @property
    def seed(self) -> int | None:
        return self.summary.get("seed")

    def missing_note(self, evaluation: str) -> str:
        """What is missing, and the command that computes it."""
        if self.stored:
            return f"{self.path} holds no {evaluation} results; it is left out of the {evaluation} numbers"
        name = results_name(PERPLEXITY, self.data) if evaluation == PERPLEXITY else PASSKEY
        command = f"fope eval {self.path}" + (f" --data {self.data}" if self.data else "")
        if evaluation == PASSKEY:
            command = f"fope passkey {self.path}"
        return f"{self.path} has no eval/{name}.json (run `{command}`); it is left out of the {evaluation} numbers"


def short_label(label: str) -> str:
    """``label``, or when it is longer than a run's name may be (a long folder name, an old result), its start and a
    hash of the whole: tables, legends and file names stay short, and distinct labels stay distinct."""
    if len(label) <= MAX_NAME_LENGTH:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"{label[: MAX_NAME_LENGTH - 12]}...-{digest}"


@dataclass(frozen=True)
class ReportSection:
    """An extra part of a report: Markdown text, figure files inside the report folder, numbers for results.json."""

    title: str
    markdown: str
    figures: tuple[str, ...] = ()
    results: Mapping[str, Any] = field(default_factory=dict)


#: Builds an extra section from the loaded runs, drawing its figures into the given report folder.
SectionBuilder = Callable[[Sequence[RunResults], Path], ReportSection]


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a path, or a ``ReportError`` when it holds no run (no ``config.yaml``)."""
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise ReportError(f"{path} is not a run directory (no config.yaml)")
    return path


def unique_run_dirs(run_dirs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The run directories with repeats (same resolved path) dropped, and a note for each repeat.

    A run given twice would otherwise count as two seeds (n=2 with spread 0).
    """
    seen: dict[Path, Path] = {}
    notes = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        resolved = path.resolve()
        if resolved in seen:
            notes.append(f"{path} was given more than once (as {seen[resolved]}); it is counted once")
            continue
        seen[resolved] = path
    return list(seen.values()), notes


def check_distinct_runs(run_dirs: Sequence[Path]) -> None:
    """A ``ReportError`` naming two folders that hold the same run: the same seed and the same latest checkpoint
    (every file's sha256 in its ``meta.json``), as a copy (``cp -a``) does. They would count as two seeds of one
    configuration, with a spread of 0; runs without a checkpoint are not compared."""
    from fope.checkpoint import latest_checkpoint, read_checkpoint_meta

    seen: dict[tuple[Any, ...], Path] = {}
    for run_dir in run_dirs:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            continue
        files = read_checkpoint_meta(checkpoint, verify=False)["files"]
        seed = _run_config_summary(Path(run_dir))["seed"]
        key = (seed, tuple(sorted(files.items())))
        if key in seen and files:
            weights = files.get("model.safetensors") or next(iter(sorted(files.values())))
            raise ReportError(
                f"{seen[key]} and {run_dir} hold the same run (seed {seed}, checkpoint {checkpoint.name} with the "
                f"same files, weights sha256 {weights[:12]}): it would count as two seeds with a spread of 0; give "
                "one of them (a new seed is trained with --set train.seed=N)"
            )
        seen[key] = Path(run_dir)


def _run_config_summary(path: Path) -> dict[str, Any]:
    from fope.runs import read_run_config

    config = read_run_config(path)
    return {"path": str(path), "label": config.name or path.name, "seed": config.train.seed}


def latest_step(run_dir: str | Path) -> int:
    """The step of the run's latest checkpoint."""
    from fope.checkpoint import find_checkpoint, read_checkpoint_meta

    return int(read_checkpoint_meta(find_checkpoint(run_dir), verify=False)["step"])


def _read_results(run_dir: Path, name: str) -> dict[str, Any] | None:
    """``RUN_DIR/eval/<name>.json`` checked as a report reads it (``fope.report.checks``), None when absent."""
    try:
        results = read_results(run_dir, name)
    except (OSError, ValueError) as error:  # unreadable, or not JSON
        raise ReportError(f"cannot read {results_path(run_dir, name)}: {error}") from error
    if results is not None:
        check_run_results(results, name, results_path(run_dir, name))
    return results


def _current(results: dict[str, Any], latest: int) -> bool:
    """Whether ``results`` were computed on the run's latest checkpoint (``mismatches``). A report asks nothing else:
    it shows the settings a result holds, and a stale one is used with a note."""
    return not mismatches(results, EvaluationRequest(settings={"run.step": latest}))


def pending_evaluations(run_dir: str | Path, data: str | Path | None = None) -> list[str]:
    """The evaluations (``perplexity``, ``passkey``) whose results are missing or stale for the latest checkpoint."""
    path = check_run_dir(run_dir)
    latest = latest_step(path)
    pending = []
    for evaluation, name in ((PERPLEXITY, results_name(PERPLEXITY, data)), (PASSKEY, PASSKEY)):
        results = _read_results(path, name)
        if results is None or not _current(results, latest):
            pending.append(evaluation)
    return pending


def load_results(run_dir: str | Path, *, data: str | Path | None = None) -> RunResults:
    """A run's ``eval/perplexity.json`` (``perplexity-<data name>.json`` with ``data``) and ``eval/passkey.json``.

    Nothing is computed: a missing result is None and named in ``missing`` (the report then shows it as missing and
    says which command computes it), a stale one (another checkpoint than the run's latest) is used with a note.
    """
    path = check_run_dir(run_dir)
    latest = latest_step(path)
    notes: list[str] = []
    missing: list[str] = []

    def read(evaluation: str, name: str) -> dict[str, Any] | None:
        results = _read_results(path, name)
        if results is None:
            missing.append(evaluation)
        elif not _current(results, latest):
            notes.append(f"eval/{name}.json was computed at step {results['run']['step']}; the latest is {latest}")
        return results

    perplexity = read(PERPLEXITY, results_name(PERPLEXITY, data))
    passkey = read(PASSKEY, PASSKEY)
    summary = next((r["run"] for r in (perplexity, passkey) if r is not None), None) or _run_config_summary(path)
    described = None if data is None else str(data)
    return RunResults(path, summary["label"], summary, perplexity, passkey, notes, missing, described)
