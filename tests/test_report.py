"""Reports: aggregation over seeds, loading and computing missing results, the Markdown, the figures, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from fope.evaluate.passkey import evaluate_run_passkey
from fope.evaluate.perplexity import evaluate_run_perplexity
from fope.report import (
    ReportSection,
    aggregate,
    aggregate_passkey,
    aggregate_perplexity,
    compare_runs,
    load_results,
    mean_spread,
)

PERPLEXITY_OPTIONS = {"lengths": [32, 64, 128], "max_spans": 2}
PASSKEY_OPTIONS = {"lengths": [256, 512], "trials": 3}


@pytest.fixture(scope="module")
def evaluated_runs(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    """Copies of rope (two seeds), fope and nope with small perplexity and passkey results in eval/."""
    root = tmp_path_factory.mktemp("evaluated")
    runs = {}
    for name in ("rope", "rope-seed1", "fope", "nope"):
        runs[name] = shutil.copytree(tiny_runs[name], root / name)
        evaluate_run_perplexity(runs[name], device="cpu", progress=False, **PERPLEXITY_OPTIONS)
        evaluate_run_passkey(runs[name], device="cpu", progress=False, **PASSKEY_OPTIONS)
    return runs


def perplexity_result(train_length, perplexities, buckets=None):
    """A minimal perplexity result as the evaluator writes it."""
    records = []
    for length, value in perplexities.items():
        position_buckets = [{"start": 0, "end": length, "tokens": 1, "loss": float(np.log(value))}]
        records.append(
            {
                "length": length,
                "loss": float(np.log(value)),
                "perplexity": value,
                "bits_per_byte": 1.0,
                "position_buckets": buckets or position_buckets,
            }
        )
    return {"train_length": train_length, "results": records, "spans": {"cross_document": False, "note": None}}


def test_mean_spread():
    assert mean_spread([1.0, 3.0]) == {"n": 2, "mean": 2.0, "std": pytest.approx(2**0.5), "min": 1.0, "max": 3.0}
    assert mean_spread([5.0])["std"] is None


def test_perplexity_aggregates_over_seeds_with_ratios_to_in_length():
    a = perplexity_result(32, {32: 10.0, 64: 20.0, 128: 80.0})
    b = perplexity_result(32, {32: 20.0, 64: 30.0, 128: 40.0})
    numbers = aggregate_perplexity([a, b])
    rows = {row["length"]: row for row in numbers["by_length"]}
    assert rows[64]["perplexity"]["mean"] == 25.0 and rows[64]["perplexity"]["std"] == pytest.approx(
        np.std([20, 30], ddof=1)
    )
    assert rows[128]["ratio"]["mean"] == pytest.approx((8.0 + 2.0) / 2)  # each run divided by its own 1x
    assert rows[128]["ratio"]["min"] == 2.0 and rows[128]["ratio"]["max"] == 8.0
    assert rows[32]["ratio"]["mean"] == 1.0 and rows[64]["multiple"] == 2.0
    assert numbers["position_buckets"]["length"] == 128
    assert numbers["position_buckets"]["buckets"][0]["loss"]["mean"] == pytest.approx((np.log(80) + np.log(40)) / 2)
    assert aggregate_perplexity([]) is None


def test_ratio_uses_the_shortest_length_when_the_training_length_was_not_evaluated():
    numbers = aggregate_perplexity([perplexity_result(32, {64: 10.0, 128: 30.0})])
    assert numbers["reference_lengths"] == [64]
    assert [row["ratio"]["mean"] for row in numbers["by_length"]] == [1.0, 3.0]


def test_passkey_grid_averages_cells_over_runs():
    def result(accuracies, grid):
        return {
            "train_length": 32,
            "trials_per_length": 4,
            "by_length": [{"length": length, "accuracy": a} for length, a in accuracies.items()],
            "depth_bins": [[0.0, 0.5], [0.5, 1.0]],
            "grid_lengths": list(accuracies),
            "grid_accuracy": grid,
        }

    numbers = aggregate_passkey(
        [result({256: 1.0, 512: 0.5}, [[1.0, None], [1.0, 0.5]]), result({256: 0.5}, [[0.0], [1.0]])]
    )
    assert [row["accuracy"]["mean"] for row in numbers["by_length"]] == [0.75, 0.5]
    assert [row["accuracy"]["n"] for row in numbers["by_length"]] == [2, 1]
    assert numbers["grid_accuracy"] == [[0.5, None], [1.0, 0.5]]


def test_compare_writes_report_results_and_figures(evaluated_runs, tmp_path):
    runs = [evaluated_runs[name] for name in ("rope", "rope-seed1", "fope", "nope")]
    results = compare_runs(runs, tmp_path / "report", title="Tiny", evaluate_missing=False, progress=False)
    out = tmp_path / "report"
    assert list(results["groups"]) == ["rope", "fope", "nope"]
    rope = results["groups"]["rope"]
    assert rope["n"] == 2 and [run["seed"] for run in rope["runs"]] == [0, 1]
    seeds = [json.loads((evaluated_runs[n] / "eval" / "perplexity.json").read_text()) for n in ("rope", "rope-seed1")]
    values = [seed["results"][2]["perplexity"] for seed in seeds]
    cell = rope["perplexity"]["by_length"][2]["perplexity"]
    assert cell["mean"] == pytest.approx(np.mean(values)) and cell["std"] == pytest.approx(np.std(values, ddof=1))
    assert results["groups"]["fope"]["perplexity"]["by_length"][0]["perplexity"]["std"] is None  # one run
    assert json.loads((out / "results.json").read_text())["groups"]["rope"]["n"] == 2

    report = (out / "report.md").read_text()
    assert report.startswith("# Tiny")
    for expected in ("| rope | 2 |", "| fope | 1 |", "| nope | 1 |", "±", "in-length perplexity", "32 (1x)"):
        assert expected in report, expected
    assert f"{cell['mean']:.2f} ± {cell['std']:.2f}" in report
    expected_figures = ["perplexity.png", "perplexity-ratio.png", "position-loss.png", "passkey.png"]
    expected_figures += ["passkey-rope.png", "passkey-fope.png", "passkey-nope.png"]
    assert results["figures"] == expected_figures
    for name in expected_figures:
        assert f"]({name})" in report
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        pixels = imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 400 and pixels[..., :3].std() > 0.05  # not blank


def test_missing_results_are_computed_and_stale_ones_are_noted(tiny_runs, tmp_path):
    run_dir = shutil.copytree(tiny_runs["alibi"], tmp_path / "alibi")
    untouched = load_results(run_dir, evaluate_missing=False)
    assert untouched.perplexity is None and untouched.passkey is None and untouched.label == "alibi"
    loaded = load_results(
        run_dir, device="cpu", progress=False, perplexity_options=PERPLEXITY_OPTIONS, passkey_options=PASSKEY_OPTIONS
    )
    assert loaded.perplexity["lengths"] == [32, 64, 128] and loaded.passkey["lengths"] == [256, 512]
    assert (run_dir / "eval" / "perplexity.json").is_file() and (run_dir / "eval" / "passkey.json").is_file()

    saved = json.loads((run_dir / "eval" / "passkey.json").read_text())
    saved["run"]["step"] = 4
    (run_dir / "eval" / "passkey.json").write_text(json.dumps(saved))
    stale = load_results(run_dir, evaluate_missing=False)
    assert stale.notes == ["eval/passkey.json was computed at step 4; the latest is 8"]
    compare_runs([run_dir], tmp_path / "report", evaluate_missing=False, progress=False)
    assert "eval/passkey.json was computed at step 4" in (tmp_path / "report" / "report.md").read_text()


def test_runs_without_results_still_make_a_report(tiny_runs, tmp_path):
    results = compare_runs([tiny_runs["nope"]], tmp_path / "report", evaluate_missing=False, progress=False)
    assert results["figures"] == [] and results["groups"]["nope"]["perplexity"] is None
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Runs" in report and "| nope |" in report and "## Perplexity" not in report


def test_extra_sections_add_text_figures_and_numbers(evaluated_runs, tmp_path):
    def entropy_section(runs, out_dir):
        figure = Figure()
        figure.subplots().plot([0, 1], [1, 0])
        figure.savefig(out_dir / "entropy.png")
        return ReportSection(
            "Attention entropy", f"Measured on {len(runs)} runs.", ("entropy.png",), {"runs": len(runs)}
        )

    results = compare_runs(
        [evaluated_runs["fope"]], tmp_path / "report", evaluate_missing=False, extra_sections=[entropy_section]
    )
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Attention entropy\n\nMeasured on 1 runs." in report and "](entropy.png)" in report
    assert results["sections"] == {"Attention entropy": {"runs": 1}} and "entropy.png" in results["figures"]


def test_differently_configured_runs_with_one_label_are_flagged(evaluated_runs):
    runs = [load_results(evaluated_runs[name], evaluate_missing=False) for name in ("rope", "fope")]
    runs[1].label = "rope"
    groups = aggregate(runs)
    assert groups["rope"]["n"] == 2
    assert any("differ in position" in note for note in groups["rope"]["notes"])


def test_runs_evaluated_with_different_settings_are_flagged(evaluated_runs, tmp_path):
    other = shutil.copytree(evaluated_runs["fope"], tmp_path / "fope")
    evaluate_run_perplexity(other, device="cpu", progress=False, lengths=[32, 64], max_spans=1)
    results = compare_runs([evaluated_runs["rope"], other], tmp_path / "report", evaluate_missing=False)
    assert len(results["notes"]) == 1 and results["notes"][0].startswith("perplexity was evaluated with different")
    assert '"max_spans": 1' in results["notes"][0] and '"max_spans": 2' in results["notes"][0]
    assert results["notes"][0] in (tmp_path / "report" / "report.md").read_text()


def test_cli_compare(evaluated_runs, tmp_path, capsys):
    from fope.cli import main

    runs = [str(evaluated_runs[name]) for name in ("rope", "rope-seed1")]
    assert main(["compare", *runs, "--out", str(tmp_path / "report"), "--no-evaluate", "--no-progress"]) == 0
    assert "rope (n=2)" in capsys.readouterr().out
    assert (tmp_path / "report" / "report.md").is_file()
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
