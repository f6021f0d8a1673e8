"""What a report accepts from a results file, checked when the file is read: every field it uses is present, of its
type and in its range (accuracies from 0 to 1, losses >= 0, perplexities >= 1, lengths and counts ints). A file that
fails is a ``ReportError`` naming the file, the field and the value, so that an impossible number (an accuracy of 7.5,
a loss of -5) never reaches a table or a verdict, and a missing field or a number written as a string is one line,
not a traceback. Loss, perplexity and bits per byte may be NaN or +inf: a diverged run, which the report shows as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fope.errors import FopeError

__all__ = ["ReportError", "check_evaluation", "check_recipe_record", "check_run_record", "check_run_results"]


class ReportError(FopeError):
    """A report that cannot be written as asked (no runs, a path that is not a run, an output path that is a file, a
    results file that is not what an evaluator writes)."""


class _Invalid(Exception):
    """A field that fails its check: where it is, what it must be (None: it is missing), what it holds."""

    def __init__(self, path: str, requirement: str | None, value: Any = None) -> None:
        super().__init__(path)
        self.path, self.requirement, self.value = path, requirement, value


#: Checks ``value`` found at ``path`` (``results[0].loss``), raising ``_Invalid``.
Check = Callable[[Any, str], None]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int = 0) -> Check:
    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(path, f"an int >= {minimum}", value)

    return check


def number(minimum: float, maximum: float | None = None, *, diverged: bool = False) -> Check:
    """A finite number from ``minimum`` to ``maximum``; with ``diverged``, NaN and +inf too (a diverged run)."""
    span = f">= {minimum:g}" if maximum is None else f"from {minimum:g} to {maximum:g}"
    requirement = f"a number {span}" + (" (or NaN / +inf: a diverged run)" if diverged else "")

    def check(value: Any, path: str) -> None:
        if not _is_number(value):
            raise _Invalid(path, requirement, value)
        if diverged and (math.isnan(value) or value == math.inf):
            return
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            raise _Invalid(path, requirement, value)

    return check


def text(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _Invalid(path, "a string", value)


def boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _Invalid(path, "true or false", value)


def a_mapping(value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise _Invalid(path, "a mapping", value)


def optional(check: Check) -> Check:
    """``check``, or null."""

    def checked(value: Any, path: str) -> None:
        if value is not None:
            check(value, path)

    return checked


def listing(item: Check, *, minimum: int = 0, size: int | None = None) -> Check:
    """A list of at least ``minimum`` (or exactly ``size``) items, each passing ``item``."""
    requirement = f"a list of {size} items" if size is not None else f"a list of at least {minimum} item(s)"

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list) or len(value) < minimum or (size is not None and len(value) != size):
            raise _Invalid(path, requirement, value)
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return check


def mapping(required: Mapping[str, Check], optional_fields: Mapping[str, Check] | None = None) -> Check:
    """A mapping holding every key of ``required``, each value passing its check (``optional_fields`` where present);
    other keys are left alone."""

    def check(value: Any, path: str) -> None:
        a_mapping(value, path)
        for key, field_check in {**required, **(optional_fields or {})}.items():
            where = f"{path}.{key}" if path else key
            if key in value:
                field_check(value[key], where)
            elif key in required:
                raise _Invalid(where, None)

    return check


def _checked(value: Any, check: Check, file: str | Path, path: str = "") -> None:
    """``check(value)``, its failure as a ``ReportError`` naming ``file``, the field and the value."""
    try:
        check(value, path)
    except _Invalid as bad:
        field = bad.path or "the file"
        if bad.requirement is None:
            raise ReportError(f"{file}: {field} is missing") from None
        kind = "" if bad.value is None or _is_number(bad.value) else f" ({type(bad.value).__name__})"
        raise ReportError(f"{file}: {field} must be {bad.requirement}; got {bad.value!r}{kind}") from None


COUNT = integer(0)
LENGTH = integer(1)
LOSS = number(0, diverged=True)
ACCURACY = number(0, 1)

PERPLEXITY = mapping(
    {
        "train_length": LENGTH,
        "lengths": listing(LENGTH, minimum=1),
        "results": listing(
            mapping(
                {
                    "length": LENGTH,
                    "loss": LOSS,
                    "perplexity": number(1, diverged=True),
                    "bits_per_byte": optional(LOSS),
                    "position_buckets": listing(
                        mapping({"start": COUNT, "end": LENGTH, "loss": LOSS}, {"tokens": COUNT})
                    ),
                },
                {"tokens": COUNT, "windows": COUNT, "bytes": COUNT},
            ),
            minimum=1,
        ),
        "spans": mapping(
            {
                "max_spans": LENGTH,
                "span_tokens": LENGTH,
                "seed": COUNT,
                "cross_document": boolean,
                "note": optional(text),
            },
            {"count": COUNT, "documents": COUNT, "eligible_documents": COUNT, "documents_used": COUNT},
        ),
    },
    {"data": optional(text), "bucket_tokens": LENGTH},
)

#: Passkey and the other retrieval tasks.
RETRIEVAL = mapping(
    {
        "train_length": LENGTH,
        "lengths": listing(LENGTH, minimum=1),
        "trials_per_length": COUNT,
        "seed": COUNT,
        "max_new_tokens": COUNT,
        "by_length": listing(
            mapping({"length": LENGTH, "accuracy": ACCURACY}, {"trials": COUNT, "mean_tokens": number(0)}), minimum=1
        ),
        "depth_bins": listing(listing(number(0, 1), size=2), minimum=1),
        "grid_lengths": listing(LENGTH),
        "grid_accuracy": listing(listing(optional(ACCURACY))),
    },
    {"grid_trials": listing(listing(COUNT)), "batch_size": optional(LENGTH), "min_prompt_tokens": COUNT},
)

#: What a run folder's result says about its run (``fope.evaluate.results.run_summary``).
RUN = mapping({"label": text, "step": COUNT}, {"seed": optional(COUNT), "path": text, "train_length": LENGTH})

#: A stored run's summary: the run summary without its machine path.
SUMMARY = mapping(
    {}, {"label": text, "seed": optional(COUNT), "step": COUNT, "max_steps": LENGTH, "train_length": LENGTH}
)

ENTRY = mapping(
    {"result": a_mapping},
    {
        "checkpoint": optional(mapping({}, {"sha256": text, "step": COUNT})),
        "settings": a_mapping,
        "evaluated": optional(text),
        "git_dirty": optional(boolean),
        "git_commit": optional(text),
        "fope_version": optional(text),
    },
)

RUN_RECORD = mapping(
    {
        "run": text,
        "label": text,
        "config_sha256": text,
        "config": a_mapping,
        "summary": SUMMARY,
        "evaluations": a_mapping,
    }
)

RECIPE_RECORD = mapping(
    {
        "experiment": text,
        "reports": listing(
            mapping(
                {"folder": text, "title": text, "runs": listing(text)},
                {"contrasts": listing(listing(text, size=3)), "evaluation": text, "data": optional(text)},
            )
        ),
    }
)


def _result_check(name: str) -> Check | None:
    """The check of a result named ``name`` (``perplexity``, ``perplexity-<text>``, ``passkey``, ``retrieval-<task>``);
    None for a kind a report does not read."""
    if name == "perplexity" or name.startswith("perplexity-"):
        return PERPLEXITY
    if name == "passkey" or name.startswith("retrieval-"):
        return RETRIEVAL
    return None


def _grid(result: Mapping[str, Any], file: str | Path, path: str) -> None:
    """The depth x length grid has a row per depth bin and a column per grid length."""
    rows, columns = len(result["depth_bins"]), len(result["grid_lengths"])
    grid = result["grid_accuracy"]
    if len(grid) != rows or any(len(row) != columns for row in grid):
        shape = f"{len(grid)} x {[len(row) for row in grid]}"
        prefix = f"{path}." if path else ""
        raise ReportError(
            f"{file}: {prefix}grid_accuracy must have a row per depth bin and a column per grid length "
            f"({rows} x {columns}); got {shape}"
        )


def check_evaluation(result: Any, name: str, file: str | Path, path: str = "") -> None:
    """A result named ``name`` as the report reads it (``path``: where it sits in ``file``)."""
    check = _result_check(name)
    if check is not None:
        _checked(result, check, file, path)
        if check is RETRIEVAL:
            _grid(result, file, path)


def check_run_results(result: Any, name: str, file: str | Path) -> None:
    """A run folder's ``eval/<name>.json``: the result, and its ``run`` summary."""
    _checked(result, mapping({"run": RUN}), file)
    check_evaluation(result, name, file)


def check_run_record(record: Any, file: str | Path) -> None:
    """A stored run file (``fope.report.store``): its fields and every evaluation it stores."""
    _checked(record, RUN_RECORD, file)
    for name, entry in record["evaluations"].items():
        _checked(entry, ENTRY, file, f"evaluations.{name}")
        check_evaluation(entry["result"], name, file, f"evaluations.{name}.result")


def check_recipe_record(record: Any, file: str | Path) -> None:
    """A stored recipe file: its reports, each with a folder, a title, its runs and its contrasts."""
    _checked(record, RECIPE_RECORD, file)
