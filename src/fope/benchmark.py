"""Benchmark of position-encoding application: forward + backward (or forward) time of FoPE, RoPE and YaRN on q and k.

Reports each scheme's time, FoPE / RoPE as a ratio measured in the same run (schemes are interleaved repeat by repeat,
in a rotating order, so drift in machine load and order effects hit all of them alike), and two floors:

- the bytes the application must move at minimum against a measured memory-copy bandwidth (a copy into a buffer that
  already exists): how far each one is from the memory-bound floor;
- ``copy``, timed like a scheme: q and k copied into fresh tensors, and in the backward the gradients copied into
  fresh tensors. That is the least any out-of-place application costs on this device and allocator: it moves the
  minimum bytes and allocates its outputs as a rotation must (on the CPU, fresh blocks above glibc's mmap threshold
  are faulted in and zeroed on first touch, which the first floor never pays).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fope.device import resolve_device
from fope.errors import FopeError
from fope.files import write_atomic
from fope.positions import PositionEncoding, build_position_encoding

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class BenchmarkRow:
    """One (shape, dtype, scheme) measurement."""

    scheme: str
    shape: str
    dtype: str
    compiled: bool
    mode: str  # "fwd+bwd" or "fwd"
    median_ms: float
    ratio_to_rope: float
    ratio_to_copy: float  # to the ``copy`` pseudo-scheme's time in the same run
    min_bytes: int
    floor_ms: float
    fraction_of_bandwidth: float


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, megabytes: int = 256, repeats: int = 10) -> float:
    """Measured memory-copy bandwidth in bytes/s (``dst.copy_(src)`` reads and writes ``megabytes`` each)."""
    src = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / min(times)


def _minimum_bytes(q: torch.Tensor, k: torch.Tensor, forward_only: bool = False) -> int:
    """Bytes a fused forward + backward must move: read q, k and write q', k'; read dq', dk' and write dq, dk (the
    forward: half of that)."""
    return (2 if forward_only else 4) * (q.numel() + k.numel()) * q.element_size()


class _FreshCopy(torch.autograd.Function):
    """The identity into a fresh tensor, forward and backward: what an out-of-place rotation costs at the least."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone()


class FreshCopy(torch.nn.Module):
    """The ``copy`` pseudo-scheme: ``pe(q, k)`` that only copies q and k (and their gradients) into fresh tensors."""

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _FreshCopy.apply(q), _FreshCopy.apply(k)


def _step(pe: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, grad_q: torch.Tensor, grad_k: torch.Tensor) -> None:
    q_out, k_out = pe(q, k)
    torch.autograd.backward((q_out, k_out), (grad_q, grad_k))


def _forward_step(pe: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, *grads: torch.Tensor) -> None:
    with torch.no_grad():
        pe(q, k)


def run_position_benchmark(
    device: str | None = None,
    quick: bool = False,
    json_path: str | Path | None = None,
    compile: bool = False,
    progress: Callable[[str], None] | None = print,
    forward_only: bool = False,
    force: bool = False,
) -> dict:
    """Time forward + backward (``forward_only``: forward) of FoPE, RoPE, YaRN and the ``copy`` floor on
    ``(B, H, T, D)`` q and k; return rows and the bandwidth.

    ``device`` (default: CUDA when available) and ``json_path`` are checked before anything is timed; an existing
    ``json_path`` is replaced only with ``force``.
    """
    dev = resolve_device(device or "auto")
    if json_path is not None:
        json_path = check_json_path(json_path, force=force)
    batch, heads, length = (1, 4, 512) if quick else (4, 8, 4096)
    repeats = 3 if quick else 10
    bandwidth = copy_bandwidth(dev, megabytes=16 if quick else 256)
    rows: list[BenchmarkRow] = []
    for head_dim in (64, 128):
        schemes: dict[str, PositionEncoding] = {
            "rope": build_position_encoding("rope", head_dim=head_dim),
            "yarn": build_position_encoding("yarn", head_dim=head_dim, factor=8.0, original_max_position=512),
            "fope": build_position_encoding("fope", head_dim=head_dim, num_heads=heads, train_length=512, seed=0),
            "copy": FreshCopy(),
        }
        for dtype_name, dtype in DTYPES.items():
            shape = f"B={batch} H={heads} T={length} D={head_dim}"
            if progress:
                progress(f"benchmarking {shape} {dtype_name} on {dev.type}")
            generator = torch.Generator(device=dev).manual_seed(0)
            q, k, grad_q, grad_k = (
                torch.randn(batch, heads, length, head_dim, device=dev, generator=generator).to(dtype) for _ in range(4)
            )
            q.requires_grad_(True)
            k.requires_grad_(True)
            modules = {name: pe.to(dev) for name, pe in schemes.items()}
            if compile:
                torch.compiler.reset()  # schemes share RotaryEncoding.forward: keep under the recompile limit
                modules = {name: torch.compile(pe, fullgraph=True, dynamic=False) for name, pe in modules.items()}
            times: dict[str, list[float]] = {name: [] for name in modules}
            step = _forward_step if forward_only else _step
            for pe in modules.values():  # warm-up (and compilation)
                for _ in range(2):
                    step(pe, q, k, grad_q, grad_k)
            names = list(modules)
            for repeat in range(repeats):
                for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate the order
                    pe = modules[name]
                    q.grad = k.grad = None
                    _synchronize(dev)
                    start = time.perf_counter()
                    step(pe, q, k, grad_q, grad_k)
                    _synchronize(dev)
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(values) for name, values in times.items()}
            min_bytes = _minimum_bytes(q, k, forward_only)
            floor = min_bytes / bandwidth
            for name, median in medians.items():
                rows.append(
                    BenchmarkRow(
                        scheme=name,
                        shape=shape,
                        dtype=dtype_name,
                        compiled=compile,
                        mode="fwd" if forward_only else "fwd+bwd",
                        median_ms=median * 1e3,
                        ratio_to_rope=median / medians["rope"],
                        ratio_to_copy=median / medians["copy"],
                        min_bytes=min_bytes,
                        floor_ms=floor * 1e3,
                        fraction_of_bandwidth=floor / median,
                    )
                )
    results = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "repeats": repeats,
        "rows": [asdict(row) for row in rows],
    }
    if json_path is not None:
        write_atomic(json_path, json.dumps(results, indent=2))
    return results


def check_json_path(json_path: str | Path, *, force: bool = False) -> Path:
    """``json_path`` as a path, if a file can be written there: not a folder, under folders (not files), and not an
    existing file unless ``force`` (the benchmarks' ``--force``)."""
    path = Path(json_path)
    if path.is_dir():
        raise FopeError(f"the JSON output {str(path)!r} is a folder; give a file name, e.g. {path / 'bench.json'}")
    if (path.exists() or path.is_symlink()) and not force:
        raise FopeError(f"the JSON output {str(path)!r} exists; pass --force to replace it, or give another file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FopeError(f"the JSON output {str(path)!r} cannot be written: {parent} is a file, not a folder")
            break
    return path


def format_position_benchmark(results: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        f"device: {results['device']}, torch {results['torch']}, "
        f"copy bandwidth {results['copy_bandwidth_gb_s']:.1f} GB/s, median of {results['repeats']}",
        "",
        "| shape | dtype | compiled | scheme | mode | ms | / RoPE | / copy | min MB moved | floor ms "
        "| % of bandwidth |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['shape']} | {row['dtype']} | {'yes' if row['compiled'] else 'no'} | {row['scheme']} | "
            f"{row['mode']} | "
            f"{row['median_ms']:.1f} | {row['ratio_to_rope']:.2f} | {row['ratio_to_copy']:.2f} | "
            f"{row['min_bytes'] / 2**20:.0f} | "
            f"{row['floor_ms']:.1f} | {100 * row['fraction_of_bandwidth']:.0f}% |"
        )
    return "\n".join(lines)
