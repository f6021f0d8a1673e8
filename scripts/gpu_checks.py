"""Every prepared GPU check of the project in one run that fits 9 minutes on one H100: docs/benchmarks.md,
"Prepared GPU checks".

    .venv/bin/python scripts/gpu_checks.py [--out DIR] [--only STEP ...] [--budget 530] [--dry-run] [--force]

Steps, in order, each a separate process with its own time limit (and none past the run's ``--budget`` seconds):

- ``gpu``: ``nvidia-smi``'s name, memory and driver of each GPU;
- ``hf_trainer``: scripts/hf_trainer_gpu_check.py, a converted FoPE model under transformers' Trainer + FSDP2;
- ``torchtitan``: scripts/torchtitan_gpu_check.py, 20 steps of torchtitan's debug Llama with the FoPE plugin;
- ``fsdp_train``: scripts/fsdp_gpu_check.py, ``fope train --preset paper/60m`` fsdp against ddp, and resume;
- ``bench_fsdp``: benchmarks/bench_fsdp.py, ddp against fsdp on the 60M preset, one process on one GPU;
- ``bench_kernel``: benchmarks/bench_kernel.py --quick, the fused FoPE kernel against eager, compiled and Liger.

Each step writes ``DIR/STEP.log`` (its whole output) and, where it has results, ``DIR/STEP.json``; after each step
``DIR/gpu_checks.json`` holds every step so far (exit code, seconds, whether it timed out, its last line) and what
the figures belong to (the device torch sees, the CUDA and package versions, ``nvidia-smi``'s line). A failing
step does not stop the others; the exit code is 1 if any failed. ``DIR`` defaults to ``$OUT``. Every step needs CUDA
and says so in one line without it. ``--dry-run`` lists the steps and their commands and runs nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's fope, which the steps get through PYTHONPATH

import torch  # noqa: E402

from fope.files import write_atomic  # noqa: E402

#: Packages whose versions the summary records (absent ones as null).
PACKAGES = ("torch", "triton", "transformers", "accelerate", "torchtitan", "liger-kernel")


@dataclass(frozen=True)
class Step:
    name: str
    timeout_s: int
    command: str  # split on spaces; "python" is this interpreter, "{out}" the output folder
    writes_json: bool = True

    def argv(self, out: Path | str) -> list[str]:
        parts = self.command.split()
        return [sys.executable if part == "python" else part.replace("{out}", str(out)) for part in parts]


STEPS = (
    Step("gpu", 20, "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader", False),
    Step("hf_trainer", 90, "python scripts/hf_trainer_gpu_check.py --json {out}/hf_trainer.json --force"),
    Step(
        "torchtitan",
        90,
        "python scripts/torchtitan_gpu_check.py --gpus 1 --steps 20 --json {out}/torchtitan.json --force",
    ),
    Step("fsdp_train", 180, "python scripts/fsdp_gpu_check.py --json {out}/fsdp_train.json --force"),
    Step(
        "bench_fsdp",
        70,
        "python benchmarks/bench_fsdp.py --device cuda --nproc 1 --presets paper/60m --batch-size 32 --steps 10 "
        "--warmup 3 --json {out}/bench_fsdp.json --force",
    ),
    Step(
        "bench_kernel",
        240,
        "python benchmarks/bench_kernel.py --quick --repeats 10 --json {out}/bench_kernel.json --force",
    ),
)


def run_step(step: Step, out: Path, timeout_s: float) -> dict:
    """Run one step in its own process group, its output into ``out/STEP.log``; kill the group past ``timeout_s``."""
    command = step.argv(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    log_path = out / f"{step.name}.log"
    started = time.perf_counter()
    timed_out = False
    with open(log_path, "w") as log:
        try:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # fmt: skip
        except FileNotFoundError:
            log.write(f"{command[0]}: not found on PATH (no NVIDIA driver here?)\n")
            code = 127
        else:
            try:
                code = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)  # the step's own group: torchrun and its ranks with it
                code = process.wait()
                log.write(f"\ngpu_checks: {step.name} stopped after its {timeout_s:.0f} s limit\n")
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    result_path = out / f"{step.name}.json"
    return {
        "step": step.name,
        "passed": code == 0 and not timed_out,
        "exit_code": code,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - started, 1),
        "limit_s": round(timeout_s),
        "command": " ".join(command),
        "json": result_path.name if step.writes_json and result_path.is_file() else None,
        "last_line": lines[-1] if lines else "",
    }


def environment() -> dict:
    """What the figures belong to: the interpreter's torch and CUDA, the device torch sees, the packages' versions."""

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    cuda = torch.cuda.is_available()
    return {
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "device": torch.cuda.get_device_name() if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "python": sys.version.split()[0],
        "packages": {package: version(package) for package in PACKAGES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default $OUT)")
    parser.add_argument("--only", nargs="+", choices=[step.name for step in STEPS], help="run these steps only")
    parser.add_argument("--budget", type=float, default=530, help="seconds for all steps together (default 530)")
    parser.add_argument("--dry-run", action="store_true", help="list the steps and their commands; run nothing")
    parser.add_argument("--force", action="store_true", help="run into an --out that holds an earlier run's results")
    args = parser.parse_args()
    steps = [step for step in STEPS if not args.only or step.name in args.only]
    if args.dry_run:
        for step in steps:
            print(f"{step.name} ({step.timeout_s} s): {step.command}")
        print(f"{len(steps)} steps, at most {min(args.budget, sum(s.timeout_s for s in steps)):.0f} s in all")
        return
    if not args.out:
        print("gpu_checks: no output folder: pass --out DIR or set $OUT", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out).resolve()
    if (out / "gpu_checks.json").exists() and not args.force:  # the steps' --force below: the folder is this run's
        print(f"gpu_checks: {out} holds an earlier run's results (gpu_checks.json); pass --force to replace them, "
              "or give another --out", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget
    results = []
    summary = {"budget_s": args.budget, "environment": environment(), "steps": results, "passed": False}
    for step in steps:
        left = deadline - time.monotonic()
        if left < 5:
            results.append({"step": step.name, "passed": False, "skipped": "the run's --budget was spent"})
        else:
            results.append(run_step(step, out, min(step.timeout_s, left)))
        done = results[-1]
        print(f"{step.name}: {'ok' if done['passed'] else 'FAILED'} {done.get('seconds', 0)} s "
              f"{done.get('last_line') or done.get('skipped', '')}"[:300], flush=True)  # fmt: skip
        if step.name == "gpu" and done["passed"]:
            summary["gpu"] = (out / "gpu.log").read_text().strip()
        summary["passed"] = all(result["passed"] for result in results)
        write_atomic(out / "gpu_checks.json", json.dumps(summary, indent=2))
    sys.exit(0 if summary["passed"] else 1)


if __name__ == "__main__":
    main()
