"""The CPU benchmark scripts in benchmarks/ start, run their smallest case and print their table.

bench_training.py once failed at its last line (a header naming a removed option) and nothing noticed: a benchmark is
only run by hand, before a docs update. These run each script as a user does (a fresh interpreter on the script file)
with the fewest steps it takes. Nothing is timed against a target (docs/benchmarks.md has the measurements).
bench_positions.py is ``fope bench`` (test_benchmark.py checks its numbers); bench_kernel.py has its own test
(kernels/). bench_fsdp.py starts
two torchrun processes (gloo) and bench_executor.py a real two-node Ray cluster, as they do when measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCHMARKS = ROOT / "benchmarks"

CASES = {
    "bench_training.py": (
        ["--steps", "1", "--warmup", "0", "--threads", "1"],
        ["| rope |", "| fope |", "| alibi |", "| nope |", "| yarn |"],
    ),
    "bench_positions.py": (
        ["--quick", "--forward", "--device", "cpu"],
        ["| B=1 H=4 T=512 D=64 | fp32 | no | fope | fwd |", "| B=1 H=4 T=512 D=128 | bf16 | no | copy | fwd |"],
    ),
    "bench_model.py": (["--lengths", "256", "--positions", "rope", "fope"], ["| rope | 256 |", "| fope | 256 |"]),
    "bench_retrieval.py": (["--lengths", "128", "--trials", "2", "--repeats", "1"], ["| passkey | 128 |"]),
    "bench_fsdp.py": (
        ["--presets", "tiny/fope", "--steps", "1", "--warmup", "1"],
        ["| tiny/fope (1.3M) | 32 x 128 | ddp |", "| tiny/fope (1.3M) | 32 x 128 | fsdp |"],
    ),
    "bench_executor.py": (
        ["--parts", "overhead", "--tasks", "2", "--repeats", "1"],
        ["| local |", "| Ray (2 nodes) |"],
    ),
}
#: bench_executor.py imports the tests' helpers (its docstring runs it with PYTHONPATH=src:.)
ENVIRONMENT = {"bench_executor.py": {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_the_benchmark_script_runs_and_prints_its_table(script):
    arguments, rows = CASES[script]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENVIRONMENT.get(script, {})},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for row in rows:
        assert row in done.stdout, done.stdout
