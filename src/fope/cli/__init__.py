"""fope: Fourier Position Embedding (FoPE) and its baselines in a small-LM lab.

Prepare a corpus, train tiny or paper-scale models that differ only in position encoding, evaluate perplexity and
passkey retrieval past the training length, and compare runs in reports whose numbers carry their spread over seeds.
Run ``fope COMMAND --help`` for a command's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from fope.cli import evaluation, experiments, models, report, training
from fope.provenance import fope_version

#: Errors that are the user's mistake in every command (a missing or existing path); ``fope.errors.FopeError`` too.
USER_ERRORS: tuple[type[BaseException], ...] = (FileExistsError, FileNotFoundError, NotADirectoryError)
#: The exit code of a command stopped with Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130
#: The command groups, one module each, in the order ``fope --help`` lists their commands.
GROUPS = (training, evaluation, experiments, report, models)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line, as every other user error (``fope COMMAND: error: ...``, exit 2), naming
    the help to read instead of printing the usage; subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fope", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {fope_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user's mistake is one line on stderr, ``fope COMMAND: error: MESSAGE``, and exit code 2.

    User mistakes are every ``fope.errors.FopeError`` (ConfigError, CheckpointError, CampaignError, TokenStoreError,
    ReportError, ...), a missing or existing path (``USER_ERRORS``), and what a command declares for its lower half
    (``user_errors``: e.g. the ``ValueError`` of a bad option value). Environment faults (``OSError`` of a full disk,
    a read-only folder, a name too long: ``fope.errors.ENVIRONMENT_ERRNOS``) are one line too. Ctrl-C is one line,
    ``fope COMMAND: interrupted; ...`` (what the command says about it: ``interrupted``), and exit code 130.
    Anything else is a bug and stays a traceback.
    """
    args = build_parser().parse_args(argv)
    from fope.errors import FopeError, describe_os_error, is_environment_error

    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        note = getattr(args, "interrupted", None)
        print(f"fope {args.command}: interrupted" + (f"; {note(args)}" if note else ""), file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        if is_environment_error(error):
            message = describe_os_error(error)
        elif isinstance(error, (FopeError, *USER_ERRORS, *getattr(args, "user_errors", ()))):
            message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the library's message
        else:
            raise
        print(f"fope {args.command}: error: {message}", file=sys.stderr)
        return 2
