"""The figures of a report, drawn with matplotlib's object API (Agg, no global pyplot state) from aggregated numbers.

Lines are the mean over a configuration's runs with a min-max band; the legend gives each section's n.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

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
        axes.plot(x, mean, marker="o", color=_color(index), label=f"{label} (n={numbers.get('n', group['n'])})")
        if numbers.get("n", group["n"]) > 1:
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
        axes.plot(centers, mean, marker="o", color=_color(index), label=f"{label} (n={numbers.get('n', group['n'])})")
        if numbers.get("n", group["n"]) > 1:
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
