"""Peak memory and time of one no-grad forward pass of the tiny model at long context, per position encoding.

    .venv/bin/python benchmarks/bench_model.py                      # T = 2048 and 8192, CPU, Markdown table
    .venv/bin/python benchmarks/bench_model.py   (results are recorded in docs/benchmarks.md)

The model is d_model 128, 4 layers, 4 heads of 32, vocab 1024, train_length 128, batch 1; T = 2048 is 16x the training
length. On CPU every measurement runs in a fresh subprocess: peak RSS (``ru_maxrss``) after the forward pass minus peak
RSS after building the model and a 128-token warm-up pass, so allocator and thread-pool start-up are not counted
(glibc's mmap threshold is fixed so that freed tensors leave the RSS). On CUDA: ``torch.cuda.max_memory_allocated``
during the pass minus the memory allocated before it. Time is the fastest of ``--repeats`` further passes (other
processes sharing the CPU only ever add time). "alibi (one chunk)" sets a bias budget no chunk reaches, i.e. the
whole unchunked bias at once.
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

#: Row label -> (position-encoding name, max_bias_bytes override or None for the default 64 MiB).
CASES: dict[str, tuple[str, int | None]] = {
    "rope": ("rope", None),
    "fope": ("fope", None),
    "alibi": ("alibi", None),
    "alibi (one chunk)": ("alibi", 2**62),
    "nope": ("nope", None),
}
TRAIN_LENGTH = 128
MIB = 2**20


def tiny_model(position: str, max_bias_bytes: int | None) -> TransformerLM:
    """The benchmark model: d_model 128, 4 layers, 4 heads of 32, vocab 1024, train_length 128."""
    extra = {} if max_bias_bytes is None else {"max_bias_bytes": max_bias_bytes}
    config = ModelConfig(
        vocab_size=1024,
        d_model=128,
        num_layers=4,
        num_heads=4,
        position=position,
        train_length=TRAIN_LENGTH,
        position_seed=0,
        **extra,
    )
    return TransformerLM(config).eval()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(label: str, length: int, device: str, repeats: int) -> dict[str, float]:
    """Extra peak memory (bytes) and best time (s) of a forward pass of ``length`` tokens; run in a fresh process."""
    torch.manual_seed(0)
    model = tiny_model(*CASES[label]).to(device)
    tokens = torch.randint(0, 1024, (1, length), device=device)
    with torch.no_grad():
        model(tokens[:, :TRAIN_LENGTH])
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            baseline = torch.cuda.memory_allocated()
        else:
            baseline = peak_rss_bytes()
        model(tokens)
        if device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - baseline
        else:
            peak = peak_rss_bytes() - baseline
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(tokens)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return {"peak_bytes": peak, "seconds": min(times)}


def measure_in_subprocess(label: str, length: int, device: str, repeats: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", label, str(length), "--device", device, "--repeats", str(repeats)]
    # A fixed mmap threshold makes glibc return every large tensor to the OS when freed, so peak RSS tracks the peak of
    # live tensors instead of allocator reuse and fragmentation (without it, repeated runs differ by tens of MiB).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    completed = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def markdown_table(results: list[dict[str, object]]) -> str:
    lines = [
        "| position | T | T / train_length | peak memory above baseline (MiB) | forward time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['label']} | {row['length']} | {row['length'] // TRAIN_LENGTH} | "
            f"{row['peak_bytes'] / MIB:.1f} | {row['seconds']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--positions", nargs="+", default=list(CASES), choices=list(CASES), metavar="LABEL")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed passes after the measured one (the fastest is reported)"
    )
    parser.add_argument("--output", default=None, help="also write the table and set-up to this Markdown file")
    parser.add_argument("--child", nargs=2, metavar=("LABEL", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        label, length = args.child
        print(json.dumps(measure(label, int(length), args.device, args.repeats)))
        return

    results = []
    for length in args.lengths:
        for label in args.positions:
            if args.device == "cuda":
                torch.cuda.empty_cache()
                numbers = measure(label, length, args.device, args.repeats)
            else:
                numbers = measure_in_subprocess(label, length, args.device, args.repeats)
            results.append({"label": label, "length": length, **numbers})
            print(f"{label:>18}  T={length:<6} {numbers['peak_bytes'] / MIB:8.1f} MiB  {numbers['seconds']:.3f} s")
    table = markdown_table(results)
    print()
    print(table)
    if args.output:
        write_report(args, table)


def write_report(args: argparse.Namespace, table: str) -> None:
    command = " ".join(["python", "benchmarks/bench_model.py", *sys.argv[1:]])
    if args.device == "cuda":
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    text = "\n".join(
        [
            "# Model forward pass: peak memory and time at long context",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {args.device} ({machine}); torch {torch.__version__}; Python {platform.python_version()}.",
            "",
            "Model: d_model 128, 4 layers, 4 heads of 32, vocab 1024, SwiGLU 512, train_length 128, batch 1, float32,",
            "no grad. Memory is the peak above the state after building the model and a 128-token warm-up pass "
            + ("(`torch.cuda.max_memory_allocated`)." if args.device == "cuda" else "(peak RSS, fresh process each)."),
            f"Time is the fastest of {args.repeats} passes after the measured one.",
            "",
            table,
            "",
        ]
    )
    with open(args.output, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
