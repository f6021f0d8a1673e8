"""What every recipe shares: ``Settings`` (scale, seeds, length, evaluation budget, workers, ``--set``), the runs built
from the presets, and ``Plan``: a recipe made concrete (its campaign, where it writes, how it summarises).

A run of arm ``A`` at size ``S`` and seed ``N`` is named ``<label>-s<N>`` and its config is, merged in this order: the
preset (``tiny/A``, or ``paper/S`` with ``A``'s position encoding), the size's model changes, its name, what every run
of the scale shares (at tiny scale exactly the demo's, so demo runs are reused), the user's ``--set``, and last what
the recipe varies (which wins).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fope.checks import check_seed
from fope.config import ConfigError, apply_overrides, load_config
from fope.errors import CampaignError
from fope.executor import Executor, LocalExecutor
from fope.experiments.campaign import Campaign, PlannedRun, Report, format_plan, run_campaign
from fope.experiments.stored import from_store, stored_states
from fope.files import write_atomic
from fope.presets import merge, preset_data, preset_names

SCALES = ("tiny", "paper")
#: Model sizes at tiny scale: changes of the tiny presets ("small" keeps head_dim 32 and the layer count).
TINY_SIZES: dict[str, dict[str, Any]] = {"tiny": {}, "small": {"model": {"d_model": 256, "num_heads": 8}}}
#: Model sizes at paper scale: the presets ``paper/<size>``.
PAPER_SIZES = ("60m", "180m", "1.2b")
#: Keys the recipes set themselves; ``--set`` may not change them (use the recipe's options).
PROTECTED_KEYS = frozenset({"name", "model.position", "model.position_options", "train.seed", "train.max_steps"})
#: Position encodings without rotary frequencies (no ``theta``).
NON_ROTARY = frozenset({"alibi", "nope"})
#: Share of training rows that end with a passkey example in tiny-scale runs: tiny models do not retrieve zero-shot.
#: With the compact prompt and keys of distinct digits, half the rows teach retrieval in-length within a few hundred
#: steps (docs/retrieval.md has the learning curves and the settings that did not learn).
TINY_PASSKEY_FRACTION = 0.5
#: Steps between a tiny run's checkpoints: a campaign stopped mid-run (a session that ends, a killed job) resumes from
#: the last one and loses at most these steps. Where the checkpoints fall changes nothing in a run that is not stopped.
CHECKPOINT_EVERY = 500


def local_gpu_slots(gpus_per_run: int) -> int:
    """How many runs of ``gpus_per_run`` GPUs this machine trains at once (1 without GPUs, or for CPU runs)."""
    import torch

    return max(1, torch.cuda.device_count() // gpus_per_run) if gpus_per_run else 1


def option(help: str, **metadata: Any) -> Any:
    """A field of an options dataclass: default None (the recipe's default), ``help`` for its ``--flag``."""
    return field(default=None, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class Settings:
    """What every recipe shares. None means the default of the scale, filled in when the settings are made."""

    scale: str = field(default="tiny", metadata={"help": "tiny CPU presets or the paper presets", "choices": SCALES})
    seeds: tuple[int, ...] | None = option("comma-separated seeds (default 0,1,2; quick 0)")
    steps: int | None = option("steps per run (default 600, quick 60; paper: the preset's)")
    quick: bool = field(default=False, metadata={"help": "a smoke run: one seed, 60 steps, few spans and trials"})
    jobs: int | None = option(
        "parallel local workers (default 2 at tiny scale; paper: as many runs as this machine's GPUs hold)"
    )
    max_spans: int | None = option("perplexity spans per length (default 24; quick 4; paper 32)")
    passkey_trials: int | None = option("passkey trials per length (default 100; quick 4; 0: none)")
    gpus_per_run: int | None = option(
        "GPUs each run asks for; more than 1: torchrun over that many processes (default 0 at tiny scale: CPU; paper 1)"
    )
    results: str | None = option(
        "results folder: each run's evaluations are stored there as JSON when they finish, and a run whose stored "
        "results match is neither trained nor evaluated (default OUT/results; docs/results in a checkout to commit "
        "them for fope report)",
        metavar="DIR",
    )
    overrides: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--set",
            "metavar": "KEY=VALUE",
            "help": "override a config value of every run, e.g. --set data.source=books/ (repeatable)",
        },
    )

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise CampaignError(f"scale must be one of {list(SCALES)}; got {self.scale!r}")
        seeds = tuple(self.seeds) if self.seeds else ((0,) if self.quick else (0, 1, 2))
        if len(set(seeds)) != len(seeds) or any(seed < 0 for seed in seeds):
            raise CampaignError(f"seeds must be distinct integers >= 0; got {list(seeds)}")
        for seed in seeds:  # each becomes a run's train.seed
            check_seed("--seeds: each seed", seed)
        for name in ("steps", "jobs", "max_spans"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CampaignError(f"{name} must be >= 1; got {value}")
        if self.gpus_per_run is not None and self.gpus_per_run < 0:
            raise CampaignError(f"gpus_per_run must be >= 0 (0: a CPU run); got {self.gpus_per_run}")
        if self.passkey_trials is not None and self.passkey_trials < 0:
            raise CampaignError(f"passkey_trials must be >= 0 (0: no passkey evaluation); got {self.passkey_trials}")
        for item in self.overrides:
            if "=" not in item:
                raise CampaignError(f"--set expects key=value; got {item!r}")
        protected = sorted(self.override_keys & PROTECTED_KEYS)
        if protected:
            raise CampaignError(
                f"--set {protected[0]} is set by the recipe for each run (use --seeds, --steps and the recipe's "
                "options)"
            )
        tiny, quick = self.scale == "tiny", self.quick
        gpus = self.gpus_per_run if self.gpus_per_run is not None else (0 if tiny else 1)
        filled = {
            "gpus_per_run": gpus,
            "seeds": seeds,
            "steps": self.steps or ((60 if quick else 600) if tiny else (60 if quick else None)),
            "max_spans": self.max_spans or (4 if quick else 24 if tiny else 32),
            "passkey_trials": self.passkey_trials if self.passkey_trials is not None else (4 if quick else 100),
            "jobs": self.jobs or (max(1, min(2, os.cpu_count() or 1)) if tiny else local_gpu_slots(gpus)),
            "overrides": tuple(self.overrides),
        }
        for name, value in filled.items():
            object.__setattr__(self, name, value)

    @property
    def override_keys(self) -> set[str]:
        """The keys ``--set`` changes (``data.source`` of ``data.source=books/``)."""
        return {item.split("=", 1)[0].strip() for item in self.overrides}

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(TINY_SIZES) if self.scale == "tiny" else PAPER_SIZES

    def size(self, size: str | None) -> str:
        """``size`` checked against the scale's sizes (default: the first)."""
        size = size or self.sizes[0]
        if size not in self.sizes:
            raise CampaignError(f"size {size!r} is not a {self.scale}-scale size; choose from {list(self.sizes)}")
        return size

    def suffix(self, size: str) -> str:
        """Nothing at the demo's size (the tiny presets' own names), else ``-<size>``."""
        return "" if self.scale == "tiny" and size == "tiny" else f"-{size}"

    def label(self, size: str, arm: str) -> str:
        return arm + self.suffix(size)

    def common(self, seed: int) -> dict[str, Any]:
        """What every run of a recipe gets (at tiny scale exactly the demo's, so demo runs are reused)."""
        if self.scale == "paper":
            return {"train": {"seed": seed} | ({} if self.steps is None else {"max_steps": self.steps})}
        steps = self.steps
        every = min(steps, CHECKPOINT_EVERY)
        train = {"max_steps": steps, "seed": seed, "threads": 1, "checkpoint_every": every, "eval_every": steps}
        return {"train": train, "data": {"passkey_fraction": TINY_PASSKEY_FRACTION}}

    def campaign(
        self, name: str, out: Path, runs: list[PlannedRun], reports: list[Report], passkey: bool = True
    ) -> Campaign:
        """Recipe ``name``'s campaign into ``out``, its results stored in ``results`` (default ``OUT/results``); no
        passkey evaluation when ``passkey`` is False or ``passkey_trials`` is 0."""
        trials = self.passkey_trials if passkey and self.passkey_trials > 0 else None
        results = out / "results" if self.results is None else Path(self.results)
        return Campaign(
            tuple(runs), tuple(reports), self.max_spans, trials, self.jobs, self.gpus_per_run, results, name
        )


def tiny_arm(arm: str) -> dict[str, Any]:
    """The tiny preset ``arm``'s mapping, with a clear error for an unknown arm."""
    if f"tiny/{arm}" not in preset_names("tiny"):
        available = [name.removeprefix("tiny/") for name in preset_names("tiny")]
        raise CampaignError(f"no tiny preset {arm!r}; available: {available}")
    return preset_data(f"tiny/{arm}")


def retrieval_values(arm: str, rows: float, sigma: float) -> dict[str, Any]:
    """What the retrieval settings set in tiny arm ``arm``'s config: ``rows`` (the share of training rows that end with
    a passkey example), and FoPE's ``sigma`` where the preset has one (the demo and ``fope experiment retrieval``)."""
    values: dict[str, Any] = {"data": {"passkey_fraction": rows}}
    options = tiny_arm(arm)["model"].get("position_options") or {}
    if "sigma" in options:
        values["model"] = {"position_options": {**options, "sigma": sigma}}  # options mappings replace (merge)
    return values


def arm_position(settings: Settings, size: str, arm: str) -> tuple[str, dict[str, Any]]:
    """The position encoding and options of tiny preset ``arm``; at paper scale rotary arms take the size preset's
    ``theta`` and FoPE arms its ``sigma`` (0.3 / 0.4 / 0.6 at 60M / 180M / 1.2B)."""
    model = tiny_arm(arm)["model"]
    position, options = model["position"], dict(model.get("position_options") or {})
    if settings.scale == "paper":
        paper = preset_data(f"paper/{size}")["model"].get("position_options") or {}
        if position not in NON_ROTARY and "theta" in paper:
            options["theta"] = paper["theta"]
        if "sigma" in options and "sigma" in paper:
            options["sigma"] = paper["sigma"]
    return position, options


def make_run(
    settings: Settings,
    size: str,
    arm: str,
    seed: int,
    *,
    label: str | None = None,
    values: Mapping[str, Any] | None = None,
    after: tuple[str, ...] = (),
) -> PlannedRun:
    """A run of preset ``arm``'s position encoding at ``size``, named ``<label>-s<seed>`` (the module's docstring
    gives the order its config is merged in; ``values``: nested sections, what the recipe varies)."""
    label = label or settings.label(size, arm)
    if settings.scale == "tiny":
        preset, data = f"tiny/{arm}", merge(tiny_arm(arm), TINY_SIZES[size])
        sized = {f"model.{key}" for key in TINY_SIZES[size].get("model", {})}
        clashes = sorted(settings.override_keys & sized)
        if clashes:
            raise CampaignError(f"--set {clashes} would override what size {size!r} sets")
    else:
        position, options = arm_position(settings, size, arm)
        preset = f"paper/{size}"
        data = merge(preset_data(preset), {"model": {"position": position, "position_options": options}})
    data = merge(data, {"name": label, **settings.common(seed)})
    name = f"{label}-s{seed}"
    try:
        config = load_config(base=merge(apply_overrides(data, settings.overrides), values or {}))
    except ConfigError as error:
        raise CampaignError(f"run {name!r}: {error}") from error
    return PlannedRun(name, config, preset, after)


def names(runs: list[PlannedRun]) -> tuple[str, ...]:
    return tuple(run.name for run in runs)


@dataclass(frozen=True)
class Plan:
    """A recipe made concrete: its campaign, where its reports go (``root``), what it resolved (``options``, recorded
    in ``experiment.json``), how it summarises the reports' results, notes for the dry run, and ``prepare``: work
    before the campaign (returns a line to log)."""

    experiment: str
    out: Path
    root: Path
    settings: Settings
    options: Mapping[str, Any]
    campaign: Campaign
    summarize: Callable[[Mapping[str, Any]], str]
    notes: tuple[str, ...] = ()
    prepare: Callable[[], str] | None = None

    @property
    def command(self) -> str:
        return "fope demo" if self.experiment == "demo" else f"fope experiment {self.experiment}"


def format_experiment(plan: Plan) -> str:
    """The dry run of a recipe: settings, runs with their status, configs and commands, reports, notes."""
    settings = plan.settings
    head = (
        f"{plan.command} ({settings.scale} scale{', quick' if settings.quick else ''}): "
        f"seeds {list(settings.seeds)}, options {json.dumps(dict(plan.options))}"
    )
    evaluation = f"evaluation: perplexity at 1x..16x with {settings.max_spans} spans per length"
    if plan.campaign.passkey_trials is not None:
        evaluation += f", passkey with {plan.campaign.passkey_trials} trials per length"
    lines = [head, evaluation, *plan.notes, "", format_plan(plan.campaign, plan.out)]
    return "\n".join([*lines, f"  (reports and summary in {plan.root})"])


def prepare_unless_stored(plan: Plan) -> str:
    """``plan.prepare()`` (e.g. exporting evaluation text), unless every run of the plan comes from stored results;
    the line to log."""
    stored = from_store(plan.campaign, stored_states(plan.campaign, plan.out))
    if len(stored) == len(plan.campaign.runs) or plan.prepare is None:
        return "every run comes from stored results: nothing to prepare"
    return plan.prepare()


def run_plan(plan: Plan, log: Callable[[str], None] = print, executor: Executor | None = None) -> dict[str, Any]:
    """Train and evaluate on ``executor`` (default: ``settings.jobs`` local workers), report and summarise; writes
    ``summary.md`` and ``experiment.json`` to ``plan.root``. Returns the reports' results and the summary text."""
    started = time.perf_counter()
    settings = plan.settings
    steps = "the preset's" if settings.steps is None else str(settings.steps)
    executor = executor or LocalExecutor(settings.jobs)
    log(
        f"{plan.command}: {len(plan.campaign.runs)} runs ({settings.scale} scale, seeds {list(settings.seeds)}, "
        f"{steps} steps), {executor.description}; runs in {plan.out / 'runs'}"
    )
    if plan.prepare is not None:
        log(prepare_unless_stored(plan))
    results = run_campaign(plan.campaign, plan.out, plan.root, log, executor)
    summary = plan.summarize(results)
    minutes = (time.perf_counter() - started) / 60
    plan.root.mkdir(parents=True, exist_ok=True)
    write_atomic(plan.root / "summary.md", summary)
    record = {
        "experiment": plan.experiment,
        "settings": asdict(settings),
        "options": dict(plan.options),
        "runs": list(names(list(plan.campaign.runs))),
        "reports": [report.folder for report in plan.campaign.reports],
        "minutes": minutes,
    }
    write_atomic(plan.root / "experiment.json", json.dumps(record, indent=2) + "\n")
    log("")
    log(summary)
    log(f"summary: {plan.root / 'summary.md'}  ({minutes:.1f} min)")
    return {"results": results, "summary": summary}
