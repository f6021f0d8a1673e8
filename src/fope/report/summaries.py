"""Pieces of the recipes' ``summary.md``: contrasts with their standard errors, report headers, the spread note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fope.report import by_length, contrast, format_contrast, key_table
from fope.report.page import LEARNED

SPREAD_NOTE = (
    "Cells are mean ± sample std over seeds (n runs). Contrasts compare mean log-perplexity (nats/token); ± is the "
    "standard error of the difference, sqrt(s_a²/n_a + s_b²/n_b); a difference inside the two-sided 95% "
    "Student t interval (Welch's degrees of freedom; 2.78 standard errors for 3 seeds a side with equal spreads) is "
    "no evidence either way. Where both sides share two or more seeds, the difference paired by seed follows, with the "
    "standard error of the per-seed differences, s_d/sqrt(k)."
)


def groups_of(results: Mapping[str, Any]) -> dict[str, Any]:
    return results["groups"]


def lengths(groups: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The training length and the longest evaluated length of a report's groups."""
    numbers = [group["perplexity"] for group in groups.values() if group["perplexity"]]
    if not numbers:
        return None, None
    train = min(numbers[0]["train_lengths"])
    return train, max(row["length"] for n in numbers for row in n["by_length"])


def contrast_lines(groups: Mapping[str, Any], pairs: Sequence[tuple[str | None, str | None, str]]) -> list[str]:
    """One line per ``(a, b, what)``: b against a at the longest length, then at the training length (pairs naming a
    missing label are left out)."""
    train, longest = lengths(groups)
    lines = []
    for a, b, what in pairs:
        if a in groups and b in groups and longest is not None:
            lines.append("- " + format_contrast(contrast(groups, a, b, longest), what))
            lines.append("  " + format_contrast(contrast(groups, a, b, train), "in-length"))
    return lines


def header(title: str, results: Mapping[str, Any], folder: Path) -> list[str]:
    return [f"## {title}", "", f"report: {folder / 'report.md'}", "", "```", key_table(results), "```", ""]


def summary(title: str, body: list[str]) -> str:
    return "\n".join([f"# {title}", "", SPREAD_NOTE, "", *body]).rstrip() + "\n"


def ranking(groups: Mapping[str, Any], length: int | None) -> list[str]:
    """Labels by mean perplexity at ``length``, lowest first."""
    scored = []
    for label, group in groups.items():
        row = by_length(group, length) if length is not None else None
        if row is not None:
            scored.append((row["perplexity"]["mean"], label))
    return [label for _, label in sorted(scored)]


def learned_lines(results: Mapping[str, Any]) -> list[str]:
    """Per encoding: mean passkey accuracy at the training length over seeds, and whether it reaches ``LEARNED``."""
    lines = []
    for label, group in results["groups"].items():
        passkey = group.get("passkey")
        if not passkey:
            continue
        first = passkey["by_length"][0]
        mean = first["accuracy"]["mean"]
        verdict = "learned" if mean >= LEARNED else f"not learned (< {LEARNED:.0%})"
        lines.append(f"- {label}: {mean:.1%} at {first['length']} tokens (n={first['accuracy']['n']}): {verdict}")
    return lines
