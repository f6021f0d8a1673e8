"""``compare_runs`` (``fope compare``): read results, aggregate, draw, write ``report.md`` and ``results.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fope.report.load import ReportError, SectionBuilder, check_run_dir, load_results, unique_run_dirs
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
    counted once, with a note. Returns what ``results.json`` holds.
    """
    if not run_dirs:
        raise ReportError("compare_runs needs at least one run directory; got none")
    out_dir = check_out_dir(out_dir)
    unique, repeats = unique_run_dirs(run_dirs)
    for run_dir in unique:
        check_run_dir(run_dir)
    runs = [load_results(run_dir, data=data) for run_dir in unique]
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = aggregate(runs)
    figures = draw_figures(groups, out_dir)
    sections = [build(runs, out_dir) for build in extra_sections]
    title = title or "Length generalization: " + ", ".join(groups)
    described = None if data is None else str(Path(data).resolve())
    notes = repeats + settings_notes(runs)
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
