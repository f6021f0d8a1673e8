"""``report.md``: perplexity, ratio, bits-per-byte and passkey tables, figures, runs, notes and extra sections.

Cells are ``mean ± std`` over a configuration's runs; ``n`` is the number of runs with that evaluation's results. A
configuration whose runs all lack an evaluation that others have shows "missing" cells (its notes say which
command computes them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fope.report.load import ReportSection
from fope.report.tables import MISSING, format_number, render_table, spread_text


def _length_header(lengths: Sequence[int], train_length: int | None) -> list[str]:
    if train_length is None:
        return [str(length) for length in lengths]
    return [f"{length} ({length / train_length:g}x)" for length in lengths]


def by_length_table(
    groups: dict[str, Any],
    section: str,
    value: str,
    number: Callable[[float], str],
    extra: tuple[str, Callable[[dict[str, Any]], str]] | None = None,
) -> str:
    """One row per configuration, one column per length; ``extra`` adds a (header, cell of the group) column."""
    present = {label: group for label, group in groups.items() if group[section] is not None}
    lengths = sorted({row["length"] for group in present.values() for row in group[section]["by_length"]})
    train_lengths = sorted({t for group in present.values() for t in group[section]["train_lengths"]})
    train_length = train_lengths[0] if len(train_lengths) == 1 else None
    rows = []
    for label, group in groups.items():
        numbers = group[section]
        if numbers is None:
            rows.append([label, "0"] + [MISSING] * (len(lengths) + bool(extra)))
            continue
        cells = {row["length"]: row[value] for row in numbers["by_length"]}
        first = [label, str(numbers.get("n", group["n"]))] + ([extra[1](group)] if extra else [])
        rows.append(first + [spread_text(cells.get(length), number=number) for length in lengths])
    header = ["configuration", "n"] + ([extra[0]] if extra else []) + _length_header(lengths, train_length)
    return render_table(header, rows)


def _in_length_perplexity(group: dict[str, Any]) -> str:
    numbers = group["perplexity"]
    reference = numbers["reference_lengths"][0]
    row = next(row for row in numbers["by_length"] if row["length"] == reference)
    return f"{spread_text(row['perplexity'], number=format_number)} (at {reference})"


def _runs_table(groups: dict[str, Any]) -> str:
    header = ["configuration", "seed", "step", "position", "options", "d_model x layers x heads (head_dim)"]
    header += ["train length", "parameters", "passkey fraction", "run"]
    rows = []
    for label, group in groups.items():
        for run in group["runs"]:
            summary = run["summary"]
            shape = "-"
            if "d_model" in summary:
                shape = (
                    f"{summary['d_model']} x {summary['num_layers']} x {summary['num_heads']} ({summary['head_dim']})"
                )
            options = json.dumps(summary.get("position_options", "-"))
            rows.append(
                [
                    label,
                    str(run["seed"]),
                    str(run["step"]),
                    str(summary.get("position", "-")),
                    options.replace("|", "\\|"),
                    shape,
                    str(summary.get("train_length", "-")),
                    f"{summary['parameters']:,}" if "parameters" in summary else "-",
                    str(summary.get("passkey_fraction", "-")),
                    f"`{run['path']}`",
                ]
            )
    return render_table(header, rows, text_columns=len(header))


def markdown_report(
    title: str,
    groups: dict[str, Any],
    figures: Sequence[str],
    sections: Sequence[ReportSection] = (),
    data: str | None = None,
    general_notes: Sequence[str] = (),
) -> str:
    """The report's Markdown: perplexity and passkey tables, figures, runs and their configs, notes, extra sections."""
    percent = "{:.0%}".format
    lines = [f"# {title}", ""]
    runs = sum(group["n"] for group in groups.values())
    lines += [f"{runs} runs in {len(groups)} configurations: {', '.join(groups)}.", ""]
    lines += ["Cells are the mean ± sample standard deviation over a configuration's runs (n); min and max are in"]
    lines += ["`results.json`. Bands in the figures span min to max. See docs/evaluation.md for the protocols.", ""]
    if any(group["perplexity"] for group in groups.values()):
        lines += ["## Perplexity against length", ""]
        lines += [f"Data: {data or 'each run’s held-out split'}.", ""]
        lines += [by_length_table(groups, "perplexity", "perplexity", format_number), ""]
        lines += ["### Ratio to in-length perplexity", ""]
        lines += ["Each run's perplexity divided by its own perplexity at the training length (1x). Read it next to"]
        lines += [
            "the 1x perplexity above: a configuration that is poor in-length (NoPE trains slowly at small budgets)"
        ]
        lines += ["can have a flat ratio that reflects under-training, not length generalization.", ""]
        extra = ("in-length perplexity", _in_length_perplexity)
        lines += [by_length_table(groups, "perplexity", "ratio", lambda v: f"{v:.2f}", extra), ""]
        lines += ["### Bits per byte", ""]
        lines += [by_length_table(groups, "perplexity", "bits_per_byte", lambda v: f"{v:.3f}"), ""]
        for name, caption in (
            ("perplexity.png", "Perplexity against length"),
            ("perplexity-ratio.png", "Ratio to in-length perplexity"),
            ("position-loss.png", "Loss by position in the longest windows (where does it break?)"),
        ):
            if name in figures:
                lines += [f"![{caption}]({name})", ""]
        notes = sorted(
            {n for group in groups.values() if group["perplexity"] for n in group["perplexity"]["span_notes"]}
        )
        lines += [f"Note: {note}." for note in notes] + ([""] if notes else [])
    if any(group["passkey"] for group in groups.values()):
        trials = sorted(
            {t for group in groups.values() if group["passkey"] for t in group["passkey"]["trials_per_length"]}
        )
        lines += ["## Passkey retrieval", ""]
        lines += [f"Accuracy: share of the {', '.join(map(str, trials))} trials per length whose first generated"]
        lines += ["integer equals the key (greedy decoding). Lengths are prompt budgets in tokens.", ""]
        lines += [by_length_table(groups, "passkey", "accuracy", percent), ""]
        if "passkey.png" in figures:
            lines += ["![Passkey accuracy against length](passkey.png)", ""]
        grids = [name for name in figures if name.startswith("passkey-")]
        lines += [f"![Passkey accuracy by depth and length: {name[8:-4]}]({name})" for name in grids] + [""]
    lines += ["## Runs", "", _runs_table(groups), ""]
    notes = [f"- {note}" for note in general_notes]
    notes += [f"- {label}: {note}" for label, group in groups.items() for note in group["notes"]]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.strip(), ""]
        lines += [f"![{name}]({name})" for name in section.figures] + ([""] if section.figures else [])
    return "\n".join(lines)
