"""The paper's experiments as one-command recipes (``fope experiment NAME``), at tiny scale on a CPU or at the
paper's scale on GPUs.

Each recipe is a campaign (``fope.campaign``): a list of runs that differ only where the experiment says, trained
``jobs`` at a time, evaluated, compared in ``fope compare`` reports, and summarised with the spread over seeds of every
number a conclusion rests on. Runs live in ``OUT/runs/<label>-s<seed>``, shared by every recipe and with ``fope demo``
(a run with the same name and settings is trained once); each recipe writes its reports, ``summary.md`` and
``experiment.json`` to ``OUT/<recipe>/``.

- ``ablation``: RoPE, FoPE, FoPE without the Fourier series, FoPE without the floor clipping (two forms), per size.
- ``sweep``: FoPE's sigma, output dimension and number of kept frequencies; head_dim vs heads vs layers at one budget.
- ``extension``: continued pre-training from L to 2L, {RoPE, FoPE} start x {YaRN, FoPE} extension, equal tokens.
- ``cross-domain``: train on some sources of the corpus, evaluate on other text.
- ``baselines``: RoPE, FoPE and the other ways to remove low frequencies (p-RoPE, HoPE-style), NoPE, ALiBi.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fope.campaign import (
    TINY_PASSKEY_FRACTION,
    Campaign,
    ReportSpec,
    RunSpec,
    assignment,
    format_plan,
    non_embedding_parameters,
    planned_model,
    run_campaign,
)
from fope.config import RunConfig, load_yaml
from fope.evaluate.results import PERPLEXITY, results_name
from fope.report import by_length, contrast, format_contrast, key_table, passkey_spreads, spread_text, text_table

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SCALES = ("tiny", "paper")
#: Model sizes at tiny scale: overrides of the tiny presets ("small" keeps head_dim 32 and the layer count).
TINY_SIZES: dict[str, dict[str, Any]] = {"tiny": {}, "small": {"model.d_model": 256, "model.num_heads": 8}}
#: Model sizes at paper scale: the presets ``configs/paper/<size>.yaml``.
PAPER_SIZES = ("60m", "180m", "1.2b")
ABLATION_ARMS = ("rope", "fope", "fope-no-fs", "fope-no-cf", "fope-no-cf-square")
BASELINE_ARMS = ("rope", "fope", "p-rope", "hope", "alibi", "nope")
CROSS_DOMAIN_ARMS = ("rope", "fope", "alibi")
SWEEPS = ("sigma", "output_dim", "num_inv_freq", "shape")
SIGMAS = (0.0, 0.1, 0.3, 0.5)
EXTENSION_STARTS = ("rope", "fope")
EXTENSION_METHODS = ("yarn", "fope")
#: Keys the recipes set themselves; ``--set`` may not change them (use the recipe's options).
PROTECTED_KEYS = frozenset({"name", "model.position", "model.position_options", "train.seed", "train.max_steps"})
#: Position encodings without rotary frequencies (no ``theta``).
NON_ROTARY = frozenset({"alibi", "nope"})


@dataclass(frozen=True)
class Settings:
    """What every recipe shares: scale, seeds, run length, evaluation budget, workers, overrides of every run."""

    scale: str
    seeds: tuple[int, ...]
    steps: int | None
    max_spans: int
    passkey_trials: int
    jobs: int
    quick: bool
    overrides: tuple[str, ...] = ()
    gpus: int = 1

    @classmethod
    def make(
        cls,
        *,
        scale: str = "tiny",
        seeds: Sequence[int] | None = None,
        steps: int | None = None,
        quick: bool = False,
        jobs: int | None = None,
        overrides: Sequence[str] = (),
        max_spans: int | None = None,
        passkey_trials: int | None = None,
        gpus: int = 1,
    ) -> Settings:
        """Defaults: 3 seeds; tiny scale 600 steps (as the demo), 24 spans, 20 passkey trials, 2 workers; paper
        scale the preset's steps, 32 spans, 100 trials, one job at a time. ``quick``: one seed, 60 steps, 4 spans and
        4 trials."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}; got {scale!r}")
        seeds = tuple(seeds) if seeds else ((0,) if quick else (0, 1, 2))
        if len(set(seeds)) != len(seeds) or any(seed < 0 for seed in seeds):
            raise ValueError(f"seeds must be distinct integers >= 0; got {list(seeds)}")
        for name, value in (("steps", steps), ("jobs", jobs), ("max_spans", max_spans), ("gpus", gpus)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        if passkey_trials is not None and passkey_trials < 0:
            raise ValueError(f"passkey_trials must be >= 0 (0: no passkey evaluation); got {passkey_trials}")
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if "=" not in item:
                raise ValueError(f"--set expects key=value; got {item!r}")
            if key in PROTECTED_KEYS:
                raise ValueError(
                    f"--set {key} is set by the recipe for each run (use --seeds, --steps and the recipe's options)"
                )
        tiny = scale == "tiny"
        return cls(
            scale=scale,
            seeds=seeds,
            steps=steps or ((60 if quick else 600) if tiny else (60 if quick else None)),
            max_spans=max_spans or (4 if quick else 24 if tiny else 32),
            passkey_trials=passkey_trials if passkey_trials is not None else (4 if quick else 20 if tiny else 100),
            jobs=jobs or (max(1, min(2, os.cpu_count() or 1)) if tiny else 1),
            quick=quick,
            overrides=tuple(overrides),
            gpus=gpus,
        )

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(TINY_SIZES) if self.scale == "tiny" else PAPER_SIZES

    def check_size(self, size: str) -> str:
        if size not in self.sizes:
            raise ValueError(f"size {size!r} is not a {self.scale}-scale size; choose from {list(self.sizes)}")
        return size

    @property
    def launcher(self) -> tuple[str, ...]:
        """``fope train`` on one process, or ``torchrun`` over ``gpus`` processes."""
        if self.gpus == 1:
            return ()
        return (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.gpus), "-m", "fope")

    def campaign(self, specs: Sequence[RunSpec], reports: Sequence[ReportSpec], passkey: bool = True) -> Campaign:
        """The recipe's campaign; no passkey evaluation when ``passkey`` is False or ``passkey_trials`` is 0."""
        trials = self.passkey_trials if passkey and self.passkey_trials > 0 else None
        return Campaign(tuple(specs), tuple(reports), self.max_spans, trials, self.jobs, self.launcher)


@dataclass(frozen=True)
class ExperimentPlan:
    """A recipe made concrete: its campaign, where it writes, its options, and how to summarise its reports."""

    experiment: str
    out: Path
    settings: Settings
    options: Mapping[str, Any]
    campaign: Campaign
    summarize: Callable[[Mapping[str, Any]], str]
    notes: tuple[str, ...] = ()
    export: tuple[str, Path] | None = None

    @property
    def root(self) -> Path:
        """Where the recipe's reports and summary go: ``OUT/<experiment>``."""
        return self.out / self.experiment


# ------------------------------------------------------------------ runs


def _preset(name: str) -> dict[str, Any]:
    path = CONFIGS / "tiny" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (CONFIGS / "tiny").glob("*.yaml"))
        raise ValueError(f"no tiny preset {name!r} in {CONFIGS / 'tiny'}; available: {available}")
    return load_yaml(path)


def _suffix(settings: Settings, size: str) -> str:
    """Nothing at the demo's size (the tiny presets' own names), else ``-<size>``."""
    return "" if settings.scale == "tiny" and size == "tiny" else f"-{size}"


def _label(settings: Settings, size: str, arm: str) -> str:
    return arm + _suffix(settings, size)


def _common(settings: Settings, seed: int) -> dict[str, Any]:
    """Overrides every run of a recipe gets (at tiny scale exactly the demo's, so demo runs are reused)."""
    if settings.scale == "paper":
        return {"train.seed": seed} | ({} if settings.steps is None else {"train.max_steps": settings.steps})
    steps = settings.steps
    return {
        "train.max_steps": steps,
        "train.seed": seed,
        "train.threads": 1,
        "train.checkpoint_every": steps,
        "train.eval_every": steps,
        "data.passkey_fraction": TINY_PASSKEY_FRACTION,
    }


def arm_position(settings: Settings, size: str, arm: str) -> tuple[str, dict[str, Any]]:
    """The position encoding and options of tiny preset ``arm``; at paper scale rotary arms take the size preset's
    ``theta`` and FoPE arms its ``sigma`` (0.3 / 0.4 / 0.6 at 60M / 180M / 1.2B)."""
    model = _preset(arm)["model"]
    position, options = model["position"], dict(model.get("position_options") or {})
    if settings.scale == "paper":
        paper = load_yaml(CONFIGS / "paper" / f"{size}.yaml")["model"].get("position_options") or {}
        if position not in NON_ROTARY and "theta" in paper:
            options["theta"] = paper["theta"]
        if "sigma" in options and "sigma" in paper:
            options["sigma"] = paper["sigma"]
    return position, options


def run_spec(
    settings: Settings,
    size: str,
    arm: str,
    seed: int,
    *,
    label: str | None = None,
    values: Mapping[str, Any] | None = None,
    after: tuple[str, ...] = (),
) -> RunSpec:
    """A run of preset ``arm``'s position encoding at ``size``, named ``<label>-s<seed>``.

    Overrides in order: the size's, the arm's position (paper scale; tiny-scale runs start from the preset file
    itself), ``name``, the common ones, the user's ``--set``, then ``values`` (what the recipe varies, which wins).
    """
    label = label or _label(settings, size, arm)
    items: dict[str, Any] = {}
    if settings.scale == "tiny":
        config = CONFIGS / "tiny" / f"{arm}.yaml"
        _preset(arm)  # a clear error for an unknown arm
        items |= TINY_SIZES[size]
        clashes = sorted({item.split("=", 1)[0].strip() for item in settings.overrides} & set(TINY_SIZES[size]))
        if clashes:
            raise ValueError(f"--set {clashes} would override what size {size!r} sets")
    else:
        config = CONFIGS / "paper" / f"{size}.yaml"
        position, options = arm_position(settings, size, arm)
        items |= {"model.position": position, "model.position_options": options}
    if label != load_yaml(config).get("name"):
        items["name"] = label
    items |= _common(settings, seed)
    overrides = [assignment(key, value) for key, value in items.items()]
    overrides += [*settings.overrides, *(assignment(key, value) for key, value in (values or {}).items())]
    return RunSpec(f"{label}-s{seed}", config, tuple(overrides), after)


# ------------------------------------------------------------------ summaries


def _groups(results: Mapping[str, Any]) -> dict[str, Any]:
    return results["groups"]


def _lengths(groups: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The training length and the longest evaluated length of a report's groups."""
    numbers = [group["perplexity"] for group in groups.values() if group["perplexity"]]
    if not numbers:
        return None, None
    train = min(numbers[0]["train_lengths"])
    return train, max(row["length"] for n in numbers for row in n["by_length"])


def _contrast_lines(groups: Mapping[str, Any], pairs: Sequence[tuple[str, str, str]]) -> list[str]:
    """One line per ``(a, b, what)``: b against a at the longest length, then at the training length."""
    train, longest = _lengths(groups)
    lines = []
    for a, b, what in pairs:
        if a in groups and b in groups and longest is not None:
            lines.append("- " + format_contrast(contrast(groups, a, b, longest), what))
            lines.append("  " + format_contrast(contrast(groups, a, b, train), "in-length"))
    return lines


def _header(title: str, results: Mapping[str, Any], folder: Path) -> list[str]:
    return [f"## {title}", "", f"report: {folder / 'report.md'}", "", "```", key_table(results), "```", ""]


SPREAD_NOTE = (
    "Cells are mean ± sample std over seeds (n runs). Contrasts compare mean log-perplexity (nats/token); ± is the "
    "standard error of the difference, sqrt(s_a²/n_a + s_b²/n_b); a difference within 2 standard errors is no "
    "evidence either way. Where both sides share two or more seeds, the difference paired by seed follows, with the "
    "standard error of the per-seed differences, s_d/sqrt(k)."
)


def _summary(title: str, body: list[str]) -> str:
    return "\n".join([f"# {title}", "", SPREAD_NOTE, "", *body]).rstrip() + "\n"


#: The ablation's questions: (baseline arm, arm without the part, what is removed).
ABLATION_CONTRASTS = (
    ("fope", "fope-no-fs", "Fourier series (FoPE vs clipping only)"),
    ("fope", "fope-no-cf", "floor clipping (FoPE vs no clipping)"),
    ("fope", "fope-no-cf-square", "floor clipping (FoPE vs no clipping, every pair rotating)"),
    ("rope", "fope-no-fs", "clipping alone (RoPE vs clipping only)"),
)


def _ablation_summary(results: Mapping[str, Any], *, root: Path, sizes: Mapping[str, Mapping[str, str]]) -> str:
    body, answers = [], []
    for size, labels in sizes.items():
        folder = f"report-{size}"
        groups = _groups(results[folder])
        body += _header(f"size {size}", results[folder], root / folder)
        pairs = [(labels[a], labels[b], what) for a, b, what in ABLATION_CONTRASTS if a in labels and b in labels]
        body += [*_contrast_lines(groups, pairs), ""]
        _, longest = _lengths(groups)
        for a, b, what in ABLATION_CONTRASTS[:2]:  # the two parts: the Fourier series, the floor clipping
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
    return _summary("Ablation of FoPE's parts", body)


def _sweep_table(groups: Mapping[str, Any], rows: Sequence[tuple[str, str, str]]) -> str:
    """Rows ``(value, label, extra)`` in order: n, perplexity at 1x and at the longest length, ratio, passkey."""
    train, longest = _lengths(groups)
    table = []
    for value, label, extra in rows:
        group = groups.get(label)
        if group is None:
            continue
        short, long = by_length(group, train), by_length(group, longest)
        row = {"value": value, "configuration": label, "n": str(group["n"])}
        if extra:
            row["shape (non-emb params)"] = extra
        row["ppl 1x"] = spread_text(short["perplexity"]) if short else "-"
        row[f"ppl {longest // train}x"] = spread_text(long["perplexity"]) if long else "-"
        row[f"ratio {longest // train}x"] = spread_text(long["ratio"], 2) if long else "-"
        row["passkey > L"] = spread_text(passkey_spreads(group)[1], 0, 100, "%")
        table.append(row)
    return text_table(table)


def _best_line(groups: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    """The lowest mean perplexity at the longest length, against the runner-up."""
    _, longest = _lengths(groups)
    scored = []
    for label in labels:
        row = by_length(groups[label], longest) if label in groups else None
        if row is not None:
            scored.append((row["loss"]["mean"], label))
    if len(scored) < 2:
        return []
    (_, best), (_, second) = sorted(scored)[:2]
    return ["- lowest at the longest length: " + format_contrast(contrast(groups, best, second, longest), best)]


def _sweep_summary(
    results: Mapping[str, Any], *, root: Path, dimensions: Mapping[str, Sequence[tuple[str, str, str]]]
) -> str:
    body = []
    for dimension, rows in dimensions.items():
        folder = f"report-{dimension}"
        groups = _groups(results[folder])
        body += [f"## {dimension}", "", f"report: {root / folder / 'report.md'}", "", "```"]
        body += [_sweep_table(groups, rows), "```", ""]
        body += [*_best_line(groups, [label for _, label, _ in rows]), ""]
    return _summary("FoPE sweeps", body)


def _extension_summary(
    results: Mapping[str, Any], *, root: Path, arms: Mapping[tuple[str, str], str], budget: str
) -> str:
    groups = _groups(results["report"])
    body = _header("continued pre-training at 2L", results["report"], root / "report")
    body += [budget, ""]
    pairs = []
    for start in EXTENSION_STARTS:
        pairs.append((arms[start, "yarn"], arms[start, "fope"], f"extension from {start} (YaRN vs FoPE)"))
    for method in EXTENSION_METHODS:
        pairs.append((arms["rope", method], arms["fope", method], f"start with {method} extension (RoPE vs FoPE)"))
    body += _contrast_lines(groups, pairs)
    return _summary("Context extension (continued pre-training)", body)


def _ranking(groups: Mapping[str, Any], length: int | None) -> list[str]:
    scored = []
    for label, group in groups.items():
        row = by_length(group, length) if length is not None else None
        if row is not None:
            scored.append((row["perplexity"]["mean"], label))
    return [label for _, label in sorted(scored)]


def _cross_domain_summary(
    results: Mapping[str, Any], *, root: Path, folders: tuple[str, str], data: str, labels: Mapping[str, str]
) -> str:
    inside, other = (_groups(results[folder]) for folder in folders)
    train, longest = _lengths(inside)
    multiple = f"{longest // train}x" if train and longest else "-"
    table = []
    for label in labels.values():
        row = {"configuration": label, "n": str(inside[label]["n"]) if label in inside else "-"}
        for where, groups in (("in-domain", inside), ("other", other)):
            for name, length in (("1x", train), (multiple, longest)):
                record = by_length(groups[label], length) if label in groups and length else None
                row[f"{where} ppl {name}"] = spread_text(record["perplexity"]) if record else "-"
        record = by_length(other[label], longest) if label in other and longest else None
        row[f"other bpb {multiple}"] = spread_text(record["bits_per_byte"], 3) if record else "-"
        table.append(row)
    order_in, order_out = _ranking(inside, longest), _ranking(other, longest)
    same = "the same" if order_in == order_out else "a different"
    body = [f"Evaluated on the held-out split of the training text (in-domain) and on {data} (other).", ""]
    body += [f"reports: {root / folders[0] / 'report.md'}, {root / folders[1] / 'report.md'}", ""]
    body += ["```", text_table(table), "```", ""]
    body += [f"- ordering by mean perplexity at {multiple}, in-domain: {' < '.join(order_in)}"]
    body += [f"- on the other text: {' < '.join(order_out)} ({same} ordering; only as firm as the contrasts below)"]
    fope = labels.get("fope")
    pairs = [(labels.get(arm), fope, f"fope vs {arm} on the other text") for arm in ("rope", "alibi")]
    body += _contrast_lines(other, [pair for pair in pairs if None not in pair])
    return _summary("Cross-domain evaluation", body)


def _baselines_summary(results: Mapping[str, Any], *, root: Path, labels: Mapping[str, str]) -> str:
    groups = _groups(results["report"])
    body = _header("baselines", results["report"], root / "report")
    if "nope" in labels:
        body += [
            "NoPE trains slowly at small budgets: read its in-length (1x) perplexity before its flat ratio.",
            "",
        ]
    fope = labels.get("fope")
    pairs = [(fope, labels.get(arm), f"{arm} vs fope") for arm in ("rope", "p-rope", "hope", "alibi")]
    body += _contrast_lines(groups, [pair for pair in pairs if None not in pair])
    return _summary("Related baselines", body)


# ------------------------------------------------------------------ recipes


def ablation(
    settings: Settings, out: Path, *, sizes: Sequence[str] | None = None, encodings: Sequence[str] | None = None
) -> ExperimentPlan:
    """RoPE, FoPE and its ablations (no Fourier series, no floor clipping in two forms), per seed and size."""
    sizes = tuple(settings.check_size(size) for size in (sizes or settings.sizes[:1]))
    arms = tuple(encodings or ABLATION_ARMS)
    specs, reports, labels = [], [], {}
    for size in sizes:
        runs = [run_spec(settings, size, arm, seed) for seed in settings.seeds for arm in arms]
        specs += runs
        labels[size] = {arm: _label(settings, size, arm) for arm in arms}
        title = f"Ablation of FoPE's parts, size {size}"
        reports.append(ReportSpec(f"report-{size}", title, tuple(spec.name for spec in runs)))
    root = out / "ablation"
    return ExperimentPlan(
        "ablation",
        out,
        settings,
        {"sizes": list(sizes), "encodings": list(arms)},
        settings.campaign(specs, reports),
        functools.partial(_ablation_summary, root=root, sizes=labels),
    )


def _shapes(config: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    """Three shapes with the base's non-embedding parameters: head_dim x2, heads x2, layers x2 (d_model x3/4)."""
    model = planned_model(config)
    heads, head_dim, layers, width = model.num_heads, model.head_size, model.num_layers, model.d_model
    if heads % 4 or head_dim % 2 or width * 3 % 4 or width != heads * head_dim:
        raise ValueError(
            "the shape sweep halves and doubles heads and takes 3/4 of d_model: it needs d_model = heads x head_dim "
            f"with heads divisible by 4; got d_model {width}, {heads} heads of {head_dim}"
        )
    return [
        (f"hd{2 * head_dim}", {"model.num_heads": heads // 2, "model.head_dim": 2 * head_dim}),
        (f"heads{2 * heads}", {"model.num_heads": 2 * heads, "model.head_dim": head_dim // 2}),
        (
            f"layers{2 * layers}",
            {
                "model.num_layers": 2 * layers,
                "model.d_model": width * 3 // 4,
                "model.num_heads": heads * 3 // 4,
                "model.head_dim": head_dim,
                "model.mlp_ratio": model.mlp_ratio * 7 / 8,
            },
        ),
    ]


def _shape_text(config: RunConfig) -> str:
    model = planned_model(config)
    parameters = non_embedding_parameters(config)
    return (
        f"{model.num_layers}L x {model.num_heads}H x {model.head_size} (d {model.d_model}, mlp {model.mlp_hidden_dim})"
        f" {parameters:,}"
    )


def sweep(
    settings: Settings,
    out: Path,
    *,
    sweeps: Sequence[str] | None = None,
    size: str | None = None,
    encodings: Sequence[str] | None = None,
) -> ExperimentPlan:
    """FoPE's sigma, output dimension and kept frequencies, and head_dim vs heads vs layers at one parameter budget.

    The reference point of every dimension is the FoPE preset itself (its runs are shared with the other recipes).
    """
    from fope.positions.registry import build_position_encoding

    sweeps = tuple(sweeps or SWEEPS)
    unknown = [name for name in sweeps if name not in SWEEPS]
    if unknown:
        raise ValueError(f"unknown sweeps {unknown}; choose from {list(SWEEPS)}")
    size = settings.check_size(size or settings.sizes[0])
    shape_arms = tuple(encodings or ("fope",))
    reference = run_spec(settings, size, "fope", settings.seeds[0])
    base = reference.resolve()
    model = planned_model(base)
    _, options = arm_position(settings, size, "fope")
    fope = build_position_encoding(
        "fope", head_dim=model.head_size, num_heads=model.num_heads, train_length=model.train_length, **options
    )
    pairs, kept = fope.rotary_dim // 2, fope.num_kept
    values = {
        "sigma": sorted({*SIGMAS, fope.sigma}),
        "output_dim": sorted({max(1, fope.output_dim // 4), max(1, fope.output_dim // 2), fope.output_dim, pairs}),
        "num_inv_freq": sorted({max(1, kept // 2), kept, (kept + pairs) // 2, pairs}),
    }
    defaults = {"sigma": fope.sigma, "output_dim": fope.output_dim, "num_inv_freq": kept}
    short = {"sigma": "sigma", "output_dim": "dout", "num_inv_freq": "freqs"}
    fope_label = _label(settings, size, "fope")
    specs: dict[str, RunSpec] = {}
    reports, dimensions = [], {}

    def add(spec: RunSpec) -> str:
        specs.setdefault(spec.name, spec)
        return spec.name

    for dimension in sweeps:
        names, rows = [], []
        if dimension == "shape":
            for arm in shape_arms:
                arm_label = _label(settings, size, arm)
                shapes = [("reference", {})] if arm == "fope" else []
                for shape, model_values in shapes + _shapes(base):
                    label = f"{arm}-{shape}{_suffix(settings, size)}" if model_values else arm_label
                    for seed in settings.seeds:
                        names.append(add(run_spec(settings, size, arm, seed, label=label, values=model_values)))
                    rows.append((shape, label, _shape_text(specs[names[-1]].resolve())))
        else:
            for value in values[dimension]:
                is_default = value == defaults[dimension]
                label = fope_label if is_default else f"fope-{short[dimension]}{value:g}{_suffix(settings, size)}"
                option_values = {} if is_default else {"model.position_options": {**options, dimension: value}}
                for seed in settings.seeds:
                    names.append(add(run_spec(settings, size, "fope", seed, label=label, values=option_values)))
                rows.append((f"{value:g}" + (" (preset)" if is_default else ""), label, ""))
        dimensions[dimension] = rows
        reports.append(ReportSpec(f"report-{dimension}", f"FoPE sweep: {dimension}", tuple(dict.fromkeys(names))))
    notes = [
        f"FoPE at head_dim {model.head_size}, train length {model.train_length}: {kept} of {pairs} frequencies kept, "
        f"output_dim {fope.output_dim} (official rule min(K, head_dim/4)); num_inv_freq keeps exactly that many "
        "leading frequencies (more than the floor keeps means under-trained ones come back) and output_dim follows "
        "the official rule for it."
    ]
    root = out / "sweep"
    return ExperimentPlan(
        "sweep",
        out,
        settings,
        {"sweeps": list(sweeps), "size": size, "encodings": list(shape_arms), "values": values},
        settings.campaign(list(specs.values()), reports),
        functools.partial(_sweep_summary, root=root, dimensions=dimensions),
        tuple(notes),
    )


def extension(
    settings: Settings,
    out: Path,
    *,
    size: str | None = None,
    extension_steps: int | None = None,
    yarn_factor: float | None = None,
) -> ExperimentPlan:
    """Continued pre-training from L to 2L: {RoPE, FoPE} start x {YaRN, FoPE} extension, the same tokens for each.

    The start runs are the ordinary RoPE / FoPE runs (reused when they exist). Defaults: a quarter of the start's
    steps at tiny scale (at 2L, so half its tokens) with YaRN factor 2; 1000 steps (~1B tokens at the paper
    preset's batch) with the authors' YaRN factor 16 at paper scale. Warmup is a tenth of the extension.
    """
    size = settings.check_size(size or settings.sizes[0])
    starts = {(arm, seed): run_spec(settings, size, arm, seed) for seed in settings.seeds for arm in EXTENSION_STARTS}
    base = next(iter(starts.values())).resolve()
    length = base.train.seq_len
    if extension_steps is None:
        extension_steps = max(1, base.train.max_steps // 4) if settings.scale == "tiny" else 1000
    factor = yarn_factor or (2.0 if settings.scale == "tiny" else 16.0)
    methods = {
        "yarn": {**arm_position(settings, size, "rope")[1], "factor": factor, "original_max_position": length},
        "fope": arm_position(settings, size, "fope")[1],
    }
    specs, arms = list(starts.values()), {}
    for seed in settings.seeds:
        for start in EXTENSION_STARTS:
            source = starts[start, seed]
            for method, options in methods.items():
                label = f"{start}-to-{method}{_suffix(settings, size)}"
                arms[start, method] = label
                values = {
                    "train.init_from": str((out / "runs" / source.name).resolve()),
                    "train.seq_len": 2 * length,
                    "model.position": "yarn" if method == "yarn" else "fope",
                    "model.position_options": options,
                    "train.max_steps": extension_steps,
                    "optim.warmup_steps": max(1, extension_steps // 10),
                }
                if settings.scale == "tiny":
                    values |= {"train.checkpoint_every": extension_steps, "train.eval_every": extension_steps}
                specs.append(run_spec(settings, size, start, seed, label=label, values=values, after=(source.name,)))
    extended = [spec for spec in specs if spec.after]
    tokens = extension_steps * base.train.batch_size * 2 * length
    budget = (
        f"Every arm: {extension_steps} steps x {base.train.batch_size} sequences x {2 * length} tokens = {tokens:,} "
        f"tokens from the start run at {length}; YaRN factor {factor:g} (original length {length}), FoPE at "
        f"train_length {2 * length}. Lengths below are multiples of the new length {2 * length}."
    )
    title = f"Continued pre-training from {length} to {2 * length}"
    report = ReportSpec("report", title, _names(extended))
    root = out / "extension"
    return ExperimentPlan(
        "extension",
        out,
        settings,
        {"size": size, "extension_steps": extension_steps, "yarn_factor": factor, "train_length": length},
        settings.campaign(specs, [report]),
        functools.partial(_extension_summary, root=root, arms=arms, budget=budget),
        (budget,),
    )


def cross_domain(
    settings: Settings,
    out: Path,
    *,
    size: str | None = None,
    encodings: Sequence[str] | None = None,
    train_sources: Sequence[str] | None = None,
    eval_data: str | Path | None = None,
) -> ExperimentPlan:
    """Train on some sources of the corpus, evaluate perplexity on other text (default: the Bible, exported).

    With the default corpus the defaults train on Shakespeare only (``data.sources``: the other sources never enter
    training) and evaluate on the King James Bible, written to ``OUT/eval-data/bible`` as one text file per book.
    """
    size = settings.check_size(size or settings.sizes[0])
    arms = tuple(encodings or CROSS_DOMAIN_ARMS)
    probe = run_spec(settings, size, arms[0], settings.seeds[0]).resolve()
    default_corpus = probe.data.source == "default"
    export = None
    if train_sources is None and default_corpus:
        train_sources = ("shakespeare",)
    if eval_data is None:
        if not default_corpus or "bible" in train_sources:
            raise ValueError(
                "cross-domain needs --eval-data DIR (text of another domain than the training text) unless it trains "
                "on the default corpus without its bible source"
            )
        eval_data = out / "eval-data" / "bible"
        export = ("bible", eval_data)
    eval_data = str(Path(eval_data).resolve())
    subset = "+".join(train_sources) if train_sources else None
    labels = {arm: _label(settings, size, arm) + (f"-{subset}" if subset else "") for arm in arms}
    values = {"data.sources": list(train_sources)} if train_sources else {}
    specs = [
        run_spec(settings, size, arm, seed, label=labels[arm], values=values) for seed in settings.seeds for arm in arms
    ]
    names = tuple(spec.name for spec in specs)
    other = "report-" + results_name(PERPLEXITY, eval_data).removeprefix("perplexity-")
    trained_on = f"sources {', '.join(train_sources)}" if train_sources else "the training corpus"
    reports = [
        ReportSpec("report-in-domain", f"Trained on {trained_on}: held-out text of the same sources", names),
        ReportSpec(other, f"Trained on {trained_on}: evaluated on {eval_data}", names, data=eval_data),
    ]
    root = out / "cross-domain"
    return ExperimentPlan(
        "cross-domain",
        out,
        settings,
        {"size": size, "encodings": list(arms), "train_sources": list(train_sources or []), "eval_data": eval_data},
        settings.campaign(specs, reports, passkey=False),
        functools.partial(
            _cross_domain_summary,
            root=root,
            folders=("report-in-domain", other),
            data=eval_data,
            labels=labels,
        ),
        export=export,
    )


def baselines(
    settings: Settings, out: Path, *, size: str | None = None, encodings: Sequence[str] | None = None
) -> ExperimentPlan:
    """RoPE and FoPE next to p-RoPE (lowest 25% of frequencies dropped), HoPE-style clipping, NoPE and ALiBi."""
    size = settings.check_size(size or settings.sizes[0])
    arms = tuple(encodings or BASELINE_ARMS)
    specs = [run_spec(settings, size, arm, seed) for seed in settings.seeds for arm in arms]
    report = ReportSpec("report", "Position encodings that remove low frequencies, and baselines", _names(specs))
    root = out / "baselines"
    return ExperimentPlan(
        "baselines",
        out,
        settings,
        {"size": size, "encodings": list(arms)},
        settings.campaign(specs, [report]),
        functools.partial(_baselines_summary, root=root, labels={arm: _label(settings, size, arm) for arm in arms}),
    )


def _names(specs: Sequence[RunSpec]) -> tuple[str, ...]:
    return tuple(spec.name for spec in specs)


RECIPES: dict[str, Callable[..., ExperimentPlan]] = {
    "ablation": ablation,
    "sweep": sweep,
    "extension": extension,
    "cross-domain": cross_domain,
    "baselines": baselines,
}
EXPERIMENTS = tuple(RECIPES)


def plan_experiment(
    experiment: str,
    out: str | Path = "experiments",
    *,
    scale: str = "tiny",
    seeds: Sequence[int] | None = None,
    steps: int | None = None,
    quick: bool = False,
    jobs: int | None = None,
    overrides: Sequence[str] = (),
    max_spans: int | None = None,
    passkey_trials: int | None = None,
    gpus: int = 1,
    **options: Any,
) -> ExperimentPlan:
    """The plan of recipe ``experiment``: common settings, and the recipe's own ``options`` (``sizes``, ``sweeps``,
    ``size``, ``encodings``, ``extension_steps``, ``yarn_factor``, ``train_sources``, ``eval_data``)."""
    if experiment not in RECIPES:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {list(EXPERIMENTS)}")
    settings = Settings.make(
        scale=scale,
        seeds=seeds,
        steps=steps,
        quick=quick,
        jobs=jobs,
        overrides=overrides,
        max_spans=max_spans,
        passkey_trials=passkey_trials,
        gpus=gpus,
    )
    recipe = RECIPES[experiment]
    accepted = [name for name in inspect.signature(recipe).parameters if name not in ("settings", "out")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"experiment {experiment!r} has no option {unknown}; its options are {accepted}")
    given = {key: value for key, value in options.items() if value is not None}
    return recipe(settings, Path(out), **given)


def format_experiment(plan: ExperimentPlan) -> str:
    """The dry run of a recipe: settings, runs with their status and commands, reports, notes."""
    settings = plan.settings
    head = (
        f"fope experiment {plan.experiment} ({settings.scale} scale{', quick' if settings.quick else ''}): "
        f"seeds {list(settings.seeds)}, options {json.dumps(dict(plan.options))}"
    )
    evaluation = f"evaluation: perplexity at 1x..16x with {settings.max_spans} spans per length"
    if plan.campaign.passkey_trials is not None:
        evaluation += f", passkey with {plan.campaign.passkey_trials} trials per length"
    lines = [head, evaluation, *plan.notes, "", format_plan(plan.campaign, plan.out)]
    lines += [f"  (reports and summary in {plan.root})"]
    if plan.export:
        lines += [f"before evaluation: export the {plan.export[0]} documents of the default corpus to {plan.export[1]}"]
    return "\n".join(lines)


def export_source(source: str, directory: Path) -> Path:
    """Write the default corpus's documents of ``source`` as one ``.txt`` per document (once) to ``directory``."""
    if directory.is_dir() and any(directory.glob("*.txt")):
        return directory
    from fope.data.corpus import default_corpus, select_sources
    from fope.data.prepare import default_cache_dir

    documents = select_sources(default_corpus(default_cache_dir()), [source])
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for document in documents:
            (staging / f"{document.name.split('/', 1)[-1]}.txt").write_text(document.text, encoding="utf-8")
        if directory.exists():
            directory.rmdir()
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def run_experiment(plan: ExperimentPlan, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate, report and summarise; returns the reports' results and the summary text."""
    started = time.perf_counter()
    settings = plan.settings
    steps = "the preset's" if settings.steps is None else str(settings.steps)
    log(
        f"fope experiment {plan.experiment}: {len(plan.campaign.specs)} runs ({settings.scale} scale, seeds "
        f"{list(settings.seeds)}, {steps} steps), {settings.jobs} at a time; runs in {plan.out / 'runs'}"
    )
    if plan.export is not None:
        source, directory = plan.export
        log(f"evaluation text: the {source} documents of the default corpus in {export_source(source, directory)}")
    results = run_campaign(plan.campaign, plan.out, plan.root, log)
    summary = plan.summarize(results)
    minutes = (time.perf_counter() - started) / 60
    plan.root.mkdir(parents=True, exist_ok=True)
    (plan.root / "summary.md").write_text(summary)
    record = {
        "experiment": plan.experiment,
        "settings": asdict(settings),
        "options": dict(plan.options),
        "runs": [spec.name for spec in plan.campaign.specs],
        "reports": [report.folder for report in plan.campaign.reports],
        "minutes": minutes,
    }
    (plan.root / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
    log("")
    log(summary)
    log(f"summary: {plan.root / 'summary.md'}  ({minutes:.1f} min)")
    return {"results": results, "summary": summary}
