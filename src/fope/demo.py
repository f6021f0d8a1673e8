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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
            passkey_fraction=0.25,
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


def run_jobs(
    jobs: Sequence[tuple[str, list[str], Path]], workers: int, progress: Callable[[], int], total: int, description: str
) -> None:
    """Run ``(name, command, log file)`` jobs ``workers`` at a time (one torch thread each), with a progress bar."""
    pending = list(jobs)
    running: list[tuple[str, Path, subprocess.Popen]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    bar = tqdm(total=total, initial=progress(), desc=description, unit="step", dynamic_ncols=True)
    try:
        while pending or running:
            while pending and len(running) < workers:
                name, command, log_path = pending.pop(0)
                with open(log_path, "ab") as log:
                    running.append(
                        (name, log_path, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
                    )
            time.sleep(1)
            for name, log_path, process in running:
                code = process.poll()
                if code not in (None, 0):
                    raise RuntimeError(f"{description} of {name} failed (exit {code}); see {log_path}")
            running = [entry for entry in running if entry[2].poll() is None]
            bar.n = progress()
            bar.refresh()
    finally:
        for _, _, process in running:
            process.terminate()
        bar.close()


def train_runs(plan: DemoPlan, out: Path) -> list[Path]:
    """Train every (encoding, seed) run, ``plan.jobs`` at a time; finished runs are reused, unfinished ones resumed."""
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = [runs_dir / name for _, _, name in plan.run_names()]
    jobs = []
    for (encoding, seed, name), run_dir in zip(plan.run_names(), run_dirs, strict=True):
        if _completed_step(run_dir) >= plan.steps:
            continue
        command = _train_command(plan, encoding, seed, run_dir)
        if (run_dir / "config.yaml").is_file():
            command.append("--resume")
        jobs.append((name, command, out / "logs" / f"{name}.train.log"))
    (out / "logs").mkdir(exist_ok=True)

    def progress() -> int:
        return sum(min(max(_logged_step(d), _completed_step(d)), plan.steps) for d in run_dirs)

    run_jobs(jobs, plan.jobs, progress, len(run_dirs) * plan.steps, "training")
    return run_dirs


def _evaluated(run_dir: Path) -> bool:
    return all((run_dir / "eval" / name).is_file() for name in ("perplexity.json", "passkey.json"))


def evaluate_runs(plan: DemoPlan, run_dirs: Sequence[Path], out: Path) -> None:
    """Perplexity at 1x..16x and passkey accuracy for every run (skipped when already done), in parallel workers."""
    fope = [sys.executable, "-m", "fope"]
    jobs = []
    for run_dir in run_dirs:
        if _evaluated(run_dir):
            continue
        script = " && ".join(
            [
                " ".join([*fope, "eval", str(run_dir), "--max-spans", str(plan.max_spans), "--no-progress"]),
                " ".join([*fope, "passkey", str(run_dir), "--trials", str(plan.passkey_trials), "--no-progress"]),
            ]
        )
        jobs.append((run_dir.name, ["bash", "-c", script], out / "logs" / f"{run_dir.name}.eval.log"))
    run_jobs(jobs, plan.jobs, lambda: sum(_evaluated(d) for d in run_dirs), len(run_dirs), "evaluating")


def key_table(results: dict[str, Any]) -> str:
    """The demo's summary: perplexity at each multiple of the training length and passkey accuracy."""
    lines = []
    for label, group in results["groups"].items():
        perplexity, passkey = group["perplexity"], group["passkey"]
        train_length = perplexity["train_lengths"][0] if perplexity else None
        row = {"configuration": label, "n": str(group["n"])}
        for entry in perplexity["by_length"] if perplexity else []:
            spread = entry["perplexity"]
            cell = f"{spread['mean']:.1f}" + (f" ± {spread['std']:.1f}" if spread["std"] is not None else "")
            row[f"ppl {entry['length'] // train_length}x"] = cell
        if passkey:
            inside = [e["accuracy"]["mean"] for e in passkey["by_length"] if e["length"] <= train_length]
            beyond = [e["accuracy"]["mean"] for e in passkey["by_length"] if e["length"] > train_length]
            row["passkey <= L"] = f"{100 * sum(inside) / len(inside):.0f}%" if inside else "-"
            row["passkey > L"] = f"{100 * sum(beyond) / len(beyond):.0f}%" if beyond else "-"
        lines.append(row)
    header = list(dict.fromkeys(key for row in lines for key in row))
    widths = {key: max(len(key), *(len(row.get(key, "-")) for row in lines)) for key in header}
    text = ["  ".join(key.rjust(widths[key]) for key in header)]
    text += ["  ".join(row.get(key, "-").rjust(widths[key]) for key in header) for row in lines]
    return "\n".join(text)


def run_demo(plan: DemoPlan, out: str | Path = "demo-output", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare the default corpus, train, evaluate and report; return the aggregated results."""
    from fope.analysis.report_section import attention_section
    from fope.data.prepare import prepare_data
    from fope.report import compare_runs
    from fope.runs import load_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = load_config(CONFIG_DIR / f"{plan.encodings[0]}.yaml").data
    prepared = prepare_data(
        data.source, data.root, vocab_size=data.vocab_size, val_fraction=data.val_fraction, seed=data.split_seed
    )
    log(
        f"data: {prepared.train.num_tokens:,} training and {prepared.val.num_tokens:,} held-out tokens "
        f"({'cached' if prepared.reused else 'prepared'} in {prepared.root})"
    )
    log(
        f"training {len(plan.run_names())} runs ({', '.join(plan.encodings)} x seeds {list(plan.seeds)}), "
        f"{plan.steps} steps each, {plan.jobs} at a time"
    )
    run_dirs = train_runs(plan, out)
    evaluate_runs(plan, run_dirs, out)
    title = "fope demo: length generalization of tiny models" + (" (quick)" if plan.quick else "")
    results = compare_runs(
        run_dirs,
        out / "report",
        title=title,
        evaluate_missing=False,
        progress=False,
        extra_sections=[attention_section],
    )
    minutes = (time.perf_counter() - started) / 60
    (out / "demo.json").write_text(json.dumps({"plan": asdict(plan), "minutes": minutes}, indent=2))
    log("")
    log(key_table(results))
    log(f"\nreport: {out / 'report' / 'report.md'}  ({minutes:.1f} min)")
    return results
