"""``fope report``: the results page from stored JSON alone: tables with n and spreads, verdicts from the numbers,
figures, hand-written text, what is not run yet, byte-identical rebuilds, hand edits refused."""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

from fope.cli import main
from fope.report.load import ReportError
from fope.report.page import FIGURES_WRITTEN, build_page, is_generated, write_page
from fope.report.store import write_json
from tests.report.fakes import stored_run

RECIPES = ("demo", "ablation", "sweep")
#: Loss at 1x (32) and 16x (512) per label and seed: fope is 0.5 below rope at 16x on every seed (clearly), fope-no-fs
#: is within noise of fope.
LOSSES = {
    "rope": [(3.00, 4.00), (3.02, 4.10), (2.98, 4.30)],
    "fope": [(3.01, 3.51), (3.01, 3.58), (2.99, 3.81)],
    "fope-no-fs": [(3.00, 3.53), (3.02, 3.56), (3.00, 3.84)],
}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "docs" / "results"
    for label, seeds in LOSSES.items():
        for seed, (short, long) in enumerate(seeds):
            accuracy = {32: 1.0 - 0.1 * seed, 64: 0.25}
            stored_run(root, f"{label}-s{seed}", label, seed, {32: short, 512: long}, accuracy=accuracy)
    contrasts = [["rope", "fope", "FoPE vs RoPE"], ["fope", "fope-no-fs", "Fourier series"]]
    contrasts += [["fope", "fope-no-cf", "floor clipping"]]
    runs = [f"{label}-s{seed}" for seed in range(3) for label in LOSSES] + ["fope-no-cf-s0"]
    report = {"folder": "report-tiny", "title": "Ablation, size tiny", "evaluation": "perplexity", "data": None}
    write_json(
        root / "ablation.json",
        {"format": 1, "experiment": "ablation", "reports": [{**report, "runs": runs, "contrasts": contrasts}]},
    )
    (root / "notes.md").write_text("Hand-written introduction.\n")
    (root / "ablation.md").write_text("The floor clipping does the work at this scale.\n")
    return root


def test_the_page_has_tables_with_spreads_and_verdicts_from_the_numbers(results):
    text = build_page(results, results.parent / "results.md", RECIPES).text
    assert is_generated(text)
    assert "| rope | 3 | " in text and "| fope-no-fs | 3 |" in text
    # perplexity at 16x: exp of the losses, mean ± sample std
    assert "| 512 (16x) |" in text
    assert "9 of 10 runs stored." in text
    assert (
        "- **FoPE vs RoPE**: fope lower than rope at 16x (512 tokens) by 0.500 ± 0.010 log-ppl (n=3, paired by seed): "
        "a clear difference (50.0 standard errors, beyond 4.30)"
    ) in text
    assert "  in-length: rope lower than fope at 1x (32 tokens) by 0.003 ± 0.007 log-ppl" in text
    assert "**Fourier series**: fope lower than fope-no-fs at 16x (512 tokens) by 0.010 ± 0.015 log-ppl" in text
    assert "no clear difference (within 4.30 standard errors, the 95% t interval)" in text
    assert "- **floor clipping**: not run yet (`fope-no-cf` not stored)" in text
    assert "Not run yet: `fope-no-cf-s0`." in text
    assert "| rope | 3 | 90% ± 10% | 25% ± 0% |" in text  # passkey accuracy by length
    assert "Hand-written introduction." in text and "The floor clipping does the work at this scale." in text
    assert "## demo\n\nNot run yet: `fope demo --results DIR`" in text
    assert "## sweep\n\nNot run yet: `fope experiment sweep --results DIR`" in text
    assert "| `rope-s0` | rope | 0 | 8 | rope |" in text  # the stored runs table
    assert "](results/figures/ablation-report-tiny-perplexity.png)" in text


def test_the_page_follows_the_numbers(results):
    stored_run(results, "fope-s2", "fope", 2, {32: 2.99, 512: 4.80}, accuracy={32: 0.8, 64: 0.25})
    text = build_page(results, results.parent / "results.md", RECIPES).text
    assert "**FoPE vs RoPE**: fope lower than rope at 16x (512 tokens) by 0.170 ± 0.335 log-ppl" in text
    assert "(n=3, paired by seed): no clear difference" in text


def test_rebuilding_gives_the_same_bytes_and_draws_the_figures(results):
    out = results.parent / "results.md"
    page = write_page(results, out, RECIPES)
    first = out.read_bytes()
    assert sorted(page.figures) == ["ablation-report-tiny-passkey.png", "ablation-report-tiny-perplexity.png"]
    for name in page.figures:
        assert imread(results / "figures" / name).shape[0] > 100
    figures = results / "figures"
    assert json.loads((figures / FIGURES_WRITTEN).read_text()) == sorted(page.figures)
    # a figure an earlier report wrote that this page no longer uses goes; a file fope did not write stays
    (figures / "old-report-perplexity.png").write_bytes(b"old")
    (figures / FIGURES_WRITTEN).write_text(json.dumps([*page.figures, "old-report-perplexity.png"]))
    (figures / "my-own-plot.png").write_bytes(b"mine")
    write_page(results, out, RECIPES)
    assert out.read_bytes() == first and out.read_text() == build_page(results, out, RECIPES).text
    assert not (figures / "old-report-perplexity.png").exists()
    assert (figures / "my-own-plot.png").read_bytes() == b"mine"
    assert json.loads((figures / FIGURES_WRITTEN).read_text()) == sorted(page.figures)


def test_hand_written_prose_that_is_not_utf8_is_one_line(results):
    (results / "notes.md").write_bytes(b"caf\xe9 notes\n")
    with pytest.raises(ReportError, match=r"notes\.md is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        build_page(results, results.parent / "results.md", RECIPES)


def test_a_page_edited_by_hand_is_not_replaced_without_force(results):
    out = results.parent / "results.md"
    write_page(results, out, RECIPES)
    out.write_text(out.read_text().replace("9 of 10 runs stored.", "9 of 10 runs stored, and a good result."))
    assert not is_generated(out.read_text())
    with pytest.raises(ReportError, match="edited by hand"):
        write_page(results, out, RECIPES)
    assert "a good result" in out.read_text()
    write_page(results, out, RECIPES, force=True)
    assert "a good result" not in out.read_text()


def test_cli_report_and_check(results, capsys):
    out = results.parent / "results.md"
    out.write_text("# Hand-written results\n")
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    assert "edited by hand" in capsys.readouterr().err
    assert main(["report", "--results", str(results), "--out", str(out), "--check"]) == 1
    assert main(["report", "--results", str(results), "--out", str(out), "--force"]) == 0
    assert main(["report", "--results", str(results), "--out", str(out), "--check"]) == 0
    stored_run(results, "fope-no-cf-s0", "fope-no-cf", 0, {32: 3.0, 512: 5.0})
    assert main(["report", "--results", str(results), "--out", str(out), "--check"]) == 1
    assert main(["report", "--results", str(results / "absent"), "--out", str(out)]) == 2
    assert "no results folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accuracy", 7.5, "by_length[0].accuracy must be a number from 0 to 1; got 7.5"),
        ("loss", -5, "results[0].loss must be a number >= 0 (or NaN / +inf: a diverged run); got -5"),
        ("loss", "3.0", "results[0].loss must be a number >= 0 (or NaN / +inf: a diverged run); got '3.0' (str)"),
        ("loss", None, "results[0].loss is missing"),
    ],
)
def test_cli_report_refuses_an_impossible_stored_value_in_one_line(results, capsys, field, value, message):
    """Before: an accuracy of 7.5 was shown above 100% and "learned in-length", a loss of -5 flipped a verdict, a
    missing field or a number written as a string was a traceback."""
    path = results / "runs" / "fope-s1.json"
    record = json.loads(path.read_text())
    evaluation, rows = ("passkey", "by_length") if field == "accuracy" else ("perplexity", "results")
    row = record["evaluations"][evaluation]["result"][rows][0]
    if value is None:
        del row[field]
    else:
        row[field] = value
    path.write_text(json.dumps(record))
    out = results.parent / "results.md"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"fope report: error: {path}: evaluations.{evaluation}.result.{message}\n")
    assert not out.exists()
