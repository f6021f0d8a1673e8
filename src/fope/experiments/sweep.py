"""``fope experiment sweep``: FoPE's sigma, output dimension and kept frequencies; head_dim vs heads vs layers at one
parameter budget. The reference point of every dimension is the FoPE preset itself (its runs are shared)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fope.build import non_embedding_parameters, planned_model
from fope.config import RunConfig
from fope.errors import CampaignError
from fope.experiments.baselines import SIZE_HELP
from fope.experiments.campaign import PlannedRun, Report
from fope.experiments.common import Plan, Settings, arm_position, make_run, option
from fope.report import by_length, contrast, format_contrast, passkey_spreads, spread_text, text_table
from fope.report.summaries import groups_of, lengths, summary

NAME = "sweep"
SWEEPS = ("sigma", "output_dim", "num_inv_freq", "shape")
SIGMAS = (0.0, 0.1, 0.3, 0.5, 1.0)  # the paper's sweep (its Figure 6 goes to 1.0)
SHORT = {"sigma": "sigma", "output_dim": "dout", "num_inv_freq": "freqs"}


@dataclass(frozen=True)
class Options:
    sweeps: tuple[str, ...] | None = option(f"comma-separated: {','.join(SWEEPS)} (default all)")
    size: str | None = option(SIZE_HELP)
    encodings: tuple[str, ...] | None = option("position encodings of the shape sweep (default fope)")


def shapes(config: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    """Three shapes with the base's non-embedding parameters: head_dim x2, heads x2, layers x2 (d_model x3/4)."""
    model = planned_model(config)
    heads, head_dim, layers, width = model.num_heads, model.head_size, model.num_layers, model.d_model
    if heads % 4 or head_dim % 2 or width * 3 % 4 or width != heads * head_dim:
        raise CampaignError(
            "the shape sweep halves and doubles heads and takes 3/4 of d_model: it needs d_model = heads x head_dim "
            f"with heads divisible by 4; got d_model {width}, {heads} heads of {head_dim}"
        )
    deeper = {"num_layers": 2 * layers, "d_model": width * 3 // 4, "num_heads": heads * 3 // 4, "head_dim": head_dim}
    return [
        (f"hd{2 * head_dim}", {"model": {"num_heads": heads // 2, "head_dim": 2 * head_dim}}),
        (f"heads{2 * heads}", {"model": {"num_heads": 2 * heads, "head_dim": head_dim // 2}}),
        (f"layers{2 * layers}", {"model": {**deeper, "mlp_ratio": model.mlp_ratio * 7 / 8}}),
    ]


def shape_text(config: RunConfig) -> str:
    model = planned_model(config)
    return (
        f"{model.num_layers}L x {model.num_heads}H x {model.head_size} (d {model.d_model}, mlp {model.mlp_hidden_dim})"
        f" {non_embedding_parameters(config):,}"
    )


def build(settings: Settings, options: Options, out: Path) -> Plan:
    """FoPE's sigma, output dimension and kept frequencies, and head_dim vs heads vs layers at one parameter budget.

    The reference point of every dimension is the FoPE preset itself (its runs are shared with the other recipes).
    """
    from fope.positions.registry import build_position_encoding

    sweeps = tuple(options.sweeps or SWEEPS)
    unknown = [name for name in sweeps if name not in SWEEPS]
    if unknown:
        raise CampaignError(f"unknown sweeps {unknown}; choose from {list(SWEEPS)}")
    size = settings.size(options.size)
    shape_arms = tuple(options.encodings or ("fope",))
    base = make_run(settings, size, "fope", settings.seeds[0]).config
    model = planned_model(base)
    _, position_options = arm_position(settings, size, "fope")
    fope = build_position_encoding(
        "fope", head_dim=model.head_size, num_heads=model.num_heads, train_length=model.train_length, **position_options
    )
    pairs, kept = fope.rotary_dim // 2, fope.num_kept
    values = {
        "sigma": sorted({*SIGMAS, fope.sigma}),
        "output_dim": sorted({max(1, fope.output_dim // 4), max(1, fope.output_dim // 2), fope.output_dim, pairs}),
        "num_inv_freq": sorted({max(1, kept // 2), kept, (kept + pairs) // 2, pairs}),
    }
    defaults = {"sigma": fope.sigma, "output_dim": fope.output_dim, "num_inv_freq": kept}
    runs: dict[str, PlannedRun] = {}
    reports, dimensions, reference = [], {}, settings.label(size, "fope")

    def add(label: str, arm: str, changes: Mapping[str, Any]) -> None:
        for seed in settings.seeds:
            run = make_run(settings, size, arm, seed, label=label, values=changes)
            runs.setdefault(run.name, run)
            in_report.append(run.name)

    for dimension in sweeps:
        in_report, rows = [], []
        if dimension == "shape":
            for arm in shape_arms:
                for shape, changes in [("reference", {}), *shapes(base)]:  # every arm at the preset's shape too
                    label = f"{arm}-{shape}{settings.suffix(size)}" if changes else settings.label(size, arm)
                    add(label, arm, changes)
                    rows.append((shape, label, shape_text(runs[in_report[-1]].config)))
        else:
            for value in values[dimension]:
                preset = value == defaults[dimension]
                label = (
                    settings.label(size, "fope")
                    if preset
                    else f"fope-{SHORT[dimension]}{value:g}{settings.suffix(size)}"
                )
                add(
                    label,
                    "fope",
                    {} if preset else {"model": {"position_options": {**position_options, dimension: value}}},
                )
                rows.append((f"{value:g}" + (" (preset)" if preset else ""), label, ""))
        dimensions[dimension] = rows
        title, members = f"FoPE sweep: {dimension}", tuple(dict.fromkeys(in_report))
        reports.append(
            Report(f"report-{dimension}", title, members, contrasts=against_preset(dimension, rows, reference))
        )
    note = (
        f"FoPE at head_dim {model.head_size}, train length {model.train_length}: {kept} of {pairs} frequencies kept, "
        f"output_dim {fope.output_dim} (official rule min(K, head_dim/4)); num_inv_freq keeps exactly that many "
        "leading frequencies (more than the floor keeps means under-trained ones come back) and output_dim follows "
        "the official rule for it."
    )
    root = out / NAME
    record = {"sweeps": list(sweeps), "size": size, "encodings": list(shape_arms), "values": values}
    campaign = settings.campaign(NAME, out, list(runs.values()), reports)
    summarize_plan = functools.partial(summarize, root=root, dimensions=dimensions)
    return Plan(NAME, out, root, settings, record, campaign, summarize_plan, (note,))


def against_preset(
    dimension: str, rows: Sequence[tuple[str, str, str]], preset: str
) -> tuple[tuple[str, str, str], ...]:
    """Each value of a sweep (its rows ``(value, label, extra)``) against the FoPE preset, its reference point."""
    return tuple((preset, label, f"{dimension} {value} vs the preset") for value, label, _ in rows if label != preset)


def sweep_table(groups: Mapping[str, Any], rows: Sequence[tuple[str, str, str]]) -> str:
    """Rows ``(value, label, extra)`` in order: n, perplexity at 1x and at the longest length, ratio, passkey."""
    train, longest = lengths(groups)
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


def best_line(groups: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    """The lowest mean perplexity at the longest length, against the runner-up."""
    _, longest = lengths(groups)
    scored = []
    for label in labels:
        row = by_length(groups[label], longest) if label in groups else None
        if row is not None:
            scored.append((row["loss"]["mean"], label))
    if len(scored) < 2:
        return []
    (_, best), (_, second) = sorted(scored)[:2]
    return ["- lowest at the longest length: " + format_contrast(contrast(groups, best, second, longest), best)]


def summarize(
    results: Mapping[str, Any], *, root: Path, dimensions: Mapping[str, Sequence[tuple[str, str, str]]]
) -> str:
    """Per dimension: a table of its values and the lowest perplexity at the longest length."""
    body = []
    for dimension, rows in dimensions.items():
        folder = f"report-{dimension}"
        groups = groups_of(results[folder])
        body += [f"## {dimension}", "", f"report: {root / folder / 'report.md'}", "", "```"]
        body += [sweep_table(groups, rows), "```", ""]
        body += [*best_line(groups, [label for _, label, _ in rows]), ""]
    return summary("FoPE sweeps", body)
