"""The one rule for "is this the same evaluation?" (``fope.evaluate.results.mismatches``), on hand-written results."""

from __future__ import annotations

from fope.evaluate.results import (
    EvaluationRequest,
    PerplexitySettings,
    merge_trials,
    mismatches,
    request_of,
    settings_of,
)


def perplexity(step: int = 500, seed: int = 0, lengths: tuple[int, ...] = (128, 256)) -> dict:
    return {
        "run": {"step": step, "checkpoint": f"step_{step:08d}", "train_length": 128},
        "evaluation": "perplexity",
        "data": None,
        "train_length": 128,
        "bucket_tokens": 128,
        "lengths": list(lengths),
        "spans": {"max_spans": 24, "seed": seed, "count": 24},
        "results": [{"length": length} for length in lengths],
    }


def test_a_result_answers_its_own_request_and_each_setting_that_changes_the_numbers_counts():
    result = perplexity()
    assert settings_of(result) == PerplexitySettings(
        data=None, train_length=128, bucket_tokens=128, max_spans=24, seed=0
    )
    assert mismatches(result, request_of(result)) == []
    assert mismatches(perplexity(seed=1), request_of(result)) == ["spans.seed: 1 there, 0 here"]
    assert mismatches(perplexity(step=250), request_of(result)) == [
        "run.step: 250 there, 500 here",
        "run.checkpoint: 'step_00000250' there, 'step_00000500' here",
    ]
    # What does not change the numbers (the span count drawn, the lengths) is not part of the request.
    assert mismatches({**result, "spans": {**result["spans"], "count": 3}, "lengths": [64]}, request_of(result)) == []


def test_only_what_a_request_asks_is_compared():
    result = perplexity()
    assert mismatches(result, EvaluationRequest()) == []
    assert mismatches(result, EvaluationRequest("passkey")) == ["evaluation: 'perplexity' there, 'passkey' here"]
    assert mismatches(result, EvaluationRequest(settings={"run.step": 500})) == []
    assert mismatches(result, EvaluationRequest(settings={"spans.absent": None, "nowhere.deep": None})) == []
    assert mismatches(result, EvaluationRequest(settings={"spans.max_spans": 8})) == [
        "spans.max_spans: 24 there, 8 here"
    ]


def test_lengths_asked_are_held_but_those_too_short_for_the_prompt():
    passkey = {"evaluation": "passkey", "lengths": [256, 512], "min_prompt_tokens": 200}
    assert mismatches(passkey, EvaluationRequest(lengths=[128, 256, 512])) == []  # 128 cannot hold the prompt
    assert mismatches({**passkey, "min_prompt_tokens": 100}, EvaluationRequest(lengths=[128, 256, 512])) == [
        "lengths: [128] missing"
    ]
    assert mismatches(perplexity(), EvaluationRequest(lengths=[128, 256, 512])) == ["lengths: [512] missing"]


def test_trials_of_other_settings_are_replaced_not_merged():
    def trials(lengths: list[int], seed: int = 0) -> dict:
        return {
            "run": {"step": 500, "checkpoint": "step_00000500"},
            "evaluation": "passkey",
            "task": "passkey",
            "train_length": 128,
            "trials_per_length": 2,
            "seed": seed,
            "max_new_tokens": 8,
            "depth_bins": [[0.0, 1.0]],
            "lengths": lengths,
            "by_length": [{"length": length, "accuracy": 1.0} for length in lengths],
            "grid_lengths": lengths,
            "grid_accuracy": [[1.0] * len(lengths)],
            "grid_trials": [[2] * len(lengths)],
            "trials": [{"target_tokens": length} for length in lengths for _ in range(2)],
        }

    assert merge_trials(trials([128]), trials([256]))["lengths"] == [128, 256]
    assert merge_trials(trials([128], seed=1), trials([256]))["lengths"] == [256]
