"""``fope experiment baselines``: RoPE and FoPE next to the other ways to remove low frequencies, NoPE and ALiBi."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option
from fope.experiments.summaries import contrast_lines, groups_of, header, summary

NAME = "baselines"
ARMS = ("rope", "fope", "p-rope", "hope", "cope", "alibi", "nope")
SIZE_HELP = "model size (default tiny; paper scale 60m)"


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
    report = Report("report", "Position encodings that remove low frequencies, and baselines", names(runs))
    root = out / NAME
    record = {"size": size, "encodings": list(arms)}
    campaign = settings.campaign(runs, [report])
    summarize_plan = functools.partial(summarize, root=root, labels={arm: settings.label(size, arm) for arm in arms})
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan)


def summarize(results: Mapping[str, Any], *, root: Path, labels: Mapping[str, str]) -> str:
    """The report's key table, then each baseline against FoPE."""
    groups = groups_of(results["report"])
    body = header("baselines", results["report"], root / "report")
    if "nope" in labels:
        body += ["NoPE trains slowly at small budgets: read its in-length (1x) perplexity before its flat ratio.", ""]
    fope = labels.get("fope")
    body += contrast_lines(
        groups, [(fope, labels.get(arm), f"{arm} vs fope") for arm in ("rope", "p-rope", "hope", "cope", "alibi")]
    )
    return summary("Related baselines", body)
