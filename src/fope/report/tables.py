"""One table renderer (Markdown or aligned text) and one formatter of a spread (``mean ± std``) for every report.

``render_table`` draws the Markdown tables of ``report.md`` and the plain-text tables that ``fope demo``,
``fope experiment`` and dry runs print; ``spread_text`` formats every ``mean_spread`` record they show.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from fope.report.stats import passkey_spreads

#: The cell of a configuration that has no result of a report's evaluation.
MISSING = "missing"


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Literal["markdown", "text"] = "markdown",
    text_columns: int = 1,
) -> str:
    """A table of strings; the first ``text_columns`` are left-aligned, the rest (numbers) right-aligned.

    ``markdown``: a pipe table (alignment in the rule row). ``text``: columns padded to their widest cell and
    separated by two spaces.
    """
    if style == "markdown":
        rule = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    if style != "text":
        raise ValueError(f"style must be 'markdown' or 'text'; got {style!r}")
    widths = [max(len(str(name)), *(len(row[index]) for row in rows)) for index, name in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index < text_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), *(line(row) for row in rows)])


def text_table(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows of strings as aligned plain text, columns in order of first appearance (``-`` where a row has none)."""
    if not rows:
        return ""
    header = list(dict.fromkeys(key for row in rows for key in row))
    return render_table(header, [[row.get(key, "-") for key in header] for row in rows], style="text")


def format_number(value: float) -> str:
    """Two decimals, or a thousands-separated integer from 1000 up (perplexities span orders of magnitude)."""
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"


def spread_text(
    spread: Mapping[str, Any] | None,
    digits: int = 1,
    scale: float = 1.0,
    unit: str = "",
    *,
    number: Callable[[float], str] | None = None,
) -> str:
    """``mean ± std`` of a ``mean_spread`` record (the mean alone for one run; ``-`` for None).

    Values are ``scale * value`` with ``digits`` decimals and ``unit``, or ``number(value)`` when given.
    """
    if spread is None:
        return "-"
    if number is None:

        def number(value: float) -> str:
            return f"{scale * value:.{digits}f}{unit}"

    text = number(spread["mean"])
    return text if spread["std"] is None else f"{text} ± {number(spread['std'])}"


def key_table(results: Mapping[str, Any], passkey: bool = True) -> str:
    """Per configuration: n, perplexity at each multiple of the training length, passkey accuracy <= L and > L."""
    rows = []
    for label, group in results["groups"].items():
        numbers = group["perplexity"]
        row = {"configuration": label, "n": str(group["n"])}
        for entry in numbers["by_length"] if numbers else []:
            row[f"ppl {entry['multiple']:g}x"] = spread_text(entry["perplexity"])
        if passkey and group["passkey"]:
            inside, beyond = passkey_spreads(group)
            row["passkey <= L"] = spread_text(inside, 0, 100, "%")
            row["passkey > L"] = spread_text(beyond, 0, 100, "%")
        rows.append(row)
    return text_table(rows)


def format_contrast(result: Mapping[str, Any] | None, what: str) -> str:
    """One line: ``what`` at a length, both perplexities with spreads and n, the log-perplexity difference, verdict;
    then the difference paired by seed where there is one."""
    if result is None:
        return f"{what}: not evaluated"
    error = result["standard_error"]
    difference = f"{result['log_perplexity_difference']:+.3f}" + (f" ± {error:.3f}" if error is not None else "")
    n_a, n_b = result["perplexity_a"]["n"], result["perplexity_b"]["n"]
    line = (
        f"{what} at {result['length']} ({result['multiple']:g}x): {result['b']} {spread_text(result['perplexity_b'])}"
        f" vs {result['a']} {spread_text(result['perplexity_a'])} (n {n_b}/{n_a}); log-ppl {difference}: "
        f"{result['verdict']}"
    )
    paired = result.get("paired")
    if paired is not None:
        line += f"; paired over {paired['n']} seeds {paired['difference']:+.3f} ± {paired['standard_error']:.3f}"
    return line
