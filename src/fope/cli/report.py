"""``fope report``: rebuild ``docs/results.md`` and its figures from the stored results JSON alone
(``fope.report.page``); no run folder, checkpoint or model is read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fope.cli.args import command, path


def _report(args: argparse.Namespace) -> int:
    from fope.experiments import EXPERIMENTS
    from fope.report.page import build_page, write_page

    recipes = ("demo", *EXPERIMENTS)
    if args.check:
        current = args.out.is_file() and args.out.read_text() == build_page(args.results, args.out, recipes).text
        if not current:
            print(f"{args.out} is not what fope report builds from {args.results}: run fope report", file=sys.stderr)
        return 0 if current else 1
    page = write_page(args.results, args.out, recipes, force=args.force)
    print(f"wrote {args.out} and {len(page.figures)} figures in {args.results / 'figures'}")
    return 0


def add(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "report",
        help="rebuild docs/results.md and its figures from the stored results JSON (docs/results)",
        description="Rebuild the results page from a results folder alone (campaigns write it with --results DIR): "
        "per recipe, perplexity and passkey accuracy against length with mean ± std over seeds, the recipe's "
        "contrasts as verdicts (paired by seed, with standard errors), figures in RESULTS/figures, hand-written text "
        "from RESULTS/notes.md and RESULTS/<recipe>.md, and what is not run yet. The same files give the same page. "
        "A page edited by hand is not replaced without --force.",
        handler=_report,
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("docs/results"),
        metavar="DIR",
        help="results folder (default docs/results)",
    )
    parser.add_argument(
        "--out",
        type=lambda text: Path(path(text)),
        default=Path("docs/results.md"),
        metavar="FILE",
        help="the page (default docs/results.md)",
    )
    parser.add_argument("--force", action="store_true", help="replace the page even when it was edited by hand")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the page is not what fope report would write"
    )
