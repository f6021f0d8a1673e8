"""The diagnostics' figures (PNG). Each function takes the JSON-able results (or tensors) and a path.

Figures are built with ``matplotlib.figure.Figure`` and saved with the Agg canvas: no pyplot state, no GUI backend.
Every figure marks the training length (distances) or the floor ``2*pi/train_length`` (frequencies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_attention_spectrum",
    "plot_behaviour_comparison",
    "plot_coefficients",
    "plot_context_behaviour",
    "plot_damage",
    "plot_frequency_map",
    "plot_magnitudes",
    "plot_position_spectrum",
    "plot_score_by_distance",
]

FLOOR_STYLE = {"color": "crimson", "linestyle": "--", "linewidth": 1.2}
DPI = 110


def _grid(count: int, width: float = 4.2, height: float = 3.2, max_columns: int = 4) -> tuple[Figure, list]:
    columns = min(count, max_columns)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def _floor_pair(below_floor: Sequence[bool]) -> float | None:
    """x position between the last pair above the floor and the first below it (None when no pair is below)."""
    below = [i for i, flag in enumerate(below_floor) if flag]
    return below[0] - 0.5 if below else None


def plot_frequency_map(frequency_map: Mapping[str, Any], path: str | Path) -> Path:
    """Frequency and period (in training lengths) of every rotary frequency index; kept / zeroed by FoPE."""
    base = np.asarray(frequency_map["base_frequencies"])
    index = np.arange(base.size)
    keeps = np.asarray(frequency_map["fope_keeps"])
    used = np.asarray(frequency_map["frequencies"])
    train_length, floor = frequency_map["train_length"], frequency_map["floor"]
    figure = Figure(figsize=(11, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.semilogy(index[keeps], base[keeps], "o", color="tab:blue", label="RoPE frequency, kept by FoPE")
    left.semilogy(index[~keeps], base[~keeps], "x", color="tab:gray", label="RoPE frequency, zeroed by FoPE")
    shown = used > 0
    if not np.allclose(used[shown], base[shown]):  # PI / YaRN / ... rescaled what the module uses
        left.semilogy(
            index[shown], used[shown], ".", color="tab:orange", label=f"used by this {frequency_map['scheme']}"
        )
    left.axhline(floor, **FLOOR_STYLE, label=f"floor 2π/L = {floor:.3g} (L = {train_length})")
    left.set(xlabel="frequency index i", ylabel="frequency w_i (rad / token)", title="Rotary frequencies")
    left.legend(fontsize=8)
    ratio = np.asarray(frequency_map["period_over_train_length"])
    right.semilogy(index[keeps], ratio[keeps], "o", color="tab:blue", label="kept by FoPE")
    right.semilogy(index[~keeps], ratio[~keeps], "x", color="tab:gray", label="zeroed by FoPE")
    right.axhline(1.0, **FLOOR_STYLE, label="period = training length")
    right.set(xlabel="frequency index i", ylabel="period 2π/w_i  /  training length", title="Periods")
    right.legend(fontsize=8)
    figure.suptitle(
        f"{frequency_map['scheme']}: {int(keeps.sum())} of {base.size} frequencies complete a turn "
        f"within L = {train_length}"
    )
    return _save(figure, path)


def plot_coefficients(
    cos_coef: np.ndarray, sin_coef: np.ndarray, frequencies: Sequence[float], path: str | Path, title: str
) -> Path:
    """FoPE's coefficient matrices ``(Hc, K, d_out)`` as heatmaps: one column per head, cos on top, sin below."""
    cos_coef, sin_coef = np.asarray(cos_coef), np.asarray(sin_coef)
    heads, kept, _ = cos_coef.shape
    limit = float(max(np.abs(cos_coef).max(), np.abs(sin_coef).max(), 1e-12))
    figure = Figure(figsize=(2.2 * heads + 1.5, 2 * 0.25 * kept + 2.5), layout="constrained")
    axes = figure.subplots(2, heads, squeeze=False)
    labels = [f"{w:.3g}" for w in frequencies]
    image = None
    for head in range(heads):
        for row, (name, matrix) in enumerate((("cos_coef", cos_coef), ("sin_coef", sin_coef))):
            axis = axes[row, head]
            image = axis.imshow(matrix[head], cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            axis.set_title(f"{name}, head {head}", fontsize=9)
            axis.set_xlabel("output pair j", fontsize=8)
            axis.set_yticks(range(kept), labels if head == 0 else [""] * kept, fontsize=7)
            if head == 0:
                axis.set_ylabel("kept frequency w_k", fontsize=8)
    figure.colorbar(image, ax=axes, label="coefficient (identity = 1)", shrink=0.8)
    figure.suptitle(title)
    return _save(figure, path)


def plot_attention_spectrum(spectrum: Mapping[str, Any], path: str | Path) -> Path:
    """Per layer: amplitude ``A_k`` per head (thin), its head mean (bold) and the mean coherent ``|c_k|`` (dashed)."""
    frequencies = np.asarray(spectrum["frequencies"])
    amplitude, coherent = np.asarray(spectrum["amplitude"]), np.asarray(spectrum["coherent"])
    shown = frequencies > 0
    figure, axes = _grid(amplitude.shape[0])
    for layer, axis in enumerate(axes):
        for head in range(amplitude.shape[1]):
            axis.loglog(frequencies[shown], amplitude[layer, head, shown], color="tab:blue", alpha=0.25, linewidth=0.8)
        axis.loglog(
            frequencies[shown], amplitude[layer][:, shown].mean(0), color="tab:blue", label="amplitude (heads: thin)"
        )
        axis.loglog(
            frequencies[shown], coherent[layer][:, shown].mean(0), "--", color="tab:green", label="coherent |c_k|"
        )
        axis.axvline(spectrum["floor"], **FLOOR_STYLE, label="floor 2π/L")
        axis.set(xlabel="frequency w_k (rad / token)", ylabel="coefficient", title=f"layer {layer}")
        axis.legend(fontsize=7)
    figure.suptitle(f"Attention spectrum: per-frequency q·k coefficients (L = {spectrum['train_length']})")
    return _save(figure, path)


def plot_score_by_distance(scores: Mapping[str, Any], path: str | Path) -> Path:
    """Per layer: the mean attention logit against distance (head mean), measured and, for rotary, its spectrum."""
    measured = np.asarray(scores["measured"])
    predicted = None if scores.get("predicted") is None else np.asarray(scores["predicted"])
    distance = np.arange(measured.shape[-1])
    figure, axes = _grid(measured.shape[0], width=5)
    for layer, axis in enumerate(axes):
        axis.plot(distance, measured[layer], color="tab:blue", linewidth=0.9, label="measured mean logit")
        if predicted is not None:
            axis.plot(distance, predicted[layer], "--", color="tab:green", linewidth=0.9, label="stationary spectrum")
        axis.axvline(scores["train_length"], **FLOOR_STYLE, label="training length")
        axis.set(xlabel="distance m - n (tokens)", ylabel="q·k / sqrt(d) (+ bias)", title=f"layer {layer}")
        axis.legend(fontsize=7)
    figure.suptitle("Attention score against relative distance (mean over heads and positions)")
    return _save(figure, path)


def plot_position_spectrum(
    frequencies: np.ndarray, power: np.ndarray, floor: float, path: str | Path, pair_frequencies: Sequence[float]
) -> Path:
    """Per layer: log power of the un-rotated q/k pairs along positions (pair x frequency), floor marked."""
    frequencies, power = np.asarray(frequencies), np.asarray(power)
    figure, axes = _grid(power.shape[0], width=5)
    pairs = power.shape[1]
    image = None
    top = float(np.log10(power.max() + 1e-30))  # one colour scale for every layer: 6 decades below the top
    for layer, axis in enumerate(axes):
        log_power = np.log10(power[layer] + 1e-30)
        image = axis.imshow(
            log_power,
            aspect="auto",
            origin="lower",
            cmap="magma",
            vmin=top - 6,
            vmax=top,
            extent=(frequencies[0], frequencies[-1], -0.5, pairs - 0.5),
        )
        for sign in (-1, 1):
            axis.axvline(sign * floor, **FLOOR_STYLE)
        own = [w if w is not None else np.nan for w in pair_frequencies]
        axis.plot(own, np.arange(pairs), ".", color="cyan", markersize=3, label="pair's rotary frequency")
        axis.set_xscale("symlog", linthresh=max(floor / 4, 1e-4))
        axis.set(xlabel="frequency along positions (rad / token)", ylabel="rotary pair j", title=f"layer {layer}")
        axis.legend(fontsize=7, loc="upper right")
    figure.colorbar(image, ax=axes, label="log10 power (q and k, mean over heads)", shrink=0.8)
    figure.suptitle("Un-rotated q/k along positions: energy off the zero frequency (dashed: ±floor)")
    return _save(figure, path)


def plot_damage(damage: Mapping[str, Any], below_floor: Sequence[bool] | None, path: str | Path) -> Path:
    """Left: share of q/k pair energy off the zero frequency per pair and layer. Right: tone-probe results per layer."""
    probes = damage["probe"]
    has_pairs = damage.get("queries") is not None
    figure = Figure(figsize=(12 if has_pairs else 6, 4), layout="constrained")
    axes = figure.subplots(1, 2 if has_pairs else 1, squeeze=False).ravel()
    if has_pairs:
        axis = axes[0]
        query = np.asarray(damage["queries"]["away_from_zero"]).mean(1)
        key = np.asarray(damage["keys"]["away_from_zero"]).mean(1)
        colors = [f"C{i % 10}" for i in range(query.shape[0])]
        for layer in range(query.shape[0]):
            axis.plot(query[layer], color=colors[layer], label=f"layer {layer} q")
            axis.plot(key[layer], ":", color=colors[layer], label=f"layer {layer} k")
        floor_x = _floor_pair(below_floor) if below_floor is not None else None
        if floor_x is not None:
            axis.axvline(floor_x, **FLOOR_STYLE, label="RoPE floor (right: under-trained)")
        axis.set(xlabel="rotary pair j", ylabel="energy off the zero frequency", ylim=(0, 1.02))
        axis.set_title("Leakage along positions (real text)")
        axis.legend(fontsize=6, ncol=2)
    axis = axes[-1]
    stages = list(probes[0])
    width = 0.8 / (2 * len(stages))
    layers = np.arange(len(probes))
    for s, stage in enumerate(stages):
        distortion = [entry[stage]["distortion"] for entry in probes]
        leakage = [entry[stage]["leakage"] for entry in probes]
        axis.bar(layers + (2 * s) * width, distortion, width, color=f"C{s}", label=f"{stage}: distortion")
        axis.bar(
            layers + (2 * s + 1) * width,
            leakage,
            width,
            color=f"C{s}",
            alpha=0.45,
            hatch="//",
            label=f"{stage}: leakage",
        )
    axis.set_xticks(layers + 0.4 - width / 2, [str(layer) for layer in layers])
    axis.set(xlabel="layer", ylabel="share of output energy", ylim=(0, 1.3), title="Tone probe through each block")
    axis.legend(fontsize=7, ncol=len(stages), loc="upper center")
    return _save(figure, path)


def plot_magnitudes(magnitudes: Mapping[str, Any], frequency_map: Mapping[str, Any], path: str | Path) -> Path:
    """Mean |q_j| and |k_j| per rotary pair (head mean, a line per layer); under-trained, zero-frequency shaded."""
    query, key = np.asarray(magnitudes["queries"]).mean(1), np.asarray(magnitudes["keys"]).mean(1)
    pairs = np.arange(query.shape[1])
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    under = frequency_map["pair_under_trained"]
    zero = [w == 0.0 for w in frequency_map["pair_frequencies"]]
    for axis, values, name in ((axes[0], query, "query"), (axes[1], key, "key")):
        for layer in range(values.shape[0]):
            axis.plot(pairs, values[layer], color=f"C{layer % 10}", label=f"layer {layer}")
        for flags, color, label in (
            (under, "crimson", "under-trained (0 < w < floor)"),
            (zero, "gray", "zero frequency"),
        ):
            marked = [j for j, flag in enumerate(flags) if flag]
            if marked:
                axis.axvspan(marked[0] - 0.5, marked[-1] + 0.5, color=color, alpha=0.12, label=label)
        axis.set(xlabel="rotary pair j (frequency decreasing →)", ylabel=f"mean |{name[0]}_j|", title=f"{name} pairs")
        axis.legend(fontsize=7)
    figure.suptitle(f"Activation size per rotary pair (L = {frequency_map['train_length']})")
    return _save(figure, path)


def _behaviour_means(behaviour: Mapping[str, Any], key: str) -> np.ndarray:
    return np.asarray([np.mean(context[key]) for context in behaviour["contexts"]])


def _draw_mass_by_distance(axis: Any, context: Mapping[str, Any], label: str) -> None:
    """Attention per key at each distance bucket (bucket mass / bucket width, mean over layers and heads)."""
    edges = np.asarray(context["bucket_edges"], dtype=float)
    density = np.asarray(context["mass_by_bucket"]).mean((0, 1)) / (edges[:, 1] - edges[:, 0])
    axis.stairs(density, np.append(np.maximum(edges[:, 0], 0.5), edges[-1, 1]), label=label)


def plot_context_behaviour(behaviour: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Per layer: entropy of every head against context length; last panel: attention per key by distance."""
    multiples = behaviour["multiples"]
    contexts = behaviour["contexts"]
    entropy = np.asarray([context["entropy"] for context in contexts])  # (contexts, layers, heads)
    # uniform attention over the m + 1 visible keys, averaged over queries: mean_m ln(m + 1) = ln(T!) / T
    uniform = [math.lgamma(context["length"] + 1) / context["length"] for context in contexts]
    figure, axes = _grid(entropy.shape[1] + 1)
    for layer, axis in enumerate(axes[:-1]):
        for head in range(entropy.shape[2]):
            axis.plot(multiples, entropy[:, layer, head], "o-", markersize=3, label=f"head {head}")
        axis.plot(multiples, uniform, "k:", label="uniform attention")
        axis.axvline(1.0, **FLOOR_STYLE)
        axis.set_xscale("log", base=2)
        axis.set(xlabel="context / training length", ylabel="mean attention entropy (nats)", title=f"layer {layer}")
        axis.legend(fontsize=6, ncol=2)
    axis = axes[-1]
    for context, multiple in zip(contexts, multiples, strict=True):
        _draw_mass_by_distance(axis, context, f"{multiple:g}x")
    axis.axvline(behaviour["train_length"], **FLOOR_STYLE, label="training length")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set(xlabel="distance (tokens)", ylabel="attention per key", title="attention by distance")
    axis.legend(fontsize=7)
    figure.suptitle(title or "Attention past the training length")
    return _save(figure, path)


def plot_behaviour_comparison(named: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Several models side by side: entropy, entropy / ln(keys), mass beyond L, against context; mass by distance."""
    figure = Figure(figsize=(17, 4), layout="constrained")
    axes = figure.subplots(1, 4)
    panels = (
        ("entropy", "mean attention entropy (nats)"),
        ("normalized_entropy", "mean entropy / ln(keys)"),
        ("mass_beyond_train_length", "attention mass at distance ≥ L"),
    )
    for axis, (key, label) in zip(axes, panels, strict=False):
        for name, behaviour in named.items():
            axis.plot(behaviour["multiples"], _behaviour_means(behaviour, key), "o-", label=name)
        axis.axvline(1.0, **FLOOR_STYLE)
        axis.set_xscale("log", base=2)
        axis.set(xlabel="context / training length", ylabel=label)
        axis.legend(fontsize=8)
    axis = axes[3]
    for name, behaviour in named.items():
        _draw_mass_by_distance(axis, behaviour["contexts"][-1], f"{name} ({behaviour['multiples'][-1]:g}x)")
        axis.axvline(behaviour["train_length"], **FLOOR_STYLE)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set(xlabel="distance (tokens)", ylabel="attention per key", title="at the longest context")
    axis.legend(fontsize=8)
    figure.suptitle("Attention past the training length (means over layers and heads; dashed: training length)")
    return _save(figure, path)
