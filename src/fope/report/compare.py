"""``compare_runs`` (``fope compare``): read results, aggregate, draw, write ``report.md`` and ``results.json``;
``write_report`` does the same from results already read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fope.report.load import (
    ReportError,
    RunResults,
    SectionBuilder,
    check_distinct_runs,
    check_run_dir,
    load_results,
    unique_run_dirs,
)
from fope.report.markdown import markdown_report
from fope.report.plots import draw_figures
from fope.report.stats import aggregate, settings_notes


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a path, or a ``ReportError`` when it (or a parent) exists and is not a folder."""
    path = Path(out_dir)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ReportError(f"report folder {path} cannot be made: {candidate} is a file, not a folder")
            break
    return path


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    data: str | Path | None = None,
    extra_sections: Sequence[SectionBuilder] = (),
) -> dict[str, Any]:
    """``report.md``, ``results.json`` and PNG figures in ``out_dir`` for runs grouped by label (seeds aggregate).

    Reads each run's results and computes nothing: run ``fope eval`` / ``fope passkey`` first (``fope compare`` does
    unless ``--no-evaluate``). A run without a result is shown as missing (``aggregate``); a run given twice is
    counted once, with a note; two folders that hold the same run (a copy: same seed and checkpoint) are an error
    (``check_distinct_runs``). Returns what ``results.json`` holds.
    """
    if not run_dirs:
        raise ReportError("compare_runs needs at least one run directory; got none")
    out_dir = check_out_dir(out_dir)
    unique, repeats = unique_run_dirs(run_dirs)
    for run_dir in unique:
        check_run_dir(run_dir)
    check_distinct_runs(unique)
    runs = [load_results(run_dir, data=data) for run_dir in unique]
    return write_report(runs, out_dir, title=title, data=data, extra_sections=extra_sections, notes=repeats)


def write_report(
    runs: Sequence[RunResults],
    out_dir: str | Path,
    *,
    title: str | None = None,
    data: str | Path | None = None,
    extra_sections: Sequence[SectionBuilder] = (),
    section_runs: Sequence[RunResults] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """``compare_runs`` on results already read (from run folders or a results folder); ``extra_sections`` get
    ``section_runs`` (default ``runs``: sections that load models need run folders) and are left out without any."""
    out_dir = check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = aggregate(runs)
    figures = draw_figures(groups, out_dir)
    section_runs = runs if section_runs is None else section_runs
    sections = [build(section_runs, out_dir) for build in extra_sections] if section_runs else []
    title = title or "Length generalization: " + ", ".join(groups)
    described = None if data is None else str(Path(data).resolve())
    notes = [*notes, *settings_notes(runs)]
    if extra_sections and len(section_runs) < len(runs):
        left_out = len(runs) - len(section_runs)
        notes.append(
            f"{left_out} run(s) come from stored results without a run folder: the extra sections leave them out"
        )
    if all(run.perplexity is None and run.passkey is None for run in runs):
        notes.append("no run has evaluation results yet: run `fope eval` and `fope passkey` on them first")
    (out_dir / "report.md").write_text(markdown_report(title, groups, figures, sections, described, notes))
    results = {
        "title": title,
        "data": described or "held-out split",
        "notes": notes,
        "groups": groups,
        "figures": figures + [name for section in sections for name in section.figures],
        "sections": {section.title: dict(section.results) for section in sections},
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results
