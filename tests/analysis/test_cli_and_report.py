"""`fope analyze` on a run directory, and the attention section of `fope compare`."""

from __future__ import annotations

import json
import shutil

from fope.cli import main


def test_analyze_cli_writes_json_and_figures(tiny_runs, tmp_path, capsys):
    run_dir = tmp_path / "fope"
    shutil.copytree(tiny_runs["fope"], run_dir)
    assert main(["analyze", str(run_dir), "--multiples", "1,2", "--sequences", "1"]) == 0
    printed = capsys.readouterr().out
    assert "2x: mean attention entropy" in printed
    result = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    frequency_map = result["frequency_map"]
    assert frequency_map["num_kept"] == 2  # head_dim 16, L=32: only 1 and 10**-0.5 reach the floor 2*pi/32
    assert frequency_map["fope_keeps"] == [not below for below in frequency_map["below_floor"]]
    assert (run_dir / "analysis" / "context_behaviour.png").stat().st_size > 1000


def test_compare_with_attention_section(tiny_runs, tmp_path):
    # copies: compare evaluates the runs, which would write eval/ into the session's shared runs
    runs = [shutil.copytree(tiny_runs[name], tmp_path / name) for name in ("rope", "rope-seed1", "alibi")]
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "report"), "--attention", "--no-progress"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Attention past the training length" in report
    assert "| rope | 2 |" in report  # two seeds of one configuration averaged
    numbers = json.loads((tmp_path / "report" / "results.json").read_text())
    alibi = numbers["sections"]["Attention past the training length"]["by_label"]["alibi"]
    assert alibi["mass_beyond_train_length"][0] == 0.0  # nothing lies beyond L at 1x
    assert (tmp_path / "report" / "attention-context.png").stat().st_size > 1000
