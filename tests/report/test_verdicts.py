"""Verdict sentences from contrasts: paired by seed when seeds are shared, unpaired otherwise, none for one run."""

from __future__ import annotations

import math
import statistics

from fope.report import contrast
from fope.report.verdicts import verdict


def group(losses_by_seed: dict[int, float], length: int = 512, train_length: int = 32) -> dict:
    losses = list(losses_by_seed.values())

    def spread(values: list[float]) -> dict:
        std = statistics.stdev(values) if len(values) > 1 else None
        return {"n": len(values), "mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}

    row = {
        "length": length,
        "multiple": length / train_length,
        "loss": spread(losses),
        "perplexity": spread([math.exp(loss) for loss in losses]),
        "per_run": [{"seed": seed, "loss": loss} for seed, loss in losses_by_seed.items()],
    }
    return {"n": len(losses), "perplexity": {"train_lengths": [train_length], "by_length": [row]}}


def test_a_paired_difference_beyond_two_standard_errors_is_clear():
    groups = {"rope": group({0: 3.0, 1: 3.1, 2: 3.3}), "fope": group({0: 2.51, 1: 2.58, 2: 2.81})}
    # per-seed differences -0.49, -0.52, -0.49: mean -0.5, standard error stdev / sqrt(3) = 0.01
    assert verdict(contrast(groups, "rope", "fope", 512), "FoPE vs RoPE") == (
        "FoPE vs RoPE: fope lower than rope at 16x (512 tokens) by 0.500 ± 0.010 log-ppl (n=3, paired by seed): "
        "a clear difference (50.0 standard errors)"
    )


def test_a_difference_within_two_standard_errors_is_no_clear_difference():
    groups = {"fope": group({0: 2.5, 1: 2.6, 2: 2.7}), "no-fs": group({0: 2.52, 1: 2.58, 2: 2.73})}
    # differences 0.02, -0.02, 0.03: mean 0.01, standard error 0.0153
    sentence = verdict(contrast(groups, "fope", "no-fs", 512), "FS")
    assert sentence == (
        "FS: fope lower than no-fs at 16x (512 tokens) by 0.010 ± 0.015 log-ppl (n=3, paired by seed): "
        "no clear difference (within 2 standard errors)"
    )


def test_without_shared_seeds_the_difference_is_unpaired_and_with_one_run_there_is_no_verdict():
    groups = {"a": group({0: 3.0, 1: 3.2}), "b": group({5: 2.0, 6: 2.2}), "one": group({0: 1.0})}
    # unpaired standard error sqrt(s²/2 + s²/2) with s = 0.1414: 0.1414
    assert verdict(contrast(groups, "a", "b", 512), "b vs a") == (
        "b vs a: b lower than a at 16x (512 tokens) by 1.000 ± 0.141 log-ppl (n=2 and 2, unpaired): "
        "a clear difference (7.1 standard errors)"
    )
    assert verdict(contrast(groups, "a", "one", 512), "one vs a") == (
        "one vs a: one minus a at 16x (512 tokens) is -2.100 log-ppl; one run on a side: no spread, no verdict"
    )
    assert verdict(contrast(groups, "a", "absent", 512), "x") == "x: not evaluated on both sides yet"


def test_small_differences_keep_two_significant_digits_of_their_standard_error():
    groups = {"a": group({0: 3.0, 1: 3.1}), "b": group({0: 3.0001, 1: 3.10014})}
    # differences 0.0001 and 0.00014: mean 0.00012, standard error 0.00002
    assert verdict(contrast(groups, "a", "b", 512), "tiny") == (
        "tiny: a lower than b at 16x (512 tokens) by 0.000120 ± 0.000020 log-ppl (n=2, paired by seed): "
        "a clear difference (6.0 standard errors)"
    )
