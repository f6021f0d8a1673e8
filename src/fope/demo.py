"""The one-command demo: train tiny models that differ only in position encoding, evaluate them past their training
length, and write the report.

Runs are ordinary run directories (``OUT/runs/<encoding>-s<seed>``) that ``fope eval``, ``fope passkey`` and
``fope compare`` accept. Training runs in parallel worker processes (one torch thread each), which on a 2-core
machine gets more tokens per second in total than one process with two threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

DEFAULT_ENCODINGS = ("rope", "fope", "alibi", "nope")
#: Preset directory of a source checkout (the demo's configs are the tiny presets).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "tiny"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo will do; ``quick`` shrinks everything to a smoke run of a few minutes."""

    encodings: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    passkey_fraction: float
    passkey_trials: int
    max_spans: int
    jobs: int
    quick: bool

    @classmethod
    def make(
        cls,
        *,
        quick: bool = False,
        encodings: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        steps: int | None = None,
        jobs: int | None = None,
    ) -> DemoPlan:
        encodings = tuple(encodings or DEFAULT_ENCODINGS)
        missing = [name for name in encodings if not (CONFIG_DIR / f"{name}.yaml").is_file()]
        if missing:
            available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ValueError(f"no tiny preset for {missing} in {CONFIG_DIR}; available: {available}")
        return cls(
            encodings=encodings,
            seeds=tuple(seeds or (0,)),
            steps=steps or (60 if quick else 600),
            passkey_fraction=0.1,
            passkey_trials=4 if quick else 20,
            max_spans=4 if quick else 24,
            jobs=jobs or max(1, min(2, os.cpu_count() or 1)),
            quick=quick,
        )

    def run_names(self) -> list[tuple[str, int, str]]:
        return [(name, seed, f"{name}-s{seed}") for seed in self.seeds for name in self.encodings]


def _train_command(plan: DemoPlan, encoding: str, seed: int, run_dir: Path) -> list[str]:
    overrides = {
        "train.max_steps": plan.steps,
        "train.seed": seed,
        "train.threads": 1,
        "train.checkpoint_every": plan.steps,
        "train.eval_every": plan.steps,
        "data.passkey_fraction": plan.passkey_fraction,
    }
    command = [
        sys.executable,
        "-m",
        "fope",
        "train",
        "--config",
        str(CONFIG_DIR / f"{encoding}.yaml"),
        "--out",
        str(run_dir),
        "--no-progress",
    ]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    return command


def _completed_step(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "latest"
    if pointer.is_file():
        return int(pointer.read_text().strip().removeprefix("step_"))
    return 0


def _logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def train_runs(plan: DemoPlan, out: Path) -> list[Path]:
    """Train every (encoding, seed) run, ``plan.jobs`` at a time; finished runs are reused, unfinished ones resumed."""
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    pending = []
    for encoding, seed, name in plan.run_names():
        run_dir = runs_dir / name
        if _completed_step(run_dir) >= plan.steps:
            continue
        command = _train_command(plan, encoding, seed, run_dir)
        if (run_dir / "config.yaml").is_file():
            command.append("--resume")
        pending.append((name, run_dir, command))
    run_dirs = [runs_dir / name for _, _, name in plan.run_names()]

    def progress() -> int:
        return sum(min(max(_logged_step(d), _completed_step(d)), plan.steps) for d in run_dirs)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    running: list[tuple[str, Path, subprocess.Popen]] = []
    bar = tqdm(total=len(run_dirs) * plan.steps, initial=progress(), desc="training", unit="step", dynamic_ncols=True)
    try:
        while pending or running:
            while pending and len(running) < plan.jobs:
                name, run_dir, command = pending.pop(0)
                with open(out / f"{name}.train.log", "ab") as log:
                    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((name, run_dir, process))
            time.sleep(2)
            for name, _, process in running:
                code = process.poll()
                if code not in (None, 0):
                    raise RuntimeError(f"training {name} failed (exit {code}); see {out / f'{name}.train.log'}")
            running = [entry for entry in running if entry[2].poll() is None]
            bar.n = progress()
            bar.refresh()
    finally:
        for _, _, process in running:
            process.terminate()
        bar.close()
    return [runs_dir / name for _, _, name in plan.run_names()]
