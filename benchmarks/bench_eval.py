"""Time and peak memory of the length-generalization evaluations at 16x the training length, per position encoding.

    .venv/bin/python benchmarks/bench_eval.py                        # rope, fope, alibi on CPU, Markdown table
    .venv/bin/python benchmarks/bench_eval.py --positions rope --device cuda

The model has the tiny preset's shape (d_model 128, 4 layers, 4 heads of 32, vocab 1024, train_length 128) and is
untrained (time and memory do not depend on the weights). The data is the default corpus's held-out split at vocab
1024 (``prepare_data()``; cached after the first call). Each measurement runs in a fresh process:

- ``perplexity 16x``: ``evaluate_perplexity`` at length 2048 only (32 spans, the default batch of 16384 tokens);
- ``perplexity 1x-16x``: the default lengths 128..2048 on the same 32 spans (time only);
- ``passkey 16x``: ``evaluate_passkey`` at length 2048 (time per trial: prompt building, prefill, 10 greedy steps).

Memory on CPU is the peak RSS (``ru_maxrss``) at the end minus the peak RSS after loading the data, building the
model and a warm-up evaluation at length 128 (glibc's mmap threshold is fixed so that freed tensors leave the RSS);
on CUDA, ``torch.cuda.max_memory_allocated`` minus the memory allocated after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

from fope import ModelConfig, TransformerLM
from fope.data import prepare_data
from fope.evaluate.passkey import evaluate_passkey
from fope.evaluate.perplexity import evaluate_perplexity

TRAIN_LENGTH = 128
LONGEST = 16 * TRAIN_LENGTH
MODES = ("perplexity 16x", "perplexity 1x-16x", "passkey 16x")
MIB = 2**20


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(position: str, mode: str, device: str, trials: int) -> dict[str, float]:
    """Seconds and extra peak memory (bytes) of one evaluation mode; meant to run in a fresh process."""
    data = prepare_data()
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=data.tokenizer.vocab_size,
        d_model=128,
        num_layers=4,
        num_heads=4,
        position=position,
        train_length=TRAIN_LENGTH,
        position_seed=0,
    )
    model = TransformerLM(config).to(device).eval()
    common = {"train_length": TRAIN_LENGTH, "progress": False}
    evaluate_perplexity(model, data.val, data.tokenizer, lengths=[TRAIN_LENGTH], max_spans=1, **common)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = peak_rss_bytes()
    start = time.perf_counter()
    if mode == "perplexity 16x":
        results = evaluate_perplexity(model, data.val, data.tokenizer, lengths=[LONGEST], **common)
        units = results["results"][0]["windows"]
    elif mode == "perplexity 1x-16x":
        results = evaluate_perplexity(model, data.val, data.tokenizer, **common)
        units = results["spans"]["count"]
    else:
        evaluate_passkey(model, data.tokenizer, lengths=[LONGEST], trials=trials, **common)
        units = trials
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()
    return {"seconds": seconds, "units": units, "peak_bytes": peak - baseline}


def measure_in_subprocess(position: str, mode: str, device: str, trials: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", position, mode, "--device", device, "--trials", str(trials)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    completed = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| position | evaluation | what | seconds | seconds per unit | peak memory above baseline (MiB) |",
        "|---|---|---|---:|---:|---:|",
    ]
    unit = {"perplexity 16x": "windows of 2048", "perplexity 1x-16x": "spans of 2049", "passkey 16x": "trials"}
    for row in rows:
        lines.append(
            f"| {row['position']} | {row['mode']} | {row['units']} {unit[row['mode']]} | {row['seconds']:.1f} | "
            f"{row['seconds'] / row['units']:.2f} | {row['peak_bytes'] / MIB:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", nargs="+", default=["rope", "fope", "alibi"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trials", type=int, default=5, help="passkey trials at 16x")
    parser.add_argument("--child", nargs=2, metavar=("POSITION", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.device, args.trials)))
        return
    rows = []
    for position in args.positions:
        for mode in args.modes:
            row = {
                "position": position,
                "mode": mode,
                **measure_in_subprocess(position, mode, args.device, args.trials),
            }
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    threads = torch.get_num_threads()
    print(f"Machine: {args.device} ({platform.machine()}, {threads} torch threads); torch {torch.__version__}")
    print()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
