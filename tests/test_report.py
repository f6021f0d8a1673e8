"""Reports: aggregation over seeds, reading results (missing ones reported, never computed), the Markdown, the
figures, one table renderer, contrasts, the CLI."""

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
    MISSING,
    ReportSection,
    aggregate,
    aggregate_passkey,
    aggregate_perplexity,
    compare_runs,
    contrast,
    format_contrast,
    load_results,
    mean_spread,
    pending_evaluations,
    render_table,
    spread_text,
    text_table,
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
    results = compare_runs(runs, tmp_path / "report", title="Tiny")
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

    stamp, report = (out / "report.md").read_text().split("\n", 1)
    assert stamp.startswith("<!-- generated by fope compare") and report.startswith("# Tiny")
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


def test_missing_results_are_reported_never_computed_and_stale_ones_are_noted(evaluated_runs, tiny_runs, tmp_path):
    run_dir = shutil.copytree(tiny_runs["alibi"], tmp_path / "alibi")
    untouched = load_results(run_dir)
    assert untouched.perplexity is None and untouched.passkey is None and untouched.label == "alibi"
    assert untouched.missing == ["perplexity", "passkey"] and not (run_dir / "eval").exists()
    assert pending_evaluations(run_dir) == ["perplexity", "passkey"]

    results = compare_runs([evaluated_runs["fope"], run_dir], tmp_path / "report")
    assert not (run_dir / "eval").exists()  # a report computes nothing
    alibi = results["groups"]["alibi"]
    assert alibi["perplexity"] is None and alibi["missing"] == {"perplexity": [str(run_dir)], "passkey": [str(run_dir)]}
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"| alibi | 0 | {MISSING} | {MISSING} | {MISSING} |" in report
    assert f"run `fope eval {run_dir}`" in report and f"run `fope passkey {run_dir}`" in report

    evaluate_run_perplexity(run_dir, device="cpu", progress=False, **PERPLEXITY_OPTIONS)
    evaluate_run_passkey(run_dir, device="cpu", progress=False, **PASSKEY_OPTIONS)
    assert pending_evaluations(run_dir) == []
    saved = json.loads((run_dir / "eval" / "passkey.json").read_text())
    saved["run"]["step"] = 4
    (run_dir / "eval" / "passkey.json").write_text(json.dumps(saved))
    assert pending_evaluations(run_dir) == ["passkey"]
    stale = load_results(run_dir)
    assert stale.notes == ["eval/passkey.json was computed at step 4; the latest is 8"] and stale.missing == []
    compare_runs([run_dir], tmp_path / "report")
    assert "eval/passkey.json was computed at step 4" in (tmp_path / "report" / "report.md").read_text()


def test_a_run_given_twice_counts_once(evaluated_runs, tmp_path):
    rope = evaluated_runs["rope"]
    results = compare_runs([rope, rope / ".." / rope.name, evaluated_runs["fope"]], tmp_path / "report")
    assert results["groups"]["rope"]["n"] == 1 and results["groups"]["rope"]["perplexity"]["n"] == 1
    assert results["notes"][0].endswith("was given more than once (as " + str(rope) + "); it is counted once")


def test_a_configuration_missing_in_some_runs_counts_only_the_runs_with_results(evaluated_runs, tmp_path):
    rope = shutil.copytree(evaluated_runs["rope"], tmp_path / "rope")
    (rope / "eval" / "passkey.json").unlink()
    results = compare_runs([rope, evaluated_runs["rope-seed1"]], tmp_path / "report")
    group = results["groups"]["rope"]
    assert group["n"] == 2 and group["perplexity"]["n"] == 2 and group["passkey"]["n"] == 1
    assert group["missing"] == {"passkey": [str(rope)]}
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.count("| rope | 2 |") == 3 and "| rope | 1 |" in report  # perplexity, ratio, bpb; passkey


def test_runs_without_results_still_make_a_report(tiny_runs, tmp_path):
    results = compare_runs([tiny_runs["nope"]], tmp_path / "report")
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

    results = compare_runs([evaluated_runs["fope"]], tmp_path / "report", extra_sections=[entropy_section])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Attention entropy\n\nMeasured on 1 runs." in report and "](entropy.png)" in report
    assert results["sections"] == {"Attention entropy": {"runs": 1}} and "entropy.png" in results["figures"]


def test_differently_configured_runs_with_one_label_are_flagged(evaluated_runs):
    runs = [load_results(evaluated_runs[name]) for name in ("rope", "fope")]
    runs[1].label = "rope"
    groups = aggregate(runs)
    assert groups["rope"]["n"] == 2
    assert any("differ in position" in note for note in groups["rope"]["notes"])


def test_runs_evaluated_with_different_settings_are_flagged(evaluated_runs, tmp_path):
    other = shutil.copytree(evaluated_runs["fope"], tmp_path / "fope")
    evaluate_run_perplexity(other, device="cpu", progress=False, lengths=[32, 64], max_spans=1)
    results = compare_runs([evaluated_runs["rope"], other], tmp_path / "report")
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


def test_one_renderer_draws_markdown_and_text_tables():
    header, rows = ["name", "ppl", "acc"], [["rope", "1.0", "50%"], ["fope-no-fs", "12.25", "-"]]
    assert render_table(header, rows).splitlines() == [
        "| name | ppl | acc |",
        "|---|---:|---:|",
        "| rope | 1.0 | 50% |",
        "| fope-no-fs | 12.25 | - |",
    ]
    assert render_table(header, rows, style="text").splitlines() == [
        "name          ppl  acc",
        "rope          1.0  50%",
        "fope-no-fs  12.25    -",
    ]
    assert text_table([dict(zip(header, row, strict=True)) for row in rows]) == render_table(header, rows, style="text")


def test_spread_text_formats_one_run_and_many():
    spread = {"n": 2, "mean": 0.5, "std": 0.125}
    assert spread_text(spread) == "0.5 ± 0.1" and spread_text(spread, 0, 100, "%") == "50% ± 12%"
    assert spread_text(dict(spread, std=None), 2) == "0.50" and spread_text(None) == "-"
    assert spread_text(spread, number="{:.0%}".format) == "50% ± 12%"


def test_contrast_is_also_paired_by_seed():
    a = perplexity_result(32, {32: 10.0, 64: 20.0})
    b = perplexity_result(32, {32: 12.0, 64: 30.0})
    runs = []
    for seed, scale in ((0, 1.0), (1, 1.1), (2, 0.9)):
        for label, result in (("a", a), ("b", b)):
            records = [dict(r, loss=r["loss"] * scale) for r in result["results"]]
            runs.append((label, {**result, "results": records, "run": {"seed": seed}}))
    groups = {
        label: {"n": 3, "perplexity": aggregate_perplexity([r for name, r in runs if name == label])}
        for label in ("a", "b")
    }
    result = contrast(groups, "a", "b", 64)
    losses = {label: [r["results"][1]["loss"] for name, r in runs if name == label] for label in ("a", "b")}
    differences = np.subtract(losses["b"], losses["a"])
    assert result["log_perplexity_difference"] == pytest.approx(differences.mean())  # unpaired, as before
    assert result["paired"]["n"] == 3 and result["paired"]["seeds"] == [0, 1, 2]
    assert result["paired"]["standard_error"] == pytest.approx(np.std(differences, ddof=1) / np.sqrt(3))
    assert "; paired over 3 seeds +" in format_contrast(result, "b vs a")


def relabel(run_dir: Path, label: str) -> None:
    """Give a run's stored results another label, as a run named before names were bounded would have."""
    for name in ("perplexity", "passkey"):
        path = run_dir / "eval" / f"{name}.json"
        results = json.loads(path.read_text())
        results["run"]["label"] = label
        path.write_text(json.dumps(results))


def test_long_labels_are_cut_in_reports_and_stay_distinct(evaluated_runs, tmp_path):
    first, second = (
        shutil.copytree(evaluated_runs[run], tmp_path / name) for run, name in (("rope", "a"), ("fope", "b"))
    )
    relabel(first, "x" * 300 + "first")
    relabel(second, "x" * 300 + "second")
    results = compare_runs([first, second], tmp_path / "report")
    labels = list(results["groups"])
    assert len(labels) == 2 and all(len(label) == 100 and label.startswith("x" * 88 + "...-") for label in labels)
    assert all(len(figure) < 200 for figure in results["figures"])
    assert all(label in (tmp_path / "report" / "report.md").read_text() for label in labels)


def test_compare_refuses_a_run_whose_name_is_too_long(tiny_runs, tmp_path, capsys):
    import yaml

    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "name": "n" * 1000}))
    for evaluate in ([], ["--no-evaluate"]):
        assert main(["compare", str(run_dir), "--out", str(tmp_path / "report"), "--no-progress", *evaluate]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fope compare: error: {run_dir / 'config.yaml'}: config: name must be at most 100")
        assert err.count("\n") == 1 and len(err) < 400
    assert not (tmp_path / "report").exists() and not (run_dir / "eval").exists()
