"""``fope experiment ablation``: RoPE, FoPE and its ablations (no Fourier series, no floor clipping in two forms)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option
from fope.report import contrast
from fope.report.summaries import contrast_lines, groups_of, header, lengths, summary

NAME = "ablation"
ARMS = ("rope", "fope", "fope-no-fs", "fope-no-cf", "fope-no-cf-square")
#: The ablation's questions: (baseline arm, arm without the part, what is removed).
CONTRASTS = (
    ("fope", "fope-no-fs", "Fourier series (FoPE vs clipping only)"),
    ("fope", "fope-no-cf", "floor clipping (FoPE vs no clipping)"),
    ("fope", "fope-no-cf-square", "floor clipping (FoPE vs no clipping, every pair rotating)"),
    ("rope", "fope-no-fs", "clipping alone (RoPE vs clipping only)"),
    ("rope", "fope", "FoPE as a whole (RoPE vs FoPE)"),
)


def pairs(labels: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    """``CONTRASTS`` between the labels of one size's arms (those of arms it runs)."""
    return tuple((labels[a], labels[b], what) for a, b, what in CONTRASTS if a in labels and b in labels)


@dataclass(frozen=True)
class Options:
    sizes: tuple[str, ...] | None = option("comma-separated model sizes: tiny,small (paper scale: 60m,180m,1.2b)")
    encodings: tuple[str, ...] | None = option(f"arms (default {','.join(ARMS)})")


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """RoPE, FoPE and its ablations (no Fourier series, no floor clipping in two forms), per seed and size."""
    sizes = tuple(settings.size(size) for size in (options.sizes or settings.sizes[:1]))
    arms = tuple(options.encodings or ARMS)
    runs, reports, labels = [], [], {}
    for size in sizes:
        sized = [make_run(settings, size, arm, seed) for seed in settings.seeds for arm in arms]
        runs += sized
        labels[size] = {arm: settings.label(size, arm) for arm in arms}
        title = f"Ablation of FoPE's parts, size {size}"
        reports.append(Report(f"report-{size}", title, names(sized), contrasts=pairs(labels[size])))
    root = out / NAME
    record = {"sizes": list(sizes), "encodings": list(arms)}
    campaign = settings.campaign(NAME, out, runs, reports)
    summarize_plan = functools.partial(summarize, root=root, sizes=labels)
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan)


def summarize(results: Mapping[str, Any], *, root: Path, sizes: Mapping[str, Mapping[str, str]]) -> str:
    """Per size: the contrasts, then which part does the work (without it minus with it, at the longest length)."""
    body, answers = [], []
    for size, labels in sizes.items():
        folder = f"report-{size}"
        groups = groups_of(results[folder])
        body += header(f"size {size}", results[folder], root / folder)
        body += [*contrast_lines(groups, pairs(labels)), ""]
        _, longest = lengths(groups)
        for a, b, what in CONTRASTS[:2]:  # the two parts: the Fourier series, the floor clipping
            if a not in labels or b not in labels or longest is None:
                continue
            result = contrast(groups, labels[a], labels[b], longest)
            if result is not None:
                error = result["standard_error"]
                spread = f" ± {error:.3f}" if error is not None else ""
                difference = f"{result['log_perplexity_difference']:+.3f}{spread}"
                answers.append(
                    f"- without the {what.split(' (')[0]}, size {size}: log-ppl {difference}: {result['verdict']}"
                )
    if answers:
        title = "## Which part does the work? (log-perplexity without it minus with it, at the longest length)"
        body += [title, "", *answers, ""]
    return summary("Ablation of FoPE's parts", body)
