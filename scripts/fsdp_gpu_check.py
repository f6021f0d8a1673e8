"""``train.parallel: fsdp`` against ddp on GPUs, the done-when of docs/training.md's sharded training, on a GPU.

    .venv/bin/python scripts/fsdp_gpu_check.py [--preset paper/60m] [--nproc 1] [--batch-size 32]
        [--json out.json [--force]]

Four ``fope train`` runs of the preset on the same batches (the corpus: this repository's own text, README, docs and
Python files as a JSONL, since the GPU machine may have no network for the default corpus; the preset's tokenizer is
trained on it), all float32 (``train.precision=fp32``: the 1e-4 comparison is one of float32 sums in another order;
bf16 under fsdp is ``MixedPrecisionPolicy``, under ddp autocast, which round differently):

1. ``torchrun --nproc_per_node N -m fope train ... --set train.parallel=fsdp`` to step 20 of a 30-step schedule;
2. ``fope train ... --set train.parallel=ddp`` in one process, to step 20 of the same schedule;
3. and 4. each resumed in one process (``--resume --set train.parallel=ddp``: the sharded checkpoint of 1. is read
   by a plain process) to step 30.

It fails (exit 1) unless the validation losses at steps 10, 20 and 30 and the training losses of every step agree
within 1e-4 relative, and the loss falls. Then, for information only (no tolerance is claimed), the bf16 pair: fsdp
with its bf16 policy and ddp with bf16 autocast, 20 steps each; their losses must be finite and fall. With one
process (one GPU) fsdp still shards, over a world of one: the check is of the sharded code path (DTensor
parameters, DCP checkpoints, the mixed-precision policy), not of communication. It prints one JSON line. Without
CUDA it stops at once with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def write_corpus(path: Path) -> Path:
    """The repository's README, docs and Python sources, one JSONL document per file."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "src").rglob("*.py"))]
    lines = [json.dumps({"text": file.read_text(encoding="utf-8")}) for file in files if file.is_file()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(folder: Path, name: str, parallel: str, nproc: int, args: argparse.Namespace, extra: list[str]) -> Path:
    """One ``fope train`` run (under torchrun for fsdp) into ``folder/name``; its log under ``folder/name.log``."""
    out = folder / name
    overrides = {
        "train.parallel": parallel,
        "train.batch_size": args.batch_size,
        "train.eval_every": 10,
        "train.eval_batches": 4,
        "train.checkpoint_every": 10,
        "train.log_every": 1,
        "train.compile": "false",
        "optim.warmup_steps": 5,
    }
    if parallel == "fsdp":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    else:
        launcher = [sys.executable]
    command = [*launcher, "-m", "fope", "train", "--out", str(out), "--no-progress", *extra]
    command += [item for key, value in overrides.items() for item in ("--set", f"{key}={value}")]
    with open(folder / f"{name}.log", "a") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    if done.returncode:
        tail = (folder / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")
    return out


def losses(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Training and validation losses by step, from the run's ``metrics.jsonl``."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    training = {r["step"]: r["loss"] for r in records if "loss" in r}
    validation = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    return training, validation


def largest_difference(a: dict[int, float], b: dict[int, float]) -> float:
    """The largest relative difference over the steps both hold (inf when they hold different steps)."""
    if sorted(a) != sorted(b) or not a:
        return math.inf
    return max(abs(a[step] - b[step]) / abs(b[step]) for step in a)


def falls(training: dict[int, float]) -> bool:
    """Every loss finite, and the last below the first."""
    return all(math.isfinite(loss) for loss in training.values()) and training[max(training)] < training[min(training)]


def run_check(args: argparse.Namespace, folder: Path) -> dict:
    corpus = write_corpus(folder / "corpus.jsonl")
    start = ["--preset", args.preset, "--max-steps", "30", "--until-step", "20", "--set", f"data.source={corpus}"]
    fp32 = ["--set", "train.precision=fp32"]
    fsdp = train(folder, "fsdp", "fsdp", args.nproc, args, [*start, *fp32])
    ddp = train(folder, "ddp", "ddp", 1, args, [*start, *fp32])
    for run in (fsdp, ddp):
        train(folder, run.name, "ddp", 1, args, ["--resume", *fp32])
    (fsdp_train, fsdp_val), (ddp_train, ddp_val) = losses(fsdp), losses(ddp)
    bf16 = ["--preset", args.preset, "--max-steps", "20", "--set", f"data.source={corpus}"]
    bf16 += ["--set", "train.precision=bf16"]
    bf16_fsdp, bf16_ddp = (
        losses(train(folder, f"bf16-{kind}", kind, args.nproc, args, bf16))[0] for kind in ("fsdp", "ddp")
    )
    checks = {
        "val_loss_within_1e-4": largest_difference(fsdp_val, ddp_val) <= TOLERANCE and sorted(ddp_val) == [10, 20, 30],
        "train_loss_within_1e-4": largest_difference(fsdp_train, ddp_train) <= TOLERANCE and len(ddp_train) == 30,
        "loss_falls": ddp_train[30] < ddp_train[1],
        "bf16_finite_and_falls": all(falls(run) for run in (bf16_fsdp, bf16_ddp)),
    }
    return {
        "check": "fsdp_train",
        "passed": all(checks.values()),
        "checks": checks,
        "preset": args.preset,
        "batch": f"{args.batch_size} x preset seq_len",
        "nproc": args.nproc,
        "fp32_val_loss": {"fsdp": fsdp_val, "ddp": ddp_val},
        "fp32_val_rel_diff": largest_difference(fsdp_val, ddp_val),
        "fp32_train_rel_diff": largest_difference(fsdp_train, ddp_train),
        "bf16_train_loss_last": {"fsdp": bf16_fsdp[max(bf16_fsdp)], "ddp": bf16_ddp[max(bf16_ddp)]},
        "bf16_train_rel_diff": largest_difference(bf16_fsdp, bf16_ddp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper/60m")
    parser.add_argument("--nproc", type=int, default=1, help="fsdp processes, one GPU each (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="global sequences per step (default 32)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON result here")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        message = "fsdp_gpu_check: needs CUDA (torch.cuda.is_available() is False here); run it on a GPU machine"
        print(message, file=sys.stderr)
        sys.exit(2)
    from fope.benchmark import check_json_path
    from fope.files import write_atomic

    json_path = check_json_path(args.json_path, force=args.force) if args.json_path else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        os.environ.setdefault("FOPE_CACHE", str(Path(temporary) / "cache"))
        try:
            result = run_check(args, Path(temporary))
        except RuntimeError as error:
            result = {"check": "fsdp_train", "passed": False, "error": str(error)}
    result |= {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    result["seconds"] = round(time.perf_counter() - started, 1)
    if json_path is not None:
        write_atomic(json_path, json.dumps(result, indent=2))
    print(json.dumps(result))
    if not result["passed"]:
        sys.exit("fsdp_gpu_check failed: " + str(result.get("error") or result["checks"]))


if __name__ == "__main__":
    main()
