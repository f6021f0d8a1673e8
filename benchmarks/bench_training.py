"""Training throughput (tokens/s) per position encoding on the tiny preset; see docs/benchmarks.md.

Every encoding trains the same model shape on the same batches. Steps are interleaved round-robin (one step of each
encoding in turn), so machine-load drift hits all encodings alike and the ratio to RoPE is measured in one run.

    python benchmarks/bench_training.py [--steps 40] [--threads 2] [--preset tiny/rope]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from fope.build import build_optimizer
from fope.config import load_config
from fope.model import TransformerLM
from fope.presets import load_preset

ENCODINGS = {
    "rope": {},
    "fope": {"sigma": 0.3},
    "fope-no-fs": {},
    "alibi": {},
    "nope": {},
    "yarn": {"factor": 4.0, "original_max_position": 128},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny/rope", help="a shipped preset (fope.presets)")
    parser.add_argument("--steps", type=int, default=40, help="measured steps per encoding")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--vocab-size", type=int, default=1024)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_preset(args.preset)
    seq_len, batch = config.train.seq_len, config.train.batch_size
    runs = {}
    for name, options in ENCODINGS.items():
        values = {**dataclasses.asdict(config.model), "position": name, "position_options": options}
        model_config = load_config(base={"model": values, "train": {"seq_len": seq_len}}).model_config(args.vocab_size)
        torch.manual_seed(0)
        model = TransformerLM(model_config)
        runs[name] = (model, build_optimizer(model, config), [])
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab_size, (batch, seq_len + 1), generator=generator) for _ in range(4)]
    for step in range(args.warmup + args.steps):
        tokens = batches[step % len(batches)]
        for model, optimizer, times in runs.values():
            start = time.perf_counter()
            loss = model(tokens[:, :-1], targets=tokens[:, 1:]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
    rope = statistics.median(runs["rope"][2])
    print(
        f"preset {args.preset}: batch {batch} x {seq_len} tokens, {torch.get_num_threads()} threads, "
        f"median of {args.steps} interleaved steps, torch {torch.__version__}\n"
    )
    print("| position | ms / step | tokens / s | / RoPE time |")
    print("|---|---:|---:|---:|")
    for name, (_, _, times) in runs.items():
        median = statistics.median(times)
        print(f"| {name} | {1e3 * median:.1f} | {batch * seq_len / median:,.0f} | {median / rope:.3f} |")


if __name__ == "__main__":
    main()
