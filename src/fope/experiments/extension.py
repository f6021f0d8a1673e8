"""``fope experiment extension``: continued pre-training from L to 2L, {RoPE, FoPE} start x {YaRN, FoPE} extension,
and FoPE from FoPE with the authors' coefficient expansion, the same tokens for each."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.experiments.baselines import SIZE_HELP
from fope.experiments.campaign import Report
from fope.experiments.common import Plan, Settings, arm_position, make_run, names, option
from fope.report.summaries import contrast_lines, groups_of, header, summary

NAME = "extension"
STARTS = ("rope", "fope")
METHODS = ("yarn", "fope")
#: FoPE from the FoPE start a second way: the authors' coefficient expansion (``train.init_positions=expand``: the
#: start's coefficients are kept where the shapes overlap) instead of fresh coefficients at 2L.
EXPAND = "fope-expand"


@dataclass(frozen=True)
class Options:
    size: str | None = option(SIZE_HELP)
    extension_steps: int | None = option("steps at 2L (default: a quarter of --steps; paper 1000)")
    yarn_factor: float | None = option("YaRN scale factor (default 2; paper scale 16, the authors')")


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """Continued pre-training from L to 2L: {RoPE, FoPE} start x {YaRN, FoPE} extension, the same tokens for each.

    The start runs are the ordinary RoPE / FoPE runs (reused when they exist). Defaults: a quarter of the start's
    steps at tiny scale (at 2L, so half its tokens) with YaRN factor 2; 1000 steps (~1B tokens at the paper
    preset's batch) with the authors' YaRN factor 16 at paper scale. Warmup is a tenth of the extension.
    """
    size = settings.size(options.size)
    starts = {(arm, seed): make_run(settings, size, arm, seed) for seed in settings.seeds for arm in STARTS}
    base = next(iter(starts.values())).config
    length = base.train.seq_len
    steps = options.extension_steps
    if steps is None:
        steps = max(1, base.train.max_steps // 4) if settings.scale == "tiny" else 1000
    factor = options.yarn_factor or (2.0 if settings.scale == "tiny" else 16.0)
    methods = {
        "yarn": {**arm_position(settings, size, "rope")[1], "factor": factor, "original_max_position": length},
        "fope": arm_position(settings, size, "fope")[1],
    }
    train = {"seq_len": 2 * length, "max_steps": steps}
    if settings.scale == "tiny":
        train |= {"checkpoint_every": steps, "eval_every": steps}
    runs, arms = list(starts.values()), {}
    for seed in settings.seeds:
        for start in STARTS:
            source = starts[start, seed]
            continuations = [*methods] + ([EXPAND] if start == "fope" else [])  # RoPE has no coefficients to keep
            for method in continuations:
                label = arms[start, method] = f"{start}-to-{method}{settings.suffix(size)}"
                position = "fope" if method == EXPAND else method
                expand = {"init_positions": "expand"} if method == EXPAND else {}
                values = {
                    "train": {"init_from": str((out / "runs" / source.name).resolve()), **train, **expand},
                    "model": {"position": position, "position_options": methods[position]},
                    "optim": {"warmup_steps": max(1, steps // 10)},
                }
                runs.append(make_run(settings, size, start, seed, label=label, values=values, after=(source.name,)))
    tokens = steps * base.train.batch_size * 2 * length
    budget = (
        f"Every arm: {steps} steps x {base.train.batch_size} sequences x {2 * length} tokens = {tokens:,} "
        f"tokens from the start run at {length}; YaRN factor {factor:g} (original length {length}), FoPE at "
        f"train_length {2 * length}. Lengths below are multiples of the new length {2 * length}."
    )
    title = f"Continued pre-training from {length} to {2 * length}"
    report = Report("report", title, names([run for run in runs if run.after]), contrasts=pairs(arms))
    root = out / NAME
    record = {"size": size, "extension_steps": steps, "yarn_factor": factor, "train_length": length}
    campaign = settings.campaign(NAME, out, runs, [report])
    summarize_plan = functools.partial(summarize, root=root, arms=arms, budget=budget)
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan, (budget,))


def pairs(arms: Mapping[tuple[str, str], str]) -> tuple[tuple[str, str, str], ...]:
    """YaRN against FoPE from each start, RoPE against FoPE starts for each method, fresh against expanded
    coefficients from the FoPE start."""
    found = [(arms[start, "yarn"], arms[start, "fope"], f"extension from {start} (YaRN vs FoPE)") for start in STARTS]
    found += [(arms["rope", m], arms["fope", m], f"start with {m} extension (RoPE vs FoPE)") for m in METHODS]
    if ("fope", EXPAND) in arms:
        found.append((arms["fope", "fope"], arms["fope", EXPAND], "FoPE from fope: fresh vs expanded coefficients"))
    return tuple(found)


def summarize(results: Mapping[str, Any], *, root: Path, arms: Mapping[tuple[str, str], str], budget: str) -> str:
    """The token budget, then YaRN against FoPE from each start and RoPE against FoPE starts for each method."""
    groups = groups_of(results["report"])
    body = header("continued pre-training at 2L", results["report"], root / "report")
    body += [budget, "", *contrast_lines(groups, pairs(arms))]
    return summary("Context extension (continued pre-training)", body)
