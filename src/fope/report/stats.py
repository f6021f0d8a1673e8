"""The numbers of a report (pure, from results already computed): mean, sample std, n, min and max over the runs of
one configuration; contrasts between configurations with standard errors, unpaired and paired by seed."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fope.evaluate.results import PASSKEY, PERPLEXITY
from fope.report.load import RunResults

#: Keys of a run summary that may differ between runs of one configuration.
PER_RUN_KEYS = {"path", "label", "seed", "step", "checkpoint"}
#: A standard error below this fraction of its difference is float rounding (0.7 - 0.5 and 0.8 - 0.6 differ).
ROUNDING = 1e-9
#: Two-sided confidence of the verdicts: a difference is clear when it lies outside the 95% t interval around 0.
CONFIDENCE = 0.95


def critical_value(degrees_of_freedom: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student t critical value: 4.30 at 2 degrees of freedom (3 paired seeds), 1.96 for very many.

    A difference is clear beyond this many standard errors. With 3 seeds a fixed 2 would call a difference clear at
    about 82% confidence (3 paired seeds), not 95%.
    """
    if not degrees_of_freedom > 0:
        raise ValueError(f"degrees of freedom must be > 0; got {degrees_of_freedom}")
    from scipy.stats import t  # imported here: only verdicts need it

    return float(t.ppf(0.5 + confidence / 2, degrees_of_freedom))


def welch_degrees_of_freedom(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of an unpaired difference (``n_a + n_b - 2`` when neither side varies)."""
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    denominator = va**2 / (n_a - 1) + vb**2 / (n_b - 1)
    if va + vb == 0 or denominator == 0:  # no spread (or one too small to square): the pooled count
        return float(n_a + n_b - 2)
    return (va + vb) ** 2 / denominator


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


def _seed(result: Mapping[str, Any]) -> int | None:
    return (result.get("run") or {}).get("seed")


def aggregate_perplexity(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Per length, mean and spread over runs of loss, perplexity, bits per byte, ratio to 1x; buckets at the longest.

    Each length also keeps every run's loss with its seed (``per_run``), for contrasts paired by seed.
    """
    if not results:
        return None
    by_length: dict[int, dict[str, list[float]]] = {}
    per_run: dict[int, list[dict[str, Any]]] = {}
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
            per_run.setdefault(length, []).append({"seed": _seed(result), "loss": record["loss"]})
    train_lengths = sorted({result["train_length"] for result in results})
    rows = []
    for length in sorted(by_length):
        values = by_length[length]
        rows.append(
            {
                "length": length,
                "multiple": length / train_lengths[0],
                **{key: mean_spread(v) if v else None for key, v in values.items()},
                "per_run": per_run[length],
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
        "n": len(results),
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


def _mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate_passkey(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean and spread over runs of passkey accuracy per length; the depth x length grid averaged over runs.

    ``per_run`` keeps each run's seed and its accuracy averaged over the lengths <= and > its training length."""
    if not results:
        return None
    accuracy: dict[int, list[float]] = {}
    seeded: dict[int, list[dict[str, Any]]] = {}
    per_run = []
    for result in results:
        for row in result["by_length"]:
            accuracy.setdefault(row["length"], []).append(row["accuracy"])
            seeded.setdefault(row["length"], []).append({"seed": _seed(result), "accuracy": row["accuracy"]})
        rows, train_length = result["by_length"], result["train_length"]
        per_run.append(
            {
                "seed": _seed(result),
                "in_length": _mean_or_none([row["accuracy"] for row in rows if row["length"] <= train_length]),
                "past_length": _mean_or_none([row["accuracy"] for row in rows if row["length"] > train_length]),
            }
        )
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
        "n": len(results),
        "train_lengths": sorted({result["train_length"] for result in results}),
        "trials_per_length": sorted({result["trials_per_length"] for result in results}),
        "by_length": [
            {"length": length, "accuracy": mean_spread(accuracy[length]), "per_run": seeded[length]}
            for length in lengths
        ],
        "depth_bins": depth_bins,
        "grid_lengths": lengths,
        "grid_accuracy": [[None if math.isnan(v) else float(v) for v in row] for row in grid],
        "per_run": per_run,
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
    for evaluation in (PERPLEXITY, PASSKEY):
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
    """Numbers per configuration (label): its runs and seeds, perplexity and passkey aggregated over them.

    A run without a result of an evaluation that other runs of the report have is left out of that evaluation's
    numbers (each section has its own ``n``), listed in the group's ``missing`` and named in its notes; a
    configuration where every run lacks it has None there (shown as "missing" cells).
    """
    evaluated = {kind: any(getattr(run, kind) is not None for run in runs) for kind in (PERPLEXITY, PASSKEY)}
    groups = {}
    for label, members in group_by_label(runs).items():
        differences = _configuration_differences(members)
        notes = [note for run in members for note in run.notes]
        if differences:
            notes.append(f"runs labeled {label!r} differ in {', '.join(differences)}; they are aggregated anyway")
        missing = {
            kind: [str(run.path) for run in members if getattr(run, kind) is None]
            for kind in (PERPLEXITY, PASSKEY)
            if evaluated[kind]
        }
        notes += [run.missing_note(kind) for kind in missing for run in members if getattr(run, kind) is None]
        groups[label] = {
            "n": len(members),
            "runs": [
                {"path": str(run.path), "seed": run.seed, "step": run.summary.get("step"), "summary": run.summary}
                for run in members
            ],
            "perplexity": aggregate_perplexity([run.perplexity for run in members if run.perplexity is not None]),
            "passkey": aggregate_passkey([run.passkey for run in members if run.passkey is not None]),
            "missing": {kind: paths for kind, paths in missing.items() if paths},
            "notes": notes,
        }
    return groups


# ------------------------------------------------------------------ summaries of aggregated groups


def by_length(group: Mapping[str, Any], length: int) -> dict[str, Any] | None:
    """The aggregated perplexity record of a group at ``length`` (None when it was not evaluated there)."""
    numbers = group.get("perplexity")
    if numbers is None:
        return None
    return next((row for row in numbers["by_length"] if row["length"] == length), None)


def passkey_spreads(group: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Per-run passkey accuracy averaged over lengths <= and > the training length, as spreads over the runs."""
    runs = (group.get("passkey") or {}).get("per_run", [])
    inside = [run["in_length"] for run in runs if run["in_length"] is not None]
    beyond = [run["past_length"] for run in runs if run["past_length"] is not None]
    return (mean_spread(inside) if inside else None, mean_spread(beyond) if beyond else None)


def paired_difference(row_a: Mapping[str, Any], row_b: Mapping[str, Any], key: str = "loss") -> dict[str, Any] | None:
    """``key`` (loss; passkey rows: accuracy) of b minus that of a, paired by seed: mean over the shared seeds and its
    standard error ``s_d / sqrt(k)``.

    None with fewer than two shared seeds, or when a side has no per-run values or a seed twice.
    """
    sides = []
    for row in (row_a, row_b):
        runs = row.get("per_run") or []
        seeds = {run["seed"]: run[key] for run in runs}
        if None in seeds or len(seeds) != len(runs):
            return None
        sides.append(seeds)
    shared = sorted(set(sides[0]) & set(sides[1]))
    if len(shared) < 2:
        return None
    differences = np.array([sides[1][seed] - sides[0][seed] for seed in shared])
    return {
        "n": len(shared),
        "degrees_of_freedom": len(shared) - 1,
        "seeds": shared,
        "difference": float(differences.mean()),
        "standard_error": float(differences.std(ddof=1) / math.sqrt(len(shared))),
    }


def contrast(groups: Mapping[str, Any], a: str, b: str, length: int) -> dict[str, Any] | None:
    """``b`` against ``a`` at ``length``: both perplexities, and the difference of mean log-perplexity (nats per
    token) with its standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)``; None when either was not evaluated there.

    ``paired`` is the same difference paired by seed (``paired_difference``) where both sides share two or more
    seeds; the verdict rests on the unpaired standard error."""
    rows = [by_length(groups[label], length) if label in groups else None for label in (a, b)]
    if any(row is None for row in rows):
        return None
    (loss_a, loss_b), (ppl_a, ppl_b) = ([row[key] for row in rows] for key in ("loss", "perplexity"))
    difference = loss_b["mean"] - loss_a["mean"]
    error, freedom = _unpaired_error(loss_a, loss_b)
    return {
        "a": a,
        "b": b,
        "length": length,
        "multiple": rows[0]["multiple"],
        "perplexity_a": ppl_a,
        "perplexity_b": ppl_b,
        "log_perplexity_difference": difference,
        "standard_error": error,
        "degrees_of_freedom": freedom,
        "paired": paired_difference(rows[0], rows[1]),
        "verdict": _verdict(difference, error, freedom, a, b),
    }


def passkey_contrast(groups: Mapping[str, Any], a: str, b: str, length: int) -> dict[str, Any] | None:
    """Passkey accuracy of ``b`` minus ``a`` at ``length``: both accuracies, the difference of the means with its
    unpaired standard error and, with two or more shared seeds, paired by seed; None when either lacks the length."""
    rows = []
    for label in (a, b):
        passkey = (groups.get(label) or {}).get("passkey") or {}
        rows.append(next((row for row in passkey.get("by_length", []) if row["length"] == length), None))
    if any(row is None for row in rows):
        return None
    acc_a, acc_b = rows[0]["accuracy"], rows[1]["accuracy"]
    error, freedom = _unpaired_error(acc_a, acc_b)
    train = min(groups[a]["passkey"]["train_lengths"])
    return {
        "a": a,
        "b": b,
        "length": length,
        "multiple": length / train,
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "difference": acc_b["mean"] - acc_a["mean"],
        "standard_error": error,
        "degrees_of_freedom": freedom,
        "paired": paired_difference(rows[0], rows[1], key="accuracy"),
    }


def _unpaired_error(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Standard error ``sqrt(s_a²/n_a + s_b²/n_b)`` of the difference of two spreads and its Welch degrees of
    freedom; ``(None, None)`` when a side has one run."""
    if a["std"] is None or b["std"] is None:
        return None, None
    error = (a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]) ** 0.5
    return error, welch_degrees_of_freedom(a["std"], a["n"], b["std"], b["n"])


def finite(*values: float) -> bool:
    return all(math.isfinite(value) for value in values)


def _verdict(difference: float, error: float | None, freedom: float | None, a: str, b: str) -> str:
    if error is None or freedom is None:
        return "one run on a side: no spread, no conclusion"
    if not finite(difference, error, freedom):
        return "a non-finite value (a diverged run?): no conclusion"
    threshold = critical_value(freedom)
    if abs(difference) <= threshold * error:
        return f"within the 95% interval ({threshold:.2f} standard errors at df {freedom:.3g}): no clear difference"
    better = a if difference > 0 else b
    if error <= ROUNDING * abs(difference):
        return f"{better} is lower (no spread on either side)"
    return f"{better} is lower ({abs(difference) / error:.1f} standard errors, beyond {threshold:.2f})"
