"""``fope eval``, ``fope passkey``, ``fope retrieval``, ``fope compare`` and ``fope analyze``: what a trained run does
past its length."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fope.cli.args import add_run_options, command, ints, multiples, path, positive_int, run_keywords
from fope.evaluate.chunks import LENGTH_MULTIPLES


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "eval",
        help="perplexity against length (1x..16x the training length) of a trained run",
        description="Loss, perplexity and bits per byte at each length on the same held-out spans; results go to "
        "RUN_DIR/eval/perplexity.json (perplexity-<data name>.json with --data), merged by length with what it holds "
        "for the same checkpoint and span settings: other lengths are kept.",
        handler=_run_eval,
        user_errors=(ValueError,),
        interrupted=_nothing_written,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument("--data", default=None, help="evaluate on this text: a folder of .txt, a .txt or a .jsonl file")
    parser.add_argument("--text-field", default="text", help="text field of --data JSONL lines (default text)")
    parser.add_argument(
        "--lengths", type=ints, default=None, help="comma-separated, e.g. 128,256 (default: 1,2,4,8,16 x training)"
    )
    parser.add_argument("--max-spans", type=int, default=None, help="spans of max(lengths)+1 tokens (default 32)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="tokens per forward batch (default 16384)")
    add_run_options(parser, "the span draw", "per-length records")


def _run_eval(args: argparse.Namespace) -> int:
    _check_eval_folder(args)
    import json

    from fope.evaluate.perplexity import evaluate_run_perplexity, format_perplexity, records
    from fope.evaluate.results import PERPLEXITY, results_name

    given = {"max_spans": args.max_spans, "batch_tokens": args.batch_tokens}
    results = evaluate_run_perplexity(
        args.run_dir,
        data=args.data,
        text_field=args.text_field,
        **run_keywords(args),
        **{key: value for key, value in given.items() if value is not None},
        write=False,
    )
    print(json.dumps(records(results)) if args.json else format_perplexity(results))
    return _save_and_say(args, results_name(PERPLEXITY, args.data), results)


def _save_and_say(args: argparse.Namespace, name: str, results: dict) -> int:
    """Save the results printed above and say where (without --json): exit code 0, or 2 when they cannot be saved."""
    saved = _save(args, name, results)
    if saved is None:
        return 2
    if not args.json:
        print(_saved(args.run_dir, name, results, saved))
    return 0


def _saved(run_dir: str, name: str, results: dict, saved: Path) -> str:
    """``saved PATH``, and the lengths the file kept from earlier evaluations (``fope.evaluate.results`` merges)."""
    from fope.evaluate.results import read_results

    stored = read_results(run_dir, name) or {}
    kept = sorted(set(stored.get("lengths", [])) - set(results["lengths"]))
    return f"saved {saved}" + (f" (kept lengths {kept} evaluated before)" if kept else "")


def _check_eval_folder(args: argparse.Namespace) -> None:
    """RUN_DIR/eval must be a folder (or makeable): said before the evaluation, not after it."""
    from fope.evaluate.results import check_eval_folder

    check_eval_folder(args.run_dir)


def _save(args: argparse.Namespace, name: str, results: dict) -> Path | None:
    """Write the results printed above to ``RUN_DIR/eval/<name>.json``; None, said on stderr, when the folder cannot
    be written (read-only, full, a name too long, a folder in place of the file): the results are then only on
    stdout."""
    from fope.errors import describe_os_error, is_environment_error
    from fope.evaluate.results import write_results

    try:
        return write_results(args.run_dir, name, results)
    except OSError as error:
        if not is_environment_error(error):
            raise
        message = f"{describe_os_error(error)}; the results printed above were not saved"
        print(f"fope {args.command}: error: {message}", file=sys.stderr)
        return None


def _nothing_written(args: argparse.Namespace) -> str:
    return "nothing written"


def _add_passkey(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "passkey",
        help="passkey retrieval accuracy against prompt length of a trained run",
        description="Greedy passkey retrieval at each length (seeded keys and depths); results go to "
        "RUN_DIR/eval/passkey.json, merged by length with what it holds for the same checkpoint, trials and seed: "
        "other lengths are kept.",
        handler=_run_passkey,
        user_errors=(ValueError,),
        interrupted=_nothing_written,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    _add_trial_options(parser)
    add_run_options(parser, "keys and depths", "per-length accuracies")


def _add_trial_options(parser: argparse.ArgumentParser) -> None:
    """--lengths, --trials and --batch-size of ``fope passkey`` and ``fope retrieval``."""
    parser.add_argument(
        "--lengths",
        type=ints,
        default=None,
        help="comma-separated prompt lengths (default: 1x, 2x, 4x, 8x, 16x the training length)",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials per length (default 100)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="trials of one prompt length decoded together (default: as many as hold 16384 tokens); results do "
        "not depend on it",
    )


def _trial_keywords(args: argparse.Namespace) -> dict:
    given = {"trials": args.trials, "batch_size": args.batch_size}
    return run_keywords(args) | {key: value for key, value in given.items() if value is not None}


def _print_retrieval(args: argparse.Namespace, results: dict, name: str) -> int:
    """Print the results (a table, or a JSON list with ``--json``), then save them (exit code 2 when that fails)."""
    import json

    from fope.evaluate.retrieval import format_retrieval

    if args.json:
        print(json.dumps([{key: row[key] for key in ("length", "trials", "accuracy")} for row in results["by_length"]]))
    else:
        print(format_retrieval(results))
    return _save_and_say(args, name, results)


def _run_passkey(args: argparse.Namespace) -> int:
    _check_eval_folder(args)
    from fope.evaluate.passkey import evaluate_run_passkey
    from fope.evaluate.results import PASSKEY

    return _print_retrieval(args, evaluate_run_passkey(args.run_dir, **_trial_keywords(args), write=False), PASSKEY)


def _add_retrieval(subparsers: argparse._SubParsersAction) -> None:
    from fope.data.retrieval import TASK_NAMES

    parser = command(
        subparsers,
        "retrieval",
        help="accuracy of a retrieval task (multi-key, multi-value, variable-tracking, passkey) against prompt length",
        description="Greedy retrieval at each length (seeded prompts, accuracy by length and needle depth); results "
        "go to RUN_DIR/eval/retrieval-<task>.json, merged by length with what it holds for the same checkpoint, "
        "trials and seed. The tasks and their prompts are described in docs/evaluation.md.",
        handler=_run_retrieval,
        user_errors=(ValueError,),
        interrupted=_nothing_written,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument("--task", required=True, metavar="TASK", help=f"one of {', '.join(TASK_NAMES)}")
    _add_trial_options(parser)
    add_run_options(parser, "the prompts", "per-length accuracies")


def _run_retrieval(args: argparse.Namespace) -> int:
    _check_eval_folder(args)
    from fope.evaluate.results import retrieval_name
    from fope.evaluate.retrieval import evaluate_run_retrieval

    results = evaluate_run_retrieval(args.run_dir, args.task, **_trial_keywords(args), write=False)
    return _print_retrieval(args, results, retrieval_name(args.task))


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "compare",
        help="report comparing runs: tables, plots, Markdown (seeds of one config aggregate)",
        description="Run the evaluations a run still lacks (missing, or computed on an older checkpoint) with "
        "default settings, then read each run's eval results, group runs by config name (seeds aggregate) and write "
        "report.md, results.json and PNG plots to --out. A run given twice counts once; two folders holding the same "
        "run (a copy: same seed and checkpoint) are an error. A report.md in --out that fope compare did not write "
        "(or that was edited since) is not replaced without --force, nor is anything in an --out that holds files "
        "but no report.md.",
        handler=_run_compare,
        user_errors=(ValueError,),
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--out", required=True, type=path, help="report folder")
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into --out even if its report.md (or its other files) are not fope compare's",
    )


def _run_compare(args: argparse.Namespace) -> int:
    from fope.device import resolve_device
    from fope.report import check_distinct_runs, check_out_dir, check_run_dir, compare_runs, unique_run_dirs

    check_out_dir(args.out, args.force)  # before any evaluation
    resolve_device(args.device)  # a bad --device is an error even when --no-evaluate leaves it unused
    run_dirs, repeats = unique_run_dirs(args.run_dirs)
    for run_dir in run_dirs:
        check_run_dir(run_dir)
    check_distinct_runs(run_dirs)
    for note in repeats:
        print(f"note: {note}")
    if not args.no_evaluate:
        _evaluate_pending(run_dirs, args.data, args.device, not args.no_progress)
    sections = []
    if args.attention:
        from fope.analysis.report_section import attention_section

        sections.append(attention_section)
    results = compare_runs(
        run_dirs, args.out, title=args.title, data=args.data, extra_sections=sections, force=args.force
    )
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


def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "analyze",
        help="spectrum diagnostics of a trained run (JSON summary and PNG plots)",
        description="Frequency map, spectrum damage and attention behaviour (entropy, mass beyond the training "
        "length) of a trained run at several multiples of its training length; writes analysis.json and PNG plots.",
        handler=_run_analyze,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", default=None, type=path, help="output folder (default: RUN_DIR/analysis)")
    default = ",".join(map(str, LENGTH_MULTIPLES))
    parser.add_argument(
        "--multiples",
        default=default,
        help=f"contexts as multiples of the training length: numbers > 0 like 1,2,4 or 0.5,1.5 (default {default})",
    )
    parser.add_argument("--sequences", type=int, default=2, help="validation windows to read (default 2)")
    parser.add_argument("--train-length", type=int, default=None, help="override the model's train_length")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--no-plots", action="store_true", help="write analysis.json only")


def _run_analyze(args: argparse.Namespace) -> int:
    from fope.analysis import analyze
    from fope.checks import check_folder
    from fope.errors import FopeError
    from fope.runs import load_run

    contexts = multiples(args.multiples)
    # checked before the model loads; analyze() checks them too, in its own argument names
    if args.train_length is not None and args.train_length < 2:
        raise FopeError(f"--train-length must be an int >= 2 (the model's training length); got {args.train_length}")
    if args.sequences < 1:
        raise FopeError(f"--sequences must be an int >= 1 (validation windows to read); got {args.sequences}")
    out_dir = check_folder("--out", Path(args.out) if args.out else Path(args.run_dir) / "analysis")
    run = load_run(args.run_dir, step=args.step, device=args.device)
    train_length = run.model.config.train_length if args.train_length is None else args.train_length
    result = analyze(
        run.model,
        run.val_store(),
        train_length=train_length,
        out_dir=out_dir,
        context_multiples=contexts,
        num_sequences=args.sequences,
        plots=not args.no_plots,
    )
    print(f"analysis of {run.path} (step {run.step}, train_length {train_length}) written to {out_dir}")
    means = result["summary"]["context"]
    for multiple, entropy, mass in zip(contexts, means["entropy"], means["mass_beyond_train_length"], strict=True):
        print(f"{multiple:>5g}x: mean attention entropy {entropy:.3f} nats, attention mass beyond L {mass:.3f}")
    return 0


def add(subparsers: argparse._SubParsersAction) -> None:
    for add_command in (_add_eval, _add_passkey, _add_retrieval, _add_compare, _add_analyze):
        add_command(subparsers)
