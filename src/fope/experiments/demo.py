"""``fope demo``: train tiny models that differ only in position encoding, evaluate them past their training length,
and write the report: the two questions of the paper, perplexity and passkey retrieval against length.

RoPE, FoPE and ALiBi (NoPE and the other tiny presets with ``--encodings``) train ``STEPS`` steps with the retrieval
settings of ``fope experiment retrieval`` (``ROWS`` of the training rows end with a passkey example, FoPE's sigma
``SIGMA``), so that every arm has learned retrieval in-length by the end and its accuracy past the training length
means something (docs/retrieval.md has the measurements behind these numbers). Runs are ordinary run directories
(``OUT/runs/<encoding>-demo-s<seed>``) that ``fope eval``, ``fope passkey`` and ``fope compare`` accept. The report
goes to ``OUT/report``, the summary to ``OUT/summary.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.errors import CampaignError
from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, make_run, names, option, retrieval_values
from fope.presets import preset_names
from fope.report import key_table
from fope.report.summaries import contrast_lines, learned_lines

NAME = "demo"
ENCODINGS = ("rope", "fope", "alibi")
#: Steps per run: enough for every arm to learn retrieval in-length on 3 seeds (docs/retrieval.md); ``make demo`` takes
#: 14.0 minutes on a 2-core machine, 16.1 on one with a 40% slower step (docs/benchmarks.md section 6).
STEPS = 700
#: Share of training rows that end with a passkey example, and FoPE's sigma: the retrieval recipe's (docs/retrieval.md).
ROWS = 0.75
SIGMA = 0.1
#: The demo's questions: (encoding a, encoding b, what), b against a.
CONTRASTS = (("rope", "fope", "FoPE vs RoPE"), ("fope", "alibi", "ALiBi vs FoPE"), ("rope", "nope", "NoPE vs RoPE"))
#: The settings the demo takes (at tiny scale), and its own defaults and help for them.
SETTINGS = ("seeds", "steps", "quick", "jobs", "results")
#: Workers: the three runs at once, one thread each. On 2 cores three workers trained 2.34 steps/s together, where two
#: trained 2.48 but left a core idle while the third run trained alone (docs/benchmarks.md section 6).
JOBS = 3
DEFAULTS = {"seeds": (0,), "steps": STEPS, "jobs": JOBS}
HELP = {
    "seeds": "comma-separated seeds (default 0)",
    "steps": f"training steps per run (default {STEPS}, quick 60)",
    "quick": "a smoke run of a few minutes (few steps and trials)",
    "jobs": f"parallel workers, one thread each (default {JOBS}; quick 2)",
}


@dataclass(frozen=True)
class Options:
    encodings: tuple[str, ...] | None = option(
        f"comma-separated tiny presets (default {','.join(ENCODINGS)}; also nope, fope-no-fs, fope-no-cf, hope, p-rope)"
    )


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """One run per (encoding, seed) from the tiny presets, one report with attention statistics."""
    encodings = tuple(options.encodings or ENCODINGS)
    available = [name.removeprefix("tiny/") for name in preset_names("tiny")]
    missing = [name for name in encodings if name not in available]
    if missing:
        raise CampaignError(f"no tiny preset for {missing}; available: {available}")
    runs = [
        make_run(settings, "tiny", arm, seed, label=f"{arm}-{NAME}", values=retrieval_values(arm, ROWS, SIGMA))
        for seed in settings.seeds
        for arm in encodings
    ]
    title = "fope demo: length generalization of tiny models" + (" (quick)" if settings.quick else "")
    contrasts = tuple(
        (f"{a}-{NAME}", f"{b}-{NAME}", what) for a, b, what in CONTRASTS if a in encodings and b in encodings
    )
    report = Report("report", title, names(runs), attention=True, contrasts=contrasts)
    record = {"encodings": list(encodings), "rows": ROWS, "sigma": SIGMA}
    campaign = settings.campaign(NAME, out, runs, [report])
    summarize_plan = functools.partial(summarize, title=title, root=out, contrasts=contrasts)
    return Plan(NAME, out, out, settings, record, campaign, summarize_plan)


def summarize(
    results: Mapping[str, Any], *, title: str, root: Path, contrasts: tuple[tuple[str, str, str], ...] = ()
) -> str:
    """The report's key table, the contrasts at the longest and the training length, and whether each encoding
    learned retrieval in-length (the mean over seeds against ``LEARNED``)."""
    report = results["report"]
    lines = [f"# {title}", "", "```", key_table(report), "```", ""]
    verdicts = contrast_lines(report["groups"], contrasts)
    if verdicts:
        lines += ["Perplexity (log-perplexity difference, its standard error, verdict):", "", *verdicts, ""]
    learned = learned_lines(report)
    if learned:
        lines += ["Passkey retrieval at the training length (mean over seeds):", "", *learned, ""]
    return "\n".join([*lines, f"report: {root / 'report' / 'report.md'}"]) + "\n"
