"""Passkey accuracy of trained runs with keys the project never uses elsewhere: the demo's acceptance check.

    .venv/bin/python scripts/heldout_passkey.py demo-output/runs/*-demo-s* --trials 100 --json heldout.json

Training rows of seed ``s`` draw their keys from ``numpy.random.default_rng([s, step])`` and the campaign's passkey
evaluation from ``default_rng([0, trial])``. This check draws trial ``t`` from ``default_rng([SEED, t])`` with
``SEED`` = 104729, a number that is no training seed, no step stream of a tiny run and not the evaluation's seed, so
its keys and needle depths are a sample that played no part in training or in the demo's own numbers. It prints the
accuracy per run and length, and per encoding the mean and the lowest seed; nothing is written into the runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from fope.benchmark import check_json_path
from fope.errors import FopeError
from fope.evaluate.passkey import evaluate_run_passkey
from fope.files import write_atomic

SEED = 104729


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--trials", type=int, default=100, help="trials per length (default 100)")
    parser.add_argument("--lengths", default=None, help="comma-separated lengths (default: the training length)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the keys and depths (default {SEED})")
    parser.add_argument("--json", default=None, help="write every run's accuracies here")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args()
    try:
        json_path = check_json_path(args.json, force=args.force) if args.json else None
    except FopeError as error:
        sys.exit(f"heldout_passkey: {error}")
    table: dict[str, dict[int, float]] = {}
    for run in args.runs:
        lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else [_train_length(run)]
        result = evaluate_run_passkey(
            run, lengths=lengths, trials=args.trials, seed=args.seed, write=False, progress=False, device="cpu"
        )
        table[run] = {row["length"]: row["accuracy"] for row in result["by_length"]}
        print(run, " ".join(f"{length}: {accuracy:.0%}" for length, accuracy in table[run].items()), flush=True)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for run, row in table.items():
        label = re.sub(r"-s\d+$", "", Path(run).name)
        for length, accuracy in row.items():
            groups[(label, length)].append(accuracy)
    for (label, length), values in groups.items():
        print(f"{label} at {length}: mean {sum(values) / len(values):.1%}, lowest {min(values):.0%} (n={len(values)})")
    if json_path is not None:
        write_atomic(json_path, json.dumps({"seed": args.seed, "trials": args.trials, "runs": table}, indent=2))


def _train_length(run: str) -> int:
    from fope.config import load_yaml

    return int(load_yaml(Path(run) / "config.yaml")["train"]["seq_len"])


if __name__ == "__main__":
    main()
