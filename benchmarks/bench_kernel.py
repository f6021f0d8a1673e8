"""GPU benchmark of the fused FoPE kernel against eager fope, compiled fope and Liger-Kernel's RoPE; docs/benchmarks.md.

python benchmarks/bench_kernel.py [--quick] [--repeats 20] [--json out.json]   # CUDA, < 10 min on one H100/H200
python benchmarks/bench_kernel.py --smoke    # CPU, tiny shapes, the kernel under TRITON_INTERPRET=1: the script runs

Shapes: Llama-3-8B attention (32 query / 8 KV heads, head_dim 128, theta 5e5, bf16, B=1, T = 4k, 16k, 64k, 128k;
FoPE with train_length 8192, one coefficient set per KV head) and the paper's 60M model (8 heads, head_dim 64,
L=512, B=64). Columns, each timed forward and forward+backward (q and k both receive gradients):

- ``fope fused`` / ``rope fused``: ``pe(q, k, positions)`` through the Triton kernel (features computed in the kernel);
- ``fope eager`` / ``rope eager``: fope's eager path (features ``(B|1, Hc, T, D/2)`` then the rotation);
- ``fope compiled`` / ``rope compiled``: ``torch.compile(pe, fullgraph=True, dynamic=True)``, one compile per model;
- ``liger rope``: ``liger_kernel``'s ``liger_rotary_pos_emb`` with cos/sin ``(1, T, D)`` computed once outside the
  timed region, as a transformers model does for all its layers (skipped, and said so, when liger_kernel is not
  installed).

Each cell: median of ``--repeats`` CUDA-event timings after warm-up; "% of copy" is the minimal traffic (forward:
read q, k and write q', k'; forward+backward twice that) over the time, against ``dst.copy_(src)`` bandwidth measured
in the same run. At the longest length it also reports the peak memory each column allocates beyond its inputs and
what a ``(max_positions, Hkv, 2 * head_dim)`` float32 table (vLLM / SGLang) would hold, and checks the fused outputs
and gradients against the eager path (max absolute difference).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fope.benchmark import check_json_path, copy_bandwidth
from fope.files import write_atomic
from fope.positions import FoPE, RoPE


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    q_heads: int
    kv_heads: int
    head_dim: int
    length: int
    train_length: int
    theta: float


def shapes(quick: bool, smoke: bool) -> list[Shape]:
    if smoke:
        return [Shape("smoke", 1, 4, 2, 16, 32, 128, 1e4)]
    lengths = (4096, 16384) if quick else (4096, 16384, 65536, 131072)
    llama = [Shape(f"llama-3-8b T={t // 1024}k", 1, 32, 8, 128, t, 8192, 5e5) for t in lengths]
    return [Shape("paper-60m B=64 T=512", 64, 8, 8, 64, 512, 512, 1e4), *llama]


def liger_apply() -> Callable | None:
    """Liger-Kernel's RoPE, or None when liger_kernel is not installed (imported here only: an optional column)."""
    try:
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except ImportError:
        return None
    return liger_rotary_pos_emb


@functools.cache
def modules(model: tuple, device: torch.device, compile: bool) -> dict[str, Callable]:
    """The fope columns for one attention shape ``(q_heads, kv_heads, head_dim, train_length, theta)``, built once:
    the lengths of one model share them, so each compiled module compiles once (``dynamic=True``) for all lengths."""
    q_heads, kv_heads, head_dim, train_length, theta = model
    shape = Shape("", 1, q_heads, kv_heads, head_dim, 1, train_length, theta)
    return columns(shape, device, compile)


def columns(shape: Shape, device: torch.device, compile: bool) -> dict[str, Callable]:
    """name -> ``f(q, k, positions) -> (q', k')``; every module sits on ``device``."""

    def fope(kernel: str) -> FoPE:
        pe = FoPE(
            head_dim=shape.head_dim,
            num_heads=shape.q_heads,
            num_kv_heads=shape.kv_heads,
            train_length=shape.train_length,
            theta=shape.theta,
            sigma=0.3,
            seed=0,
        ).to(device)
        pe.kernel = kernel
        return pe

    def rope(kernel: str) -> RoPE:
        pe = RoPE(shape.head_dim, theta=shape.theta).to(device)
        pe.kernel = kernel
        return pe

    result: dict[str, Callable] = {
        "fope fused": fope("triton"),
        "fope eager": fope("eager"),
        "rope fused": rope("triton"),
        "rope eager": rope("eager"),
    }
    if compile:
        result["fope compiled"] = torch.compile(fope("eager"), fullgraph=True, dynamic=True)
        result["rope compiled"] = torch.compile(rope("eager"), fullgraph=True, dynamic=True)
    return result


def liger_column(shape: Shape, device: torch.device, liger: Callable, dtype: torch.dtype) -> Callable:
    """Liger's RoPE with the ``(1, T, D)`` cos/sin tables a transformers model builds once per forward (not timed)."""
    inv_freq = RoPE(shape.head_dim, theta=shape.theta).inv_freq.to(device)
    angles = torch.arange(shape.length, device=device).float()[:, None] * inv_freq
    cos = torch.cat((angles.cos(), angles.cos()), -1)[None].to(dtype)
    sin = torch.cat((angles.sin(), angles.sin()), -1)[None].to(dtype)
    return lambda q, k, positions: liger(q, k, cos, sin)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds of ``step`` (CUDA events on a GPU, perf_counter elsewhere)."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            step()
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def forward(apply: Callable, q: Tensor, k: Tensor, positions: Tensor, grads: tuple[Tensor, Tensor]) -> None:
    with torch.no_grad():
        apply(q, k, positions)


def forward_backward(apply: Callable, q: Tensor, k: Tensor, positions: Tensor, grads: tuple[Tensor, Tensor]) -> None:
    q.grad = k.grad = None
    torch.autograd.backward(apply(q, k, positions), grads)


def bench_shape(shape: Shape, args: argparse.Namespace, context: dict, measure_memory: bool) -> dict:
    """Rows (time per column and mode), peak memory per column (``measure_memory``, CUDA) and fused-vs-eager checks."""
    device, dtype = context["device"], context["dtype"]
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, grad_q, grad_k = (
        torch.randn(shape.batch, heads, shape.length, shape.head_dim, device=device, generator=generator).to(dtype)
        for heads in (shape.q_heads, shape.kv_heads, shape.q_heads, shape.kv_heads)
    )
    q.requires_grad_(True)
    k.requires_grad_(True)
    data = (q, k, torch.arange(shape.length, device=device), (grad_q, grad_k))
    element_bytes = (q.numel() + k.numel()) * q.element_size()
    rows, memory, outputs = [], [], {}
    model = (shape.q_heads, shape.kv_heads, shape.head_dim, shape.train_length, shape.theta)
    applied = dict(modules(model, device, args.compile and not args.smoke))
    if context["liger"] is not None:
        applied["liger rope"] = liger_column(shape, device, context["liger"], dtype)
    for name, apply in applied.items():
        for mode, step, traffic in (("fwd", forward, 2), ("fwd+bwd", forward_backward, 4)):
            seconds = timed(functools.partial(step, apply, *data), device, context["repeats"], context["warmup"])
            floor = traffic * element_bytes / context["bandwidth"]
            rows.append(
                {
                    "shape": shape.name,
                    "mode": mode,
                    "column": name,
                    "ms": seconds * 1e3,
                    "copy_fraction": floor / seconds,
                }
            )
        if name in ("fope fused", "fope eager", "rope fused", "rope eager"):
            forward_backward(apply, *data)
            outputs[name] = [t.detach().float() for t in (*apply(q, k, data[2]), q.grad, k.grad)]
        if measure_memory:
            torch.cuda.empty_cache()
            q.grad = k.grad = None
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            forward_backward(apply, *data)
            torch.cuda.synchronize(device)
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            memory.append({"column": name, "peak_extra_mib": peak})
    checks = []
    for scheme in ("fope", "rope"):
        fused, eager = outputs[f"{scheme} fused"], outputs[f"{scheme} eager"]
        diffs = [(a - b).abs().max().item() for a, b in zip(fused, eager, strict=True)]
        checks.append({"shape": shape.name, "scheme": scheme, "max_abs_diff_q_k_dq_dk": diffs})
    return {"rows": rows, "memory": memory, "checks": checks}


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.smoke else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        message = "bench_kernel: no CUDA device here; use --smoke on a CPU (the kernel under the interpreter)"
        print(message, file=sys.stderr)
        sys.exit(2)  # as every prepared GPU check stops without one (scripts/gpu_checks.py)
    liger = liger_apply()
    if liger is None:
        print("liger_kernel is not installed: the 'liger rope' column is skipped (pip install liger-kernel)")
    context = {
        "device": device,
        "dtype": torch.float32 if args.smoke else torch.bfloat16,  # the interpreter is quicker in fp32
        "liger": liger,
        "bandwidth": copy_bandwidth(device, megabytes=1 if args.smoke else 1024),
        "repeats": 1 if args.smoke else args.repeats,
        "warmup": 0 if args.smoke else 3,
    }
    results: dict = {"rows": [], "memory": [], "checks": []}
    all_shapes = shapes(args.quick, args.smoke)
    for shape in all_shapes:
        print(f"{shape.name}: B={shape.batch} Hq={shape.q_heads} Hkv={shape.kv_heads} D={shape.head_dim}", flush=True)
        measured = bench_shape(shape, args, context, measure_memory=shape is all_shapes[-1] and device.type == "cuda")
        for key, values in measured.items():
            results[key] += values
    last = all_shapes[-1]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)",
        "torch": torch.__version__,
        "copy_bandwidth_gb_s": context["bandwidth"] / 1e9,
        "repeats": context["repeats"],
        "dtype": str(context["dtype"]).removeprefix("torch."),
        "liger": liger is not None,
        "memory_shape": last.name,
        "table_mib": last.length * last.kv_heads * 2 * last.head_dim * 4 / 2**20,
        **results,
    }


def report(results: dict) -> str:
    lines = [
        f"device: {results['device']}, torch {results['torch']}, {results['dtype']}, copy bandwidth "
        f"{results['copy_bandwidth_gb_s']:.0f} GB/s, median of {results['repeats']}"
        + ("" if results["liger"] else "; liger_kernel not installed: no Liger column"),
        "",
        "| shape | mode | column | ms | % of copy | / liger rope |",
        "|---|---|---|---:|---:|---:|",
    ]
    liger = {(r["shape"], r["mode"]): r["ms"] for r in results["rows"] if r["column"] == "liger rope"}
    for row in results["rows"]:
        ratio = liger.get((row["shape"], row["mode"]))
        lines.append(
            f"| {row['shape']} | {row['mode']} | {row['column']} | {row['ms']:.3f} | "
            f"{100 * row['copy_fraction']:.0f}% | {row['ms'] / ratio:.2f} |"
            if ratio
            else f"| {row['shape']} | {row['mode']} | {row['column']} | {row['ms']:.3f} | "
            f"{100 * row['copy_fraction']:.0f}% | - |"
        )
    if results["memory"]:
        lines += [
            "",
            f"Peak memory beyond the inputs, fwd+bwd at {results['memory_shape']} "
            f"(a (T, Hkv, 2*D) float32 table would hold {results['table_mib']:.0f} MiB):",
            "",
        ]
        lines += ["| column | peak extra MiB |", "|---|---:|"]
        lines += [f"| {m['column']} | {m['peak_extra_mib']:.0f} |" for m in results["memory"]]
    lines += ["", "fused vs eager, max |difference| of q', k', dq, dk:", ""]
    lines += [
        f"- {c['shape']} {c['scheme']}: " + ", ".join(f"{d:.2e}" for d in c["max_abs_diff_q_k_dq_dk"])
        for c in results["checks"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="the 60M shape and Llama at 4k and 16k only")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile columns")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, the kernel under TRITON_INTERPRET=1")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    json_path = check_json_path(args.json_path, force=args.force) if args.json_path else None
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is first jitted
    started = time.perf_counter()
    results = run(args)
    results["wall_s"] = time.perf_counter() - started
    print(report(results))
    print(f"\nwall time {results['wall_s']:.0f} s", file=sys.stderr)
    if json_path is not None:
        write_atomic(json_path, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
