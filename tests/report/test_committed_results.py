"""The committed results page is what `fope report` makes of the committed JSON: nobody edited it by hand, and no
results file was committed without rebuilding the page."""

from __future__ import annotations

from pathlib import Path

from fope.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_docs_results_md_is_rebuilt_from_docs_results(capsys):
    results, page = ROOT / "docs" / "results", ROOT / "docs" / "results.md"
    code = main(["report", "--check", "--results", str(results), "--out", str(page)])
    assert code == 0, capsys.readouterr()
