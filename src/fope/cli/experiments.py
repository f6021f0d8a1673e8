"""``fope demo`` and ``fope experiment NAME``: campaigns of runs, trained by parallel workers, evaluated, reported.

Their flags are made from the recipes' dataclasses: ``fope.experiments.common.Settings`` (what every recipe shares)
and each recipe module's ``Options``; the demo takes a few of the settings (its ``SETTINGS``)."""

from __future__ import annotations

import argparse
import inspect

from fope.cli.args import add_dataclass_arguments, dataclass_values, path
from fope.executor import EXECUTORS


def _add_recipe(parser: argparse.ArgumentParser, name: str) -> None:
    """The flags of recipe ``name`` (``--out`` and ``--dry-run`` too) and its handler."""
    from fope.experiments import recipe, setting_names
    from fope.experiments.common import Settings

    module = recipe(name)
    add_dataclass_arguments(parser, Settings, only=setting_names(module), help=getattr(module, "HELP", None))
    add_dataclass_arguments(parser, module.Options)
    asks = "--gpus-per-run GPUs and its" if "gpus_per_run" in setting_names(module) else "its"
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where runs train: local processes (default), or a Ray cluster (pip install 'fope[ray]'; each run asks "
        f"for {asks} train.threads CPUs)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --executor ray: the cluster, auto (the one this machine belongs to) or HOST:PORT (default: a Ray "
        "instance started on this machine for the campaign)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the runs, their status and commands; run nothing")
    parser.set_defaults(handler=_run_recipe, experiment=name)


def _run_recipe(args: argparse.Namespace) -> int:
    from fope.executor import make_executor
    from fope.experiments import format_experiment, plan_experiment, recipe, run_experiment, setting_names
    from fope.experiments.common import Settings

    module = recipe(args.experiment)
    given = dataclass_values(args, Settings, setting_names(module)) | dataclass_values(args, module.Options)
    plan = plan_experiment(args.experiment, args.out, **given)
    if args.dry_run:
        print(format_experiment(plan))
        return 0
    executor = make_executor(args.executor, args.address, plan.settings.jobs)
    try:
        run_experiment(plan, executor=executor)
    finally:
        executor.close()
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: train tiny RoPE/FoPE/ALiBi models (--encodings), evaluate past the training length, report",
        description="Prepare the default corpus, train tiny models that differ only in position encoding, evaluate "
        "perplexity at 1x..16x the training length and passkey retrieval, and write a report (OUT/report) and a "
        "summary (OUT/summary.md). Finished steps are reused when the command is run again with the same --out.",
    )
    parser.add_argument("--out", default="demo-output", type=path, help="output folder (default demo-output)")
    _add_recipe(parser, "demo")


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    from fope.experiments import EXPERIMENTS, recipe

    parser = subparsers.add_parser(
        "experiment",
        help="the paper's experiments as one-command recipes "
        "(ablation, sweep, extension, cross-domain, baselines, retrieval)",
        description="Train the runs of one experiment (reusing runs already trained with the same settings in "
        "OUT/runs), evaluate them, write reports to OUT/<experiment>/ and print a summary with the spread over seeds.",
    )
    recipes = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name in EXPERIMENTS:
        module = recipe(name)
        sub = recipes.add_parser(
            name,
            help=_summary(module.__doc__).replace("%", "%%"),  # help strings are %-formatted, descriptions are not
            description=inspect.cleandoc(module.build.__doc__ or ""),
        )
        sub.add_argument(
            "--out", default="experiments", type=path, help="output folder, shared by the recipes (default experiments)"
        )
        _add_recipe(sub, name)


def _summary(module_doc: str | None) -> str:
    """A recipe module's first sentence, after its ````fope experiment NAME``:``."""
    text = " ".join((module_doc or "").split())
    text = text.split(": ", 1)[-1]
    return text.split(". ", 1)[0].rstrip(".")


def add(subparsers: argparse._SubParsersAction) -> None:
    _add_demo(subparsers)
    _add_experiment(subparsers)
