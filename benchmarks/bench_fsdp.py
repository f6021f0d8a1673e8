"""Training throughput and memory per rank, ``train.parallel`` ddp against fsdp; see docs/benchmarks.md.

Each (preset, parallel) pair is one ``torchrun --nproc_per_node 2`` launch of this file (gloo on the CPU, NCCL on a
GPU) that trains the preset's model on random tokens the way ``fope.train`` does (DDP wrapper, or ``shard_model`` with
its mixed-precision policy; AdamW, gradient clipping). Every rank reports its median step time, peak resident memory
(``ru_maxrss``; on a GPU, ``torch.cuda.max_memory_allocated``) and the bytes of training state it holds: its
parameters, gradients and AdamW moments (shards under fsdp, whole tensors under ddp).

    python benchmarks/bench_fsdp.py [--presets tiny/fope paper/60m] [--batch-size 4] [--steps 5]
    python benchmarks/bench_fsdp.py --device cuda --nproc 1 --presets paper/60m --batch-size 32   # one GPU

``--batch-size`` and ``--seq-len`` replace the preset's (the paper's 1024 x 512 does not fit a CPU step).
``--device`` (auto: CUDA when available) is every rank's; ``cuda`` without CUDA is a one-line exit (code 2).
With ``--nproc 1`` ddp is the plain model (no wrapper: one process has no one to reduce with) and fsdp shards over a
world of one: the comparison is then of memory and of the sharded path's overhead, not of communication.
``--json PATH`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from fope.benchmark import check_json_path
from fope.files import write_atomic


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of parameters, gradients and optimizer state this rank holds (its shards of DTensors)."""

    def local(tensor: torch.Tensor) -> int:
        tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        return tensor.numel() * tensor.element_size()

    total = sum(local(p) + (local(p.grad) if p.grad is not None else 0) for p in model.parameters())
    for state in optimizer.state.values():
        total += sum(local(value) for value in state.values() if isinstance(value, torch.Tensor) and value.dim() > 0)
    return total


def rank_main(
    preset: str, parallel: str, overrides: list[str], steps: int, warmup: int, out: Path, device_name: str
) -> None:
    from fope.build import build_optimizer
    from fope.device import init_distributed, resolve_device
    from fope.fsdp import clip_gradients, shard_model
    from fope.model import TransformerLM
    from fope.presets import load_preset

    config = load_preset(preset, [*overrides, f"train.parallel={parallel}", "train.compile=false"])
    tcfg = config.train
    device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    group = init_distributed(device.type, sharded=parallel == "fsdp")
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())
    torch.manual_seed(0)
    vocab = config.model.vocab_size or config.data.vocab_size
    model = TransformerLM(config.model_config(vocab)).to(device)
    bf16 = device.type == "cuda"
    if parallel == "fsdp":
        shard_model(model, bf16=bf16)
        trained: nn.Module = model
    elif group.world_size == 1:
        trained = model
    else:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = build_optimizer(model, config)
    rows = tcfg.batch_size // group.world_size
    generator = torch.Generator().manual_seed(group.rank)
    times = []
    for step in range(warmup + steps):
        tokens = torch.randint(0, vocab, (rows, tcfg.seq_len + 1), generator=generator).to(device)
        start = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and parallel == "ddp")
        with autocast:
            loss = trained(tokens[:, :-1], targets=tokens[:, 1:]).loss
        loss.backward()
        if parallel == "fsdp":
            clip_gradients(model, 1.0)
        else:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        held = state_bytes(model, optimizer)  # before the gradients are dropped
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    record = {
        "rank": group.rank,
        "seconds": statistics.median(times),
        "tokens": tcfg.batch_size * tcfg.seq_len,
        "peak_bytes": peak,
        "state_bytes": held,
        "parameters": sum(p.numel() for p in TransformerLM(config.model_config(vocab)).parameters()),
        "batch": f"{tcfg.batch_size} x {tcfg.seq_len}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    (out / f"{preset.replace('/', '-')}-{parallel}-{group.rank}.json").write_text(json.dumps(record))
    if dist.is_initialized():
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny/fope", "paper/60m"])
    parser.add_argument("--batch-size", type=int, default=None, help="global sequences per step (default: preset's)")
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--steps", type=int, default=5, help="measured steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", dest="json_path", default=None, help="also write the rows here")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("--rank-of", nargs=3, metavar=("PRESET", "PARALLEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = [f"train.{key}={value}" for key in ("batch_size", "seq_len") if (value := getattr(args, key))]
    if args.rank_of:
        preset, parallel, out = args.rank_of
        return rank_main(preset, parallel, overrides, args.steps, args.warmup, Path(out), args.device)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_fsdp: --device cuda needs CUDA (torch.cuda.is_available() is False here)", file=sys.stderr)
        sys.exit(2)
    json_path = check_json_path(args.json_path, force=args.force) if args.json_path else None
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print("| preset | batch | parallel | tokens / s | s / step | peak memory per rank | training state per rank |")
    print("|---|---|---|---:|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for preset in args.presets:
            for parallel in ("ddp", "fsdp"):
                passed = [
                    f"--{key.replace('_', '-')}={value}"
                    for key in ("batch_size", "seq_len")
                    if (value := getattr(args, key))
                ]
                command = [*torchrun, __file__, "--rank-of", preset, parallel, out, "--steps", str(args.steps),
                           "--warmup", str(args.warmup), "--device", args.device, *passed]  # fmt: skip
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"bench_fsdp: {preset} {parallel} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
                ranks = [
                    json.loads(path.read_text())
                    for path in sorted(Path(out).glob(f"{preset.replace('/', '-')}-{parallel}-*.json"))
                ]
                seconds = max(rank["seconds"] for rank in ranks)
                peak = "/".join(f"{rank['peak_bytes'] / 2**20:.0f}" for rank in ranks)
                held = "/".join(f"{rank['state_bytes'] / 2**20:.1f}" for rank in ranks)
                rows.append({"preset": preset, "parallel": parallel, "tokens_per_s": ranks[0]["tokens"] / seconds,
                             "seconds_per_step": seconds, "ranks": ranks})  # fmt: skip
                print(
                    f"| {preset} ({ranks[0]['parameters'] / 1e6:.1f}M) | {ranks[0]['batch']} | {parallel} | "
                    f"{ranks[0]['tokens'] / seconds:,.0f} | {seconds:.3f} | {peak} MiB | {held} MiB |"
                )
    device = ranks[0]["device"]
    print(f"\n{args.nproc} ranks on {device}, torch {torch.__version__}, median of {args.steps} steps")
    if json_path is not None:
        record = {"device": device, "nproc": args.nproc, "torch": torch.__version__, "steps": args.steps, "rows": rows}
        write_atomic(json_path, json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
