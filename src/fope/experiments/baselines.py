"""``fope experiment baselines``: RoPE and FoPE next to the other ways to remove low frequencies, NoPE and ALiBi."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option
from fope.report.summaries import contrast_lines, groups_of, header, summary

NAME = "baselines"
ARMS = ("rope", "fope", "p-rope", "hope", "cope", "alibi", "nope")
SIZE_HELP = "model size (default tiny; paper scale 60m)"
#: The arms compared with FoPE, each as "<arm> vs fope".
AGAINST_FOPE = ("rope", "p-rope", "hope", "cope", "alibi")


@dataclass(frozen=True)
class Options:
    size: str | None = option(SIZE_HELP)
    encodings: tuple[str, ...] | None = option(f"arms (default {','.join(ARMS)})")


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """RoPE and FoPE next to p-RoPE (lowest 25% of frequencies dropped), HoPE-style clipping (= HardClip of the
    frequencies below the floor), CoPE's soft clipping of the same band, NoPE and ALiBi."""
    size = settings.size(options.size)
    arms = tuple(options.encodings or ARMS)
    runs = [make_run(settings, size, arm, seed) for seed in settings.seeds for arm in arms]
    labels = {arm: settings.label(size, arm) for arm in arms}
    title = "Position encodings that remove low frequencies, and baselines"
    report = Report("report", title, names(runs), contrasts=pairs(labels))
    root = out / NAME
    record = {"size": size, "encodings": list(arms)}
    campaign = settings.campaign(NAME, out, runs, [report])
    summarize_plan = functools.partial(summarize, root=root, labels=labels)
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan)


def pairs(labels: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    """Each baseline against FoPE, then CoPE's claim: its soft clip against the hard cut of the same band (HoPE)."""
    fope = labels.get("fope")
    against = tuple((fope, labels[arm], f"{arm} vs fope") for arm in AGAINST_FOPE if fope and arm in labels)
    if "hope" in labels and "cope" in labels:
        against += ((labels["hope"], labels["cope"], "cope vs hope (soft vs hard clip of the band below the floor)"),)
    return against


def summarize(results: Mapping[str, Any], *, root: Path, labels: Mapping[str, str]) -> str:
    """The report's key table, then each baseline against FoPE."""
    groups = groups_of(results["report"])
    body = header("baselines", results["report"], root / "report")
    if "nope" in labels:
        body += ["NoPE trains slowly at small budgets: read its in-length (1x) perplexity before its flat ratio.", ""]
    body += contrast_lines(groups, pairs(labels))
    return summary("Related baselines", body)
