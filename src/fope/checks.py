"""Scalar argument checks shared by every layer: errors name the argument, the value and what is accepted.

One home for the int / number / bool / choice checks that models, position encodings, samplers and evaluations used
to spell out each on their own. A wrong type raises ``ArgumentTypeError`` (both a ``TypeError`` and a ``FopeError``,
so callers that catch either keep working); a value out of range raises ``ArgumentError`` (a ``FopeError``).
Shape checks of tensors stay with the code that owns the shapes (``fope.positions._checks``). ``check_folder``: an
output folder that can be made (no file in its place or above it), checked before any work is done.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from fope.errors import FopeError

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "check_bool",
    "check_choice",
    "check_float",
    "check_folder",
    "check_int",
    "check_keywords",
    "check_seed",
]

#: The largest seed ``torch.manual_seed`` and ``torch.Generator.manual_seed`` take (an unsigned 64-bit int); numpy's
#: generators take any int >= 0.
MAX_SEED = 2**64 - 1


class ArgumentError(FopeError):
    """An argument whose value is not accepted."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type."""


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An integer (not a bool; numpy integers too) that is at least ``minimum``, as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ArgumentError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_seed(name: str, value: object, *, offset: int = 0, why: str = "") -> int:
    """A seed: an int >= 0 that torch takes even with ``offset`` added to it (layer ``i`` is seeded ``seed + i``)."""
    largest = MAX_SEED - offset
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int from 0 to {largest}; got {value!r} ({type(value).__name__})")
    if not 0 <= value <= largest:
        reason = "2**64 - 1, the largest seed torch takes" + (f", less {offset}: {why}" if offset else "")
        raise ArgumentError(f"{name} must be an int from 0 to {largest} ({reason}); got {value}")
    return int(value)


def check_float(name: str, value: object, *, minimum: float, strict: bool = False) -> float:
    """A finite real number at least (or, with ``strict``, above) ``minimum``, as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number; got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ArgumentError(f"{name} must be {'>' if strict else '>='} {minimum}; got {value}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False; got {value!r}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ArgumentError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value  # type: ignore[return-value]


def check_keywords(function: str, options: Mapping[str, object], accepted: type) -> None:
    """Python's own TypeError for a keyword that a ``**options: Unpack[accepted]`` signature does not take, raised
    before any work is done (otherwise it surfaces only where the options are finally used)."""
    known = accepted.__required_keys__ | accepted.__optional_keys__  # type: ignore[attr-defined]  # a TypedDict
    unknown = sorted(set(options) - known)
    if unknown:
        raise ArgumentTypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r} (it takes {', '.join(sorted(known))})"
        )


def check_folder(name: str, path: str | Path, hint: str = "") -> Path:
    """``path`` as a ``Path`` when it is a folder or can be made one: neither it nor a folder above it is a file."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "it is a file" if candidate == path else f"{candidate} above it is a file"
                raise ArgumentError(f"{name} must be a folder (existing or new); got {str(path)!r}: {where}{hint}")
            break
    return path
