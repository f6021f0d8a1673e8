"""`fope demo --quick` gives the same numbers as before the upper half was restructured (same seeds, same machine).

tests/data/demo_quick_baseline.json was written from a `fope demo --quick` run of commit a484a4e (before the
restructuring of issue 12): per run, every training log line (loss, grad norm, lr, tokens, validation), the held-out
loss at every evaluation length, and every passkey continuation. Bit-identical on one machine: CPU kernels are
deterministic for one thread per worker, which is what the demo runs. Regenerate it only for a deliberate change of
numerics, and say so in the commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASELINE = Path(__file__).parent / "data" / "demo_quick_baseline.json"
VOLATILE = ("tokens_per_s", "seconds", "elapsed")


def demo_numbers(out: Path) -> dict[str, dict]:
    """The numbers of a demo output folder, in the baseline's form."""
    numbers = {}
    for run in sorted((out / "runs").iterdir()):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        metrics = [json.loads(line) for line in lines if line.strip()]
        perplexity = json.loads((run / "eval" / "perplexity.json").read_text())
        passkey = json.loads((run / "eval" / "passkey.json").read_text())
        numbers[run.name] = {
            "train": [{key: value for key, value in sorted(m.items()) if key not in VOLATILE} for m in metrics],
            "perplexity": {str(row["length"]): row["loss"] for row in perplexity["results"]},
            "passkey": [trial["continuation"] for trial in passkey["trials"]],
        }
    return numbers


@pytest.mark.slow
def test_quick_demo_gives_the_numbers_it_gave_before(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "fope", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads(BASELINE.read_text())
    actual = demo_numbers(out)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        for part in ("train", "perplexity", "passkey"):
            assert actual[name][part] == expected[name][part], f"{name} {part}"
