"""Verdicts in words, made from a ``contrast`` and nothing else: which side is lower, by how much, with the standard
error of the difference, and whether that is a clear difference (more than 2 standard errors) or not.

The difference is paired by seed where both sides share two or more seeds (``paired_difference``: the seed's model
init, data order and FoPE coefficients cancel), otherwise unpaired (``sqrt(s_a²/n_a + s_b²/n_b)``); with one run on a
side there is no spread and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: A difference beyond this many standard errors is called clear.
CLEAR = 2.0


def _decimals(scale: float) -> int:
    """3 decimals, or enough for two significant digits of a smaller ``scale`` (a standard error of 0.00004)."""
    if scale == 0 or scale >= 0.001:
        return 3
    return min(8, 1 - math.floor(math.log10(scale)))


def verdict(result: Mapping[str, Any] | None, what: str) -> str:
    """``what: B lower than A at 16x (2048 tokens) by 0.512 ± 0.081 log-ppl (n=3, paired by seed): a clear
    difference (6.3 standard errors)``, from ``fope.report.stats.contrast`` (None: not evaluated on both sides)."""
    if result is None:
        return f"{what}: not evaluated on both sides yet"
    where = f"at {result['multiple']:g}x ({result['length']} tokens)"
    paired = result.get("paired")
    if paired is not None:
        difference, error, basis = paired["difference"], paired["standard_error"], f"n={paired['n']}, paired by seed"
    elif result["standard_error"] is not None:
        n_a, n_b = result["perplexity_a"]["n"], result["perplexity_b"]["n"]
        difference, error = result["log_perplexity_difference"], result["standard_error"]
        basis = f"n={n_b} and {n_a}, unpaired"
    else:
        difference = result["log_perplexity_difference"]
        b_minus_a = f"{result['b']} minus {result['a']} {where} is {difference:+.3f} log-ppl"
        return f"{what}: {b_minus_a}; one run on a side: no spread, no verdict"
    lower, higher = (result["b"], result["a"]) if difference < 0 else (result["a"], result["b"])
    digits = _decimals(error or abs(difference))
    size = f"by {abs(difference):.{digits}f} ± {error:.{digits}f} log-ppl ({basis})"
    sentence = f"{what}: {lower} lower than {higher} {where} {size}"
    if abs(difference) <= CLEAR * error:
        return f"{sentence}: no clear difference (within {CLEAR:g} standard errors)"
    if error == 0:
        return f"{sentence}: a clear difference"
    return f"{sentence}: a clear difference ({abs(difference) / error:.1f} standard errors)"
