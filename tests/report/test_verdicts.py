"""Verdict sentences from contrasts: paired by seed when seeds are shared, unpaired otherwise, none for one run."""

from __future__ import annotations

import math
import statistics

import pytest

from fope.report import contrast, passkey_contrast
from fope.report.stats import critical_value, welch_degrees_of_freedom
from fope.report.verdicts import learned_verdict, passkey_verdict, verdict


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


def test_a_paired_difference_outside_the_95_percent_t_interval_is_clear():
    groups = {"rope": group({0: 3.0, 1: 3.1, 2: 3.3}), "fope": group({0: 2.51, 1: 2.58, 2: 2.81})}
    # per-seed differences -0.49, -0.52, -0.49: mean -0.5, standard error stdev / sqrt(3) = 0.01
    assert verdict(contrast(groups, "rope", "fope", 512), "FoPE vs RoPE") == (
        "FoPE vs RoPE: fope lower than rope at 16x (512 tokens) by 0.500 ± 0.010 log-ppl (n=3, paired by seed): "
        "a clear difference (50.0 standard errors, beyond 4.30)"
    )


def test_a_difference_inside_the_95_percent_t_interval_is_no_clear_difference():
    groups = {"fope": group({0: 2.5, 1: 2.6, 2: 2.7}), "no-fs": group({0: 2.52, 1: 2.58, 2: 2.73})}
    # differences 0.02, -0.02, 0.03: mean 0.01, standard error 0.0153
    sentence = verdict(contrast(groups, "fope", "no-fs", 512), "FS")
    assert sentence == (
        "FS: fope lower than no-fs at 16x (512 tokens) by 0.010 ± 0.015 log-ppl (n=3, paired by seed): "
        "no clear difference (within 4.30 standard errors, the 95% t interval)"
    )


def test_three_standard_errors_over_three_paired_seeds_are_not_clear():
    # differences 0.04, 0.06, 0.05: mean 0.05, standard error 0.00577: 8.7 standard errors, clear; then 0.02, 0.08,
    # 0.05: standard error 0.0173, 2.9 standard errors: a fixed 2 would call it clear, t at df 2 (4.30) does not
    clear = {"a": group({0: 2.0, 1: 2.1, 2: 2.2}), "b": group({0: 2.04, 1: 2.16, 2: 2.25})}
    sentence = verdict(contrast(clear, "a", "b", 512), "x")
    assert sentence.endswith("a clear difference (8.7 standard errors, beyond 4.30)")
    close = {"a": group({0: 2.0, 1: 2.1, 2: 2.2}), "b": group({0: 2.02, 1: 2.18, 2: 2.25})}
    assert verdict(contrast(close, "a", "b", 512), "x") == (
        "x: a lower than b at 16x (512 tokens) by 0.050 ± 0.017 log-ppl (n=3, paired by seed): "
        "no clear difference (within 4.30 standard errors, the 95% t interval)"
    )


def test_without_shared_seeds_the_difference_is_unpaired_and_with_one_run_there_is_no_verdict():
    groups = {"a": group({0: 3.0, 1: 3.2}), "b": group({5: 2.0, 6: 2.2}), "one": group({0: 1.0})}
    # unpaired standard error sqrt(s²/2 + s²/2) with s = 0.1414: 0.1414
    assert verdict(contrast(groups, "a", "b", 512), "b vs a") == (
        "b vs a: b lower than a at 16x (512 tokens) by 1.000 ± 0.141 log-ppl (n=2 and 2, unpaired): "
        "a clear difference (7.1 standard errors, beyond 4.30)"
    )
    assert verdict(contrast(groups, "a", "one", 512), "one vs a") == (
        "one vs a: one minus a at 16x (512 tokens) is -2.100 log-ppl; one run on a side: no spread, no verdict"
    )
    assert verdict(contrast(groups, "a", "absent", 512), "x") == "x: not evaluated on both sides yet"


def test_small_differences_keep_two_significant_digits_of_their_standard_error():
    groups = {"a": group({0: 3.0, 1: 3.1}), "b": group({0: 3.0001, 1: 3.10014})}
    # differences 0.0001 and 0.00014: mean 0.00012, standard error 0.00002; two seeds: one degree of freedom
    assert verdict(contrast(groups, "a", "b", 512), "tiny") == (
        "tiny: a lower than b at 16x (512 tokens) by 0.000120 ± 0.000020 log-ppl (n=2, paired by seed): "
        "no clear difference (within 12.71 standard errors, the 95% t interval)"
    )


def passkey_group(accuracy_by_seed: dict[int, float], length: int = 64, train_length: int = 32) -> dict:
    values = list(accuracy_by_seed.values())
    std = statistics.stdev(values) if len(values) > 1 else None
    row = {
        "length": length,
        "accuracy": {"n": len(values), "mean": statistics.fmean(values), "std": std, "min": 0, "max": 1},
        "per_run": [{"seed": seed, "accuracy": value} for seed, value in accuracy_by_seed.items()],
    }
    return {"passkey": {"train_lengths": [train_length], "by_length": [row]}}


def test_passkey_contrasts_are_paired_by_seed_in_points_of_accuracy():
    groups = {"rope": passkey_group({0: 0.40, 1: 0.50, 2: 0.45}), "fope": passkey_group({0: 0.70, 1: 0.82, 2: 0.74})}
    # per-seed differences 0.30, 0.32, 0.29: mean 0.3033, standard error 0.00882
    assert passkey_verdict(passkey_contrast(groups, "rope", "fope", 64), "passkey 2x") == (
        "passkey 2x: fope above rope at 2x (64 tokens) by 30.3 ± 0.9 points of passkey accuracy (n=3, paired by seed): "
        "a clear difference (34.4 standard errors, beyond 4.30)"
    )
    # differences 0.10, 0.02, 0.20: mean 0.107, standard error 0.052 (2.05 standard errors: inside 4.30 at df 2)
    close = {"a": passkey_group({0: 0.5, 1: 0.6, 2: 0.55}), "b": passkey_group({0: 0.6, 1: 0.62, 2: 0.75})}
    assert passkey_verdict(passkey_contrast(close, "a", "b", 64), "p").endswith(
        "by 10.7 ± 5.2 points of passkey accuracy (n=3, paired by seed): "
        "no clear difference (within 4.30 standard errors, the 95% t interval)"
    )
    assert passkey_verdict(passkey_contrast(groups, "rope", "fope", 128), "p") == (
        "p: passkey not evaluated on both sides at this length yet"
    )
    one = {"a": passkey_group({0: 0.5}), "b": passkey_group({0: 0.75})}
    assert passkey_verdict(passkey_contrast(one, "a", "b", 64), "p").endswith(
        "+25 points; one run on a side: no spread, no verdict"
    )


def test_learned_in_length_is_the_mean_at_the_training_length_against_the_threshold():
    learned = passkey_group({0: 1.0, 1: 0.97, 2: 0.93}, length=32)
    assert learned_verdict("rope", learned, 0.95) == (
        "rope: passkey 96.7% ± 3.5 at 1x (32 tokens, n=3): learned in-length (mean >= 95%)"
    )
    assert learned_verdict("nope", passkey_group({0: 0.9, 1: 0.96}, length=32), 0.95).endswith(
        "not learned in-length (mean < 95%)"
    )
    assert learned_verdict("x", passkey_group({0: 1.0}, length=64), 0.95) is None  # no result at 1x


def test_critical_values_are_students_t_and_welch_degrees_of_freedom_pool_the_spreads():
    # two-sided 95%: the printed t table
    assert [round(critical_value(df), 3) for df in (1, 2, 4, 30)] == [12.706, 4.303, 2.776, 2.042]
    assert critical_value(1e9) == pytest.approx(1.95996, abs=1e-5)
    with pytest.raises(ValueError, match="degrees of freedom must be > 0"):
        critical_value(0)
    assert welch_degrees_of_freedom(0.1, 3, 0.1, 3) == pytest.approx(4)  # equal spreads: n_a + n_b - 2
    assert welch_degrees_of_freedom(0.0, 3, 0.2, 5) == pytest.approx(4)  # one side fixed: the other's n - 1
    assert welch_degrees_of_freedom(0.0, 3, 0.0, 3) == 4
    assert welch_degrees_of_freedom(0.1, 3, 0.2, 5) == pytest.approx(5.959, abs=1e-3)  # (s²/n) terms, not (s/n)
    assert welch_degrees_of_freedom(1e-170, 3, 1e-170, 3) == 4  # squares that underflow: no division by zero


def test_a_non_finite_loss_gives_no_verdict_and_a_constant_difference_is_clear():
    diverged = {"a": group({0: 3.0, 1: 3.1, 2: 3.2}), "b": group({0: 2.0, 1: 2.1, 2: 2.2})}
    row = diverged["b"]["perplexity"]["by_length"][0]  # seed 1 diverged: its loss, and so the spread, are NaN
    row["per_run"][1]["loss"] = row["loss"]["mean"] = row["loss"]["std"] = float("nan")
    assert verdict(contrast(diverged, "a", "b", 512), "x").endswith("a non-finite value (a diverged run?): no verdict")
    assert contrast(diverged, "a", "b", 512)["verdict"] == "a non-finite value (a diverged run?): no conclusion"
    constant = {"a": passkey_group({0: 0.5, 1: 0.6}), "b": passkey_group({0: 0.7, 1: 0.8})}
    assert passkey_verdict(passkey_contrast(constant, "a", "b", 64), "p").endswith(
        "by 20.0 ± 0.0 points of passkey accuracy (n=2, paired by seed): a clear difference (its standard error is 0)"
    )
