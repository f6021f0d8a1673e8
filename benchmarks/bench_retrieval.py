"""Retrieval evaluation throughput (trials per second) per task and length, one trial at a time against batched.

    .venv/bin/python benchmarks/bench_retrieval.py                       # every task at 128 and 1024, 1 thread
    .venv/bin/python benchmarks/bench_retrieval.py --tasks passkey --lengths 128,1024,2048 --threads 2

The model is the tiny preset's (``tiny/rope``: d_model 128, 4 layers, 4 heads of 32, vocabulary 1024, train_length
128), randomly initialised: the work per trial (prompt building, one prefill, greedy steps with the KV cache) does not
depend on the weights, except that a trained model could stop early at the end-of-document token, which a random one
does not, so every trial here decodes its task's full ``max_new_tokens``. The tokenizer is the preset's (the default
corpus at vocabulary 1024, ``prepare_data``; cached after the first call).

Each cell is ``evaluate_retrieval(model, tokenizer, task, lengths=[L], trials=N, batch_size=B)``: wall time of the
whole call, prompts included. ``batch_size=1`` is the old loop (one ``generate`` per trial); ``auto`` is the default
(prompts of one token count together, as many rows as hold 16384 tokens). Modes alternate repeat by repeat and the
cell is the median; the batched trials are checked equal to the one-at-a-time trials.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from fope.build import prepare_run_data
from fope.data.retrieval import TASK_NAMES, retrieval_task
from fope.evaluate.retrieval import batch_rows, build_prompts, evaluate_retrieval, same_length_batches
from fope.model import TransformerLM
from fope.presets import load_preset


def batch_size_value(text: str) -> int | None:
    return None if text == "auto" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny/rope", help="a shipped preset (fope.presets)")
    parser.add_argument("--tasks", default=",".join(TASK_NAMES), help="comma-separated task names")
    parser.add_argument("--lengths", default="128,1024", help="comma-separated prompt lengths")
    parser.add_argument("--batch-sizes", default="1,auto", help="comma-separated: ints or auto (the default)")
    parser.add_argument("--trials", type=int, default=64, help="trials per cell")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell (the median is reported)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_preset(args.preset)
    tokenizer = prepare_run_data(config).tokenizer
    torch.manual_seed(0)
    model = TransformerLM(config.model_config(tokenizer.vocab_size)).eval()
    modes = [batch_size_value(text) for text in args.batch_sizes.split(",")]
    lengths = [int(text) for text in args.lengths.split(",")]
    evaluate_retrieval(model, tokenizer, "passkey", lengths=[lengths[0]], trials=4, progress=False)  # warm-up
    rows = []
    for task in args.tasks.split(","):
        for length in lengths:
            seconds: dict[int | None, list[float]] = {mode: [] for mode in modes}
            trials: dict[int | None, list] = {}
            for _ in range(args.repeats):
                for mode in modes:
                    start = time.perf_counter()
                    results = evaluate_retrieval(
                        model, tokenizer, task, lengths=[length], trials=args.trials, batch_size=mode, progress=False
                    )
                    seconds[mode].append(time.perf_counter() - start)
                    trials[mode] = results["trials"]
            if any(trials[mode] != trials[modes[0]] for mode in modes):
                raise SystemExit(f"{task} at {length}: batched trials differ from one-at-a-time trials")
            row: dict = {
                "task": task,
                "length": length,
                "tokens": results["by_length"][0]["mean_tokens"],
                "new": results["max_new_tokens"],
            }
            prompts = build_prompts(retrieval_task(task), tokenizer.encode, length, args.trials, seed=0)
            for mode in modes:
                row[mode] = args.trials / statistics.median(seconds[mode])
                row["rows", mode] = args.trials / len(
                    same_length_batches(prompts, batch_rows(mode, length, args.trials))
                )
            rows.append(row)
            print({key: value for key, value in row.items() if not isinstance(key, tuple)}, flush=True)
    print()
    print(
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"{args.preset} model ({model.num_parameters():,} parameters, random init), {args.trials} trials per cell, "
        f"median of {args.repeats}"
    )
    print()
    names = ["auto" if mode is None else str(mode) for mode in modes]
    header = ["task", "length", "mean prompt tokens", "new tokens"]
    header += [f"rows per call, batch {name}" for name in names[1:]]
    header += [f"trials/s, batch {name}" for name in names]
    header += [f"batch {name} / batch {names[0]}" for name in names[1:]]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|" + "---:|" * (3 * len(modes) - 2))
    for row in rows:
        rates = [row[mode] for mode in modes]
        cells = [row["task"], str(row["length"]), f"{row['tokens']:.0f}", str(row["new"])]
        cells += [f"{row['rows', mode]:.1f}" for mode in modes[1:]]
        cells += [f"{rate:.1f}" for rate in rates] + [f"{rate / rates[0]:.2f}" for rate in rates[1:]]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
