"""``fope demo``: train tiny models that differ only in position encoding, evaluate them past their training length,
and write the report.

Runs are ordinary run directories (``OUT/runs/<encoding>-s<seed>``) that ``fope eval``, ``fope passkey`` and
``fope compare`` accept, the same runs (names and configs) as the recipes' at tiny scale, so an experiment pointed at
a demo folder reuses them. The report goes to ``OUT/report``, the summary to ``OUT/summary.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option
from fope.presets import preset_names
from fope.report import key_table

NAME = "demo"
ENCODINGS = ("rope", "fope", "alibi", "nope")
#: The demo's questions: (encoding a, encoding b, what), b against a.
CONTRASTS = (("rope", "fope", "FoPE vs RoPE"), ("fope", "alibi", "ALiBi vs FoPE"), ("rope", "nope", "NoPE vs RoPE"))
#: The settings the demo takes (at tiny scale), and its own defaults and help for them.
SETTINGS = ("seeds", "steps", "quick", "jobs")
DEFAULTS = {"seeds": (0,)}
HELP = {
    "seeds": "comma-separated seeds (default 0)",
    "steps": "training steps per run (default 600, quick 60)",
    "quick": "a smoke run of a few minutes (few steps and trials)",
    "jobs": "parallel workers (default: 2, one thread each)",
}


@dataclass(frozen=True)
class Options:
    encodings: tuple[str, ...] | None = option(
        f"comma-separated tiny presets (default {','.join(ENCODINGS)}; also fope-no-fs, fope-no-cf, hope, p-rope)"
    )


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """One run per (encoding, seed) from the tiny presets, one report with attention statistics."""
    encodings = tuple(options.encodings or ENCODINGS)
    available = [name.removeprefix("tiny/") for name in preset_names("tiny")]
    missing = [name for name in encodings if name not in available]
    if missing:
        raise ValueError(f"no tiny preset for {missing}; available: {available}")
    runs = [make_run(settings, "tiny", encoding, seed) for seed in settings.seeds for encoding in encodings]
    title = "fope demo: length generalization of tiny models" + (" (quick)" if settings.quick else "")
    contrasts = tuple(pair for pair in CONTRASTS if pair[0] in encodings and pair[1] in encodings)
    report = Report("report", title, names(runs), attention=True, contrasts=contrasts)
    record = {"encodings": list(encodings)}
    campaign = settings.campaign(runs, [report])
    summarize_plan = functools.partial(summarize, title=title, root=out)
    return Plan(NAME, out, out, settings, record, campaign, summarize_plan)


def summarize(results: Mapping[str, Any], *, title: str, root: Path) -> str:
    """The report's key table."""
    return f"# {title}\n\n```\n{key_table(results['report'])}\n```\n\nreport: {root / 'report' / 'report.md'}\n"
