"""Reports: several runs' evaluation results, grouped by label so seeds aggregate, as tables, plots and Markdown.

Three layers, each usable alone: ``load_results`` reads (or first computes) each run's ``eval/*.json``;
``aggregate`` turns them into numbers per configuration (pure); the ``plot_*`` functions and ``markdown_report`` draw
those numbers. ``compare_runs`` (``fope compare``) does all three and writes ``report.md``, ``results.json`` and the
PNG figures. Other modules add to a report through ``extra_sections``: callables that get the loaded runs and the
output folder and return a ``ReportSection`` (its text, the figures they drew there, and their numbers).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from fope.config import from_dict, load_yaml
from fope.evaluate.passkey import evaluate_run_passkey
from fope.evaluate.perplexity import evaluate_run_perplexity
from fope.evaluate.results import PASSKEY, PERPLEXITY, read_results, results_name
from fope.runs import RunConfig, find_checkpoint, read_checkpoint_meta

#: Keys of a run summary that may differ between runs of one configuration.
PER_RUN_KEYS = {"path", "label", "seed", "step", "checkpoint"}


@dataclass
class RunResults:
    """One run's evaluation results (None where missing) and what the report must say about them."""

    path: Path
    label: str
    summary: dict[str, Any]
    perplexity: dict[str, Any] | None
    passkey: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int | None:
        return self.summary.get("seed")


@dataclass(frozen=True)
class ReportSection:
    """An extra part of a report: Markdown text, figure files inside the report folder, numbers for results.json."""

    title: str
    markdown: str
    figures: tuple[str, ...] = ()
    results: Mapping[str, Any] = field(default_factory=dict)


#: Builds an extra section from the loaded runs, drawing its figures into the given report folder.
SectionBuilder = Callable[[Sequence[RunResults], Path], ReportSection]


# ------------------------------------------------------------------ loading


def _run_config_summary(path: Path) -> dict[str, Any]:
    config = from_dict(RunConfig, load_yaml(path / "config.yaml"))
    return {"path": str(path), "label": config.name or path.name, "seed": config.train.seed}


def _latest_step(path: Path) -> int:
    return int(read_checkpoint_meta(find_checkpoint(path), verify=False)["step"])


def load_results(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    evaluate_missing: bool = True,
    device: str = "auto",
    progress: bool = True,
    perplexity_options: Mapping[str, Any] | None = None,
    passkey_options: Mapping[str, Any] | None = None,
) -> RunResults:
    """A run's ``eval/perplexity*.json`` and ``eval/passkey.json``; missing or stale ones are computed first.

    Results are stale when they were computed on another checkpoint than the run's latest. With
    ``evaluate_missing=False`` nothing is computed: missing results stay None and stale ones are used with a note.
    """
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    latest = _latest_step(path)
    notes: list[str] = []

    def fetch(name: str, evaluate: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        results = read_results(path, name)
        stale = results is not None and results["run"]["step"] != latest
        if (results is None or stale) and evaluate_missing:
            return evaluate()
        if stale:
            notes.append(f"eval/{name}.json was computed at step {results['run']['step']}; the latest is {latest}")
        return results

    perplexity = fetch(
        results_name(PERPLEXITY, data),
        lambda: evaluate_run_perplexity(
            path, data=data, device=device, progress=progress, **(perplexity_options or {})
        ),
    )
    passkey = fetch(
        PASSKEY, lambda: evaluate_run_passkey(path, device=device, progress=progress, **(passkey_options or {}))
    )
    summary = next((r["run"] for r in (perplexity, passkey) if r is not None), None) or _run_config_summary(path)
    return RunResults(path, summary["label"], summary, perplexity, passkey, notes)


# ------------------------------------------------------------------ numbers


def mean_spread(values: Sequence[float]) -> dict[str, Any]:
    """``n``, mean, sample standard deviation (None for one value), min and max."""
    array = np.asarray(values, dtype=float)
    return {
        "n": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else None,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def group_by_label(runs: Sequence[RunResults]) -> dict[str, list[RunResults]]:
    """Runs grouped by label, in order of first appearance."""
    groups: dict[str, list[RunResults]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return groups


def _reference_length(results: dict[str, Any]) -> int:
    """The in-length (1x) length of a perplexity result: the training length, else the shortest length."""
    lengths = [record["length"] for record in results["results"]]
    return results["train_length"] if results["train_length"] in lengths else min(lengths)


def aggregate_perplexity(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Per length, mean and spread over runs of loss, perplexity, bits per byte, ratio to 1x; buckets at the longest."""
    if not results:
        return None
    by_length: dict[int, dict[str, list[float]]] = {}
    for result in results:
        records = {record["length"]: record for record in result["results"]}
        reference = records[_reference_length(result)]["perplexity"]
        for length, record in records.items():
            values = by_length.setdefault(length, {"loss": [], "perplexity": [], "bits_per_byte": [], "ratio": []})
            values["loss"].append(record["loss"])
            values["perplexity"].append(record["perplexity"])
            if record["bits_per_byte"] is not None:
                values["bits_per_byte"].append(record["bits_per_byte"])
            values["ratio"].append(record["perplexity"] / reference)
    train_lengths = sorted({result["train_length"] for result in results})
    rows = []
    for length in sorted(by_length):
        values = by_length[length]
        rows.append(
            {
                "length": length,
                "multiple": length / train_lengths[0],
                **{key: mean_spread(v) if v else None for key, v in values.items()},
            }
        )
    longest = max(by_length)
    bucket_losses: dict[tuple[int, int], list[float]] = {}
    for result in results:
        for record in result["results"]:
            if record["length"] == longest:
                for bucket in record["position_buckets"]:
                    bucket_losses.setdefault((bucket["start"], bucket["end"]), []).append(bucket["loss"])
    return {
        "train_lengths": train_lengths,
        "reference_lengths": sorted({_reference_length(result) for result in results}),
        "by_length": rows,
        "position_buckets": {
            "length": longest,
            "buckets": [
                {"start": start, "end": end, "loss": mean_spread(losses)}
                for (start, end), losses in sorted(bucket_losses.items())
            ],
        },
        "cross_document": any(result["spans"]["cross_document"] for result in results),
        "span_notes": sorted({result["spans"]["note"] for result in results if result["spans"]["note"]}),
    }


def aggregate_passkey(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean and spread over runs of passkey accuracy per length; the depth x length grid averaged over runs."""
    if not results:
        return None
    accuracy: dict[int, list[float]] = {}
    for result in results:
        for row in result["by_length"]:
            accuracy.setdefault(row["length"], []).append(row["accuracy"])
    lengths = sorted(accuracy)
    depth_bins = results[0]["depth_bins"]
    cells = np.full((len(results), len(depth_bins), len(lengths)), np.nan)
    for index, result in enumerate(results):
        if result["depth_bins"] != depth_bins:
            raise ValueError(f"passkey results use different depth bins: {depth_bins} and {result['depth_bins']}")
        for column, length in enumerate(result["grid_lengths"]):
            for row, value in enumerate(result["grid_accuracy"]):
                if value[column] is not None:
                    cells[index, row, lengths.index(length)] = value[column]
    counts = (~np.isnan(cells)).sum(axis=0)
    grid = np.where(counts > 0, np.nansum(np.nan_to_num(cells, nan=0.0), axis=0) / np.maximum(counts, 1), np.nan)
    return {
        "train_lengths": sorted({result["train_length"] for result in results}),
        "trials_per_length": sorted({result["trials_per_length"] for result in results}),
        "by_length": [{"length": length, "accuracy": mean_spread(accuracy[length])} for length in lengths],
        "depth_bins": depth_bins,
        "grid_lengths": lengths,
        "grid_accuracy": [[None if math.isnan(v) else float(v) for v in row] for row in grid],
    }


def _configuration_differences(runs: Sequence[RunResults]) -> list[str]:
    keys = sorted({key for run in runs for key in run.summary} - PER_RUN_KEYS)
    return [key for key in keys if len({json.dumps(run.summary.get(key), sort_keys=True) for run in runs}) > 1]


def evaluation_settings(run: RunResults) -> dict[str, Any]:
    """What must match between runs for their numbers to be comparable: data, spans, lengths, passkey trials."""
    settings: dict[str, Any] = {}
    if run.perplexity is not None:
        spans = run.perplexity["spans"]
        settings["perplexity"] = {
            "data": run.perplexity.get("data"),
            "lengths": run.perplexity["lengths"],
            "span_tokens": spans["span_tokens"],
            "max_spans": spans["max_spans"],
            "seed": spans["seed"],
        }
    if run.passkey is not None:
        keys = ("lengths", "trials_per_length", "seed", "max_new_tokens")
        settings["passkey"] = {key: run.passkey[key] for key in keys}
    return settings


def settings_notes(runs: Sequence[RunResults]) -> list[str]:
    """A note for each evaluation whose settings differ between runs (their numbers are then not comparable)."""
    notes = []
    for evaluation in ("perplexity", "passkey"):
        seen: dict[str, list[str]] = {}
        for run in runs:
            settings = evaluation_settings(run).get(evaluation)
            if settings is not None:
                seen.setdefault(json.dumps(settings, sort_keys=True), []).append(str(run.path))
        if len(seen) > 1:
            described = "; ".join(f"{settings} for {', '.join(paths)}" for settings, paths in seen.items())
            notes.append(f"{evaluation} was evaluated with different settings: {described}")
    return notes


def aggregate(runs: Sequence[RunResults]) -> dict[str, Any]:
    """Numbers per configuration (label): its runs and seeds, perplexity and passkey aggregated over them."""
    groups = {}
    for label, members in group_by_label(runs).items():
        differences = _configuration_differences(members)
        notes = [note for run in members for note in run.notes]
        if differences:
            notes.append(f"runs labeled {label!r} differ in {', '.join(differences)}; they are aggregated anyway")
        groups[label] = {
            "n": len(members),
            "runs": [
                {"path": str(run.path), "seed": run.seed, "step": run.summary.get("step"), "summary": run.summary}
                for run in members
            ],
            "perplexity": aggregate_perplexity([run.perplexity for run in members if run.perplexity is not None]),
            "passkey": aggregate_passkey([run.passkey for run in members if run.passkey is not None]),
            "notes": notes,
        }
    return groups


# ------------------------------------------------------------------ drawing

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def _color(index: int) -> str:
    return _COLORS[index % len(_COLORS)]


def _mark_train_lengths(axes: Any, train_lengths: Sequence[int]) -> None:
    for length in sorted(set(train_lengths)):
        axes.axvline(length, color="black", linestyle="--", linewidth=1, label=f"training length {length}")


def _length_axis(axes: Any, lengths: Sequence[int]) -> None:
    axes.set_xscale("log", base=2)
    axes.set_xticks(list(lengths), [str(length) for length in lengths])
    axes.set_xlabel("evaluation length (tokens, log2 scale)")


def _spans_a_wide_range(axes: Any) -> bool:
    """Whether the plotted values differ by more than a factor of 4 (a log axis then reads better)."""
    values = np.concatenate([line.get_ydata() for line in axes.get_lines() if len(line.get_ydata())] or [[1.0]])
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() > 4 * values.min()


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def _line_by_length(
    groups: dict[str, Any], section: str, value: str, path: Path, ylabel: str, title: str, log: bool = False
) -> Path:
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    lengths: set[int] = set()
    train_lengths: list[int] = []
    for index, (label, group) in enumerate(groups.items()):
        numbers = group[section]
        if numbers is None:
            continue
        rows = [row for row in numbers["by_length"] if row[value] is not None]
        x = [row["length"] for row in rows]
        lengths.update(x)
        train_lengths += numbers["train_lengths"]
        mean = [row[value]["mean"] for row in rows]
        axes.plot(x, mean, marker="o", color=_color(index), label=f"{label} (n={group['n']})")
        if group["n"] > 1:
            low, high = [row[value]["min"] for row in rows], [row[value]["max"] for row in rows]
            axes.fill_between(x, low, high, color=_color(index), alpha=0.2, linewidth=0)
    _mark_train_lengths(axes, train_lengths)
    _length_axis(axes, sorted(lengths))
    if log and _spans_a_wide_range(axes):
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ylabel += " (log scale)"
    if value == "ratio":
        axes.axhline(1.0, color="gray", linewidth=1)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_perplexity(groups: dict[str, Any], path: str | Path) -> Path:
    """Perplexity against evaluation length per configuration (mean line, min-max band over seeds); log2 lengths."""
    return _line_by_length(
        groups, "perplexity", "perplexity", Path(path), "perplexity", "Perplexity against length", log=True
    )


def plot_perplexity_ratio(groups: dict[str, Any], path: str | Path) -> Path:
    """Perplexity divided by the same run's in-length (1x) perplexity, against evaluation length."""
    return _line_by_length(
        groups,
        "perplexity",
        "ratio",
        Path(path),
        "perplexity / in-length perplexity",
        "Ratio to in-length perplexity",
        log=True,
    )


def plot_passkey_accuracy(groups: dict[str, Any], path: str | Path) -> Path:
    """Passkey accuracy against prompt length per configuration (mean line, min-max band over seeds)."""
    return _line_by_length(groups, "passkey", "accuracy", Path(path), "passkey accuracy", "Passkey retrieval")


def plot_position_loss(groups: dict[str, Any], path: str | Path) -> Path:
    """Mean loss by position bucket inside the longest windows per configuration."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    train_lengths: list[int] = []
    longest = set()
    for index, (label, group) in enumerate(groups.items()):
        numbers = group["perplexity"]
        if numbers is None:
            continue
        buckets = numbers["position_buckets"]
        longest.add(buckets["length"])
        train_lengths += numbers["train_lengths"]
        centers = [(b["start"] + b["end"]) / 2 for b in buckets["buckets"]]
        mean = [b["loss"]["mean"] for b in buckets["buckets"]]
        axes.plot(centers, mean, marker="o", color=_color(index), label=f"{label} (n={group['n']})")
        if group["n"] > 1:
            low, high = [b["loss"]["min"] for b in buckets["buckets"]], [b["loss"]["max"] for b in buckets["buckets"]]
            axes.fill_between(centers, low, high, color=_color(index), alpha=0.2, linewidth=0)
    _mark_train_lengths(axes, train_lengths)
    axes.set_xlabel("position in the window (tokens; bucket centres)")
    axes.set_ylabel("mean token loss (nats)")
    axes.set_title(f"Loss by position in windows of {', '.join(map(str, sorted(longest)))} tokens")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_passkey_grid(label: str, numbers: dict[str, Any], path: str | Path) -> Path:
    """Depth x length heatmap of passkey accuracy for one configuration (cells annotated, training length marked)."""
    grid = np.array([[np.nan if v is None else v for v in row] for row in numbers["grid_accuracy"]], dtype=float)
    lengths, bins = numbers["grid_lengths"], numbers["depth_bins"]
    figure = Figure(figsize=(1.2 * len(lengths) + 2.5, 0.6 * len(bins) + 2))
    axes = figure.subplots()
    image = axes.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", origin="upper")
    for row in range(grid.shape[0]):
        for column in range(grid.shape[1]):
            if not math.isnan(grid[row, column]):
                value = grid[row, column]
                color = "black" if value > 0.6 else "white"
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", color=color, fontsize="small")
    marked = False
    for train_length in numbers["train_lengths"]:
        inside = sum(length <= train_length for length in lengths)
        if 0 < inside < len(lengths):
            axes.axvline(inside - 0.5, color="red", linewidth=2)
            marked = True
    axes.set_xticks(range(len(lengths)), [str(length) for length in lengths])
    axes.set_yticks(range(len(bins)), [f"{low:.1f}-{high:.1f}" for low, high in bins])
    axes.set_xlabel("prompt length (tokens)")
    axes.set_ylabel("needle depth (share of filler before it)")
    trained = ", ".join(str(length) for length in numbers["train_lengths"])
    axes.set_title(f"Passkey accuracy: {label}\n({'red line: ' if marked else ''}training length {trained})")
    figure.colorbar(image, ax=axes, label="accuracy")
    return _save(figure, path)


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label)


def draw_figures(groups: dict[str, Any], out_dir: str | Path) -> list[str]:
    """Every standard figure of a report, drawn into ``out_dir``; returns the file names."""
    out_dir = Path(out_dir)
    names = []
    if any(group["perplexity"] for group in groups.values()):
        names += [
            plot_perplexity(groups, out_dir / "perplexity.png").name,
            plot_perplexity_ratio(groups, out_dir / "perplexity-ratio.png").name,
            plot_position_loss(groups, out_dir / "position-loss.png").name,
        ]
    if any(group["passkey"] for group in groups.values()):
        names.append(plot_passkey_accuracy(groups, out_dir / "passkey.png").name)
        for label, group in groups.items():
            if group["passkey"] is not None:
                names.append(
                    plot_passkey_grid(label, group["passkey"], out_dir / f"passkey-{_file_label(label)}.png").name
                )
    return names


# ------------------------------------------------------------------ Markdown


def _number(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"


def _cell(spread: dict[str, Any] | None, number: Callable[[float], str] = _number) -> str:
    if spread is None:
        return "-"
    if spread["std"] is None:
        return number(spread["mean"])
    return f"{number(spread['mean'])} ± {number(spread['std'])}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """A Markdown table; the first ``text_columns`` are left-aligned, the rest (numbers) right-aligned."""
    rule = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _length_header(lengths: Sequence[int], train_length: int | None) -> list[str]:
    if train_length is None:
        return [str(length) for length in lengths]
    return [f"{length} ({length / train_length:g}x)" for length in lengths]


def _by_length_table(
    groups: dict[str, Any],
    section: str,
    value: str,
    number: Callable[[float], str],
    extra: tuple[str, Callable[[dict[str, Any]], str]] | None = None,
) -> str:
    """One row per configuration, one column per length; ``extra`` adds a (header, cell of the group) column."""
    present = {label: group for label, group in groups.items() if group[section] is not None}
    lengths = sorted({row["length"] for group in present.values() for row in group[section]["by_length"]})
    train_lengths = sorted({t for group in present.values() for t in group[section]["train_lengths"]})
    train_length = train_lengths[0] if len(train_lengths) == 1 else None
    rows = []
    for label, group in present.items():
        cells = {row["length"]: row[value] for row in group[section]["by_length"]}
        first = [label, str(group["n"])] + ([extra[1](group)] if extra else [])
        rows.append(first + [_cell(cells.get(length), number) for length in lengths])
    header = ["configuration", "n"] + ([extra[0]] if extra else []) + _length_header(lengths, train_length)
    return _table(header, rows)


def _in_length_perplexity(group: dict[str, Any]) -> str:
    numbers = group["perplexity"]
    reference = numbers["reference_lengths"][0]
    row = next(row for row in numbers["by_length"] if row["length"] == reference)
    return f"{_cell(row['perplexity'])} (at {reference})"


def _runs_table(groups: dict[str, Any]) -> str:
    header = ["configuration", "seed", "step", "position", "options", "d_model x layers x heads (head_dim)"]
    header += ["train length", "parameters", "passkey fraction", "run"]
    rows = []
    for label, group in groups.items():
        for run in group["runs"]:
            summary = run["summary"]
            shape = "-"
            if "d_model" in summary:
                shape = (
                    f"{summary['d_model']} x {summary['num_layers']} x {summary['num_heads']} ({summary['head_dim']})"
                )
            options = json.dumps(summary.get("position_options", "-"))
            rows.append(
                [
                    label,
                    str(run["seed"]),
                    str(run["step"]),
                    str(summary.get("position", "-")),
                    options.replace("|", "\\|"),
                    shape,
                    str(summary.get("train_length", "-")),
                    f"{summary['parameters']:,}" if "parameters" in summary else "-",
                    str(summary.get("passkey_fraction", "-")),
                    f"`{run['path']}`",
                ]
            )
    return _table(header, rows, text_columns=len(header))


def markdown_report(
    title: str,
    groups: dict[str, Any],
    figures: Sequence[str],
    sections: Sequence[ReportSection] = (),
    data: str | None = None,
    general_notes: Sequence[str] = (),
) -> str:
    """The report's Markdown: perplexity and passkey tables, figures, runs and their configs, notes, extra sections."""
    percent = "{:.0%}".format
    lines = [f"# {title}", ""]
    runs = sum(group["n"] for group in groups.values())
    lines += [f"{runs} runs in {len(groups)} configurations: {', '.join(groups)}.", ""]
    lines += ["Cells are the mean ± sample standard deviation over a configuration's runs (n); min and max are in"]
    lines += ["`results.json`. Bands in the figures span min to max. See docs/evaluation.md for the protocols.", ""]
    if any(group["perplexity"] for group in groups.values()):
        lines += ["## Perplexity against length", ""]
        lines += [f"Data: {data or 'each run’s held-out split'}.", ""]
        lines += [_by_length_table(groups, "perplexity", "perplexity", _number), ""]
        lines += ["### Ratio to in-length perplexity", ""]
        lines += ["Each run's perplexity divided by its own perplexity at the training length (1x). Read it next to"]
        lines += [
            "the 1x perplexity above: a configuration that is poor in-length (NoPE trains slowly at small budgets)"
        ]
        lines += ["can have a flat ratio that reflects under-training, not length generalization.", ""]
        extra = ("in-length perplexity", _in_length_perplexity)
        lines += [_by_length_table(groups, "perplexity", "ratio", lambda v: f"{v:.2f}", extra), ""]
        lines += ["### Bits per byte", ""]
        lines += [_by_length_table(groups, "perplexity", "bits_per_byte", lambda v: f"{v:.3f}"), ""]
        for name, caption in (
            ("perplexity.png", "Perplexity against length"),
            ("perplexity-ratio.png", "Ratio to in-length perplexity"),
            ("position-loss.png", "Loss by position in the longest windows (where does it break?)"),
        ):
            if name in figures:
                lines += [f"![{caption}]({name})", ""]
        notes = sorted(
            {n for group in groups.values() if group["perplexity"] for n in group["perplexity"]["span_notes"]}
        )
        lines += [f"Note: {note}." for note in notes] + ([""] if notes else [])
    if any(group["passkey"] for group in groups.values()):
        trials = sorted(
            {t for group in groups.values() if group["passkey"] for t in group["passkey"]["trials_per_length"]}
        )
        lines += ["## Passkey retrieval", ""]
        lines += [f"Accuracy: share of the {', '.join(map(str, trials))} trials per length whose first generated"]
        lines += ["integer equals the key (greedy decoding). Lengths are prompt budgets in tokens.", ""]
        lines += [_by_length_table(groups, "passkey", "accuracy", percent), ""]
        if "passkey.png" in figures:
            lines += ["![Passkey accuracy against length](passkey.png)", ""]
        grids = [name for name in figures if name.startswith("passkey-")]
        lines += [f"![Passkey accuracy by depth and length: {name[8:-4]}]({name})" for name in grids] + [""]
    lines += ["## Runs", "", _runs_table(groups), ""]
    notes = [f"- {note}" for note in general_notes]
    notes += [f"- {label}: {note}" for label, group in groups.items() for note in group["notes"]]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.strip(), ""]
        lines += [f"![{name}]({name})" for name in section.figures] + ([""] if section.figures else [])
    return "\n".join(lines)


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    data: str | Path | None = None,
    evaluate_missing: bool = True,
    device: str = "auto",
    progress: bool = True,
    extra_sections: Sequence[SectionBuilder] = (),
    perplexity_options: Mapping[str, Any] | None = None,
    passkey_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``fope compare``: ``report.md``, ``results.json`` and PNG figures in ``out_dir`` for runs grouped by label.

    Missing evaluations are run first (``evaluate_missing``) with ``perplexity_options`` / ``passkey_options``
    passed to ``evaluate_run_perplexity`` / ``evaluate_run_passkey``. Returns what ``results.json`` holds.
    """
    if not run_dirs:
        raise ValueError("compare_runs needs at least one run directory; got none")
    runs = [
        load_results(
            run_dir,
            data=data,
            evaluate_missing=evaluate_missing,
            device=device,
            progress=progress,
            perplexity_options=perplexity_options,
            passkey_options=passkey_options,
        )
        for run_dir in run_dirs
    ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = aggregate(runs)
    figures = draw_figures(groups, out_dir)
    sections = [build(runs, out_dir) for build in extra_sections]
    title = title or "Length generalization: " + ", ".join(groups)
    described = None if data is None else str(Path(data).resolve())
    notes = settings_notes(runs)
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
