"""Verdicts in words, made from a ``contrast`` and nothing else: which side is lower, by how much, with the standard
error of the difference, and whether that is a clear difference or not: outside the two-sided 95% Student t interval
around 0 (``stats.critical_value``: 4.30 standard errors with 3 paired seeds, 2.78 with 5).

The difference is paired by seed where both sides share two or more seeds (``paired_difference``: the seed's model
init, data order and FoPE coefficients cancel; k - 1 degrees of freedom), otherwise unpaired
(``sqrt(s_a²/n_a + s_b²/n_b)``, Welch's degrees of freedom); with one run on a side there is no spread and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fope.report.stats import ROUNDING, critical_value, finite


def _decimals(scale: float) -> int:
    """3 decimals, or enough for two significant digits of a smaller ``scale`` (a standard error of 0.00004)."""
    if not math.isfinite(scale) or scale == 0 or scale >= 0.001:
        return 3
    return min(8, 1 - math.floor(math.log10(scale)))


def _where(result: Mapping[str, Any]) -> str:
    return f"at {result['multiple']:g}x ({result['length']} tokens)"


def _estimate(result: Mapping[str, Any], difference: str, side: str) -> tuple[float, float, float, str] | None:
    """``(difference, standard error, degrees of freedom, basis)`` of a contrast: paired by seed where both sides
    share two or more seeds, else unpaired; None with one run on a side. ``side`` names the per-side summaries."""
    paired = result.get("paired")
    if paired is not None:
        basis = f"n={paired['n']}, paired by seed"
        freedom = paired.get("degrees_of_freedom", paired["n"] - 1)
        return paired["difference"], paired["standard_error"], freedom, basis
    if result["standard_error"] is None:
        return None
    n_a, n_b = result[f"{side}_a"]["n"], result[f"{side}_b"]["n"]
    freedom = result.get("degrees_of_freedom", min(n_a, n_b) - 1)  # without Welch's: the conservative count
    return result[difference], result["standard_error"], freedom, f"n={n_b} and {n_a}, unpaired"


def _judged(sentence: str, difference: float, error: float, freedom: float) -> str:
    """The sentence with its verdict: clear outside the 95% t interval (``critical_value`` standard errors)."""
    if not finite(difference, error, freedom):
        return f"{sentence}: a non-finite value (a diverged run?): no verdict"
    threshold = critical_value(freedom)
    if abs(difference) <= threshold * error:
        return f"{sentence}: no clear difference (within {threshold:.2f} standard errors, the 95% t interval)"
    if error <= ROUNDING * abs(difference):  # differences equal on every seed, up to float rounding
        return f"{sentence}: a clear difference (its standard error is 0)"
    return f"{sentence}: a clear difference ({abs(difference) / error:.1f} standard errors, beyond {threshold:.2f})"


def verdict(result: Mapping[str, Any] | None, what: str) -> str:
    """``what: B lower than A at 16x (2048 tokens) by 0.512 ± 0.081 log-ppl (n=3, paired by seed): a clear
    difference (6.3 standard errors, beyond 4.30)``, from ``fope.report.stats.contrast`` (None: not evaluated on
    both sides)."""
    if result is None:
        return f"{what}: not evaluated on both sides yet"
    estimate = _estimate(result, "log_perplexity_difference", "perplexity")
    if estimate is None:
        difference = result["log_perplexity_difference"]
        b_minus_a = f"{result['b']} minus {result['a']} {_where(result)} is {difference:+.3f} log-ppl"
        return f"{what}: {b_minus_a}; one run on a side: no spread, no verdict"
    difference, error, freedom, basis = estimate
    lower, higher = (result["b"], result["a"]) if difference < 0 else (result["a"], result["b"])
    digits = _decimals(error or abs(difference))
    size = f"by {abs(difference):.{digits}f} ± {error:.{digits}f} log-ppl ({basis})"
    return _judged(f"{what}: {lower} lower than {higher} {_where(result)} {size}", difference, error, freedom)


def passkey_verdict(result: Mapping[str, Any] | None, what: str) -> str:
    """``what: B above A at 2x (256 tokens) by 31 ± 4 points of passkey accuracy (n=3, paired by seed): a clear
    difference (7.8 standard errors, beyond 4.30)``, from ``fope.report.stats.passkey_contrast``."""
    if result is None:
        return f"{what}: passkey not evaluated on both sides at this length yet"
    estimate = _estimate(result, "difference", "accuracy")
    if estimate is None:
        points = 100 * result["difference"]
        minus = f"passkey accuracy of {result['b']} minus {result['a']} {_where(result)} is {points:+.0f} points"
        return f"{what}: {minus}; one run on a side: no spread, no verdict"
    difference, error, freedom, basis = estimate
    if difference == 0 and error == 0:
        return f"{what}: {result['a']} and {result['b']} equal {_where(result)} ({basis}): no difference"
    higher, lower = (result["b"], result["a"]) if difference > 0 else (result["a"], result["b"])
    size = f"by {100 * abs(difference):.1f} ± {100 * error:.1f} points of passkey accuracy ({basis})"
    return _judged(f"{what}: {higher} above {lower} {_where(result)} {size}", difference, error, freedom)


def learned_verdict(label: str, group: Mapping[str, Any], threshold: float) -> str | None:
    """``rope: passkey 99.3% ± 0.6 at 1x (n=3): learned in-length (mean >= 95%)``; None without passkey at 1x."""
    passkey = group.get("passkey") or {}
    train = min(passkey.get("train_lengths") or [0]) or None
    row = next((row for row in passkey.get("by_length", []) if row["length"] == train), None)
    if row is None:
        return None
    accuracy = row["accuracy"]
    spread = f" ± {100 * accuracy['std']:.1f}" if accuracy["std"] is not None else ""
    learned = "learned in-length" if accuracy["mean"] >= threshold else "not learned in-length"
    return (
        f"{label}: passkey {100 * accuracy['mean']:.1f}%{spread} at 1x ({train} tokens, n={accuracy['n']}): "
        f"{learned} (mean {'>=' if accuracy['mean'] >= threshold else '<'} {threshold:.0%})"
    )
