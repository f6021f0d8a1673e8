"""Argument types shared by the commands, options every run command takes, and ``--flags`` made from the fields of
an options dataclass (its types, defaults and help), so that a recipe's options are declared once."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any

from fope.checks import MAX_SEED
from fope.errors import FopeError


def command(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    description: str,
    **defaults: Any,
) -> argparse.ArgumentParser:
    """A subcommand with its one-line help, its description, and its defaults (``handler``, ``user_errors``, ...)."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(**defaults)
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1; got {text!r}")
    return value


def path(text: str) -> str:
    """A path option: any text but the empty one (``--out ''`` would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path; got an empty one")
    return text


def seed_int(text: str) -> int:
    """A ``--seed``: an int from 0 to 2**64 - 1 (what torch and numpy take), named in the error instead of failing later
    inside the evaluation."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an int from 0 to 2**64 - 1; got {text!r}")
    return value


def names(text: str) -> list[str]:
    """``--encodings rope,fope`` as a list of names."""
    return [part.strip() for part in text.split(",") if part.strip()]


def ints(text: str) -> list[int]:
    """``--lengths 128,256,512`` as a list of ints."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated ints, e.g. 128,256,512; got {text!r}") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None


#: A multiple as ``--multiples`` documents it: digits, with a decimal point or not (no sign, exponent, inf or nan).
_MULTIPLE = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def multiples(text: str) -> list[int | float]:
    """``--multiples 1,2,4`` or ``0.5,1.5``: numbers > 0 written as digits with an optional decimal point (ints where
    written without one); ``1e1``, ``inf`` or ``+2`` are refused rather than read some other way."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(_MULTIPLE.fullmatch(part) for part in parts):
        raise FopeError(
            "--multiples must be comma-separated numbers > 0 written with digits and an optional decimal point, e.g. "
            f"1,2,4 or 0.5,1.5 (no exponent, sign, inf or nan); got {text!r}"
        )
    from fope.evaluate.chunks import LENGTH_MULTIPLES, MAX_LENGTH_RATIO

    too_large = [part for part in parts if float(part) > MAX_LENGTH_RATIO]  # float: no digit limit, no overflow
    if too_large:  # as eval refuses such lengths: hours of work or out of memory
        shown = too_large[0] if len(too_large[0]) <= 24 else f"{too_large[0][:20]}... ({len(too_large[0])} digits)"
        raise FopeError(
            f"--multiples {shown} is more than {MAX_LENGTH_RATIO}: contexts are multiples of the training length, at "
            f"most {MAX_LENGTH_RATIO} x it (the default goes to {max(LENGTH_MULTIPLES)} x)"
        )
    values = [float(part) if "." in part else int(part) for part in parts]
    if any(value <= 0 for value in values):
        raise FopeError(f"--multiples must be numbers > 0; got {text!r}")
    return values


def add_run_options(parser: argparse.ArgumentParser, seed: str, what: str) -> None:
    """Options of a command that evaluates a run's checkpoint: ``seed`` names what it seeds, ``what`` its JSON."""
    parser.add_argument("--seed", type=seed_int, default=0, help=f"seed of {seed} (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--json", action="store_true", help=f"print only a JSON list of {what}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``add_run_options`` (and ``--lengths``) for ``evaluate_run_perplexity`` / ``_passkey``."""
    keys = ("lengths", "seed", "device", "step")
    return {key: getattr(args, key) for key in keys} | {"progress": not args.no_progress}


# ------------------------------------------------------------------ flags from dataclass fields

#: Element types of tuple fields -> the argparse type that reads a comma-separated list of them.
_LISTS = {str: names, int: ints}
_SCALARS = {str: str, int: int, float: number}


def _kind(annotation: Any) -> Any:
    """The field's type without ``| None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        return kinds[0]
    return annotation


def flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, only: list[str] | None = None, help: dict[str, str] | None = None
) -> None:
    """A ``--flag`` per field of dataclass ``cls`` (those in ``only``): bool fields are switches, tuple fields
    comma-separated lists (a ``--set``-like field with a ``metavar`` is repeatable), the help from the field's
    metadata (or ``help``); the default stays the field's, None meaning the recipe's own default."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if only is not None and field.name not in only:
            continue
        kind, text = _kind(hints[field.name]), (help or {}).get(field.name, field.metadata.get("help"))
        keywords: dict[str, Any] = {"dest": field.name, "help": text}
        if kind is bool:
            keywords |= {"action": "store_true"}
        elif typing.get_origin(kind) is tuple and "metavar" in field.metadata:
            keywords |= {"action": "append", "default": [], "metavar": field.metadata["metavar"]}
        elif typing.get_origin(kind) is tuple:
            keywords |= {"type": _LISTS[typing.get_args(kind)[0]], "default": None}
        else:
            keywords |= {"type": _SCALARS[kind], "default": field.default, "choices": field.metadata.get("choices")}
            keywords |= {"metavar": field.metadata.get("metavar")}
        parser.add_argument(flag(field), **keywords)


def dataclass_values(args: argparse.Namespace, cls: type, only: list[str] | None = None) -> dict[str, Any]:
    """The values of ``cls``'s fields (those in ``only``) that ``add_dataclass_arguments`` read into ``args``."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(cls)
        if (only is None or field.name in only) and hasattr(args, field.name)
    }
