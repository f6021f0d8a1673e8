"""benchmarks/bench_kernel.py runs: its --smoke mode (CPU, tiny shape, the kernel under the interpreter) prints the
table with every column it can time here and the fused-vs-eager check, and writes its JSON."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.triton

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_kernel.py"


def test_smoke_mode_runs_every_column(tmp_path, capsys):
    bench = runpy.run_path(str(SCRIPT), run_name="bench_kernel")
    bench["main"](["--smoke", "--json", str(tmp_path / "bench.json")])
    printed = capsys.readouterr().out
    for column in ("fope fused", "fope eager", "rope fused", "rope eager"):
        assert f"| smoke | fwd+bwd | {column} |" in printed
    results = json.loads((tmp_path / "bench.json").read_text())
    assert {row["column"] for row in results["rows"]} >= {"fope fused", "rope fused"}
    for check in results["checks"]:  # the fused kernel agrees with the eager path (float32 here)
        assert max(check["max_abs_diff_q_k_dq_dk"]) < 1e-5
