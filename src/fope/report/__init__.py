"""Reports: several runs' evaluation results, grouped by label so seeds aggregate, as tables, plots and Markdown.

A report reads results and never computes them (``fope compare`` and campaigns run the evaluations first). Layers,
each usable alone:

- ``load``: ``load_results`` reads a run's ``eval/*.json`` (missing ones are None and reported as missing, stale ones
  noted); ``pending_evaluations`` says what a run still needs; ``unique_run_dirs`` drops a run given twice, and
  ``check_distinct_runs`` refuses two folders holding the same run (a copy).
- ``stats`` (pure): ``aggregate`` turns runs into numbers per configuration (``mean_spread``: n, mean, sample std,
  min, max); ``contrast`` compares two configurations with standard errors, unpaired and paired by seed.
- ``tables``: one renderer for Markdown and text tables (``render_table``, ``text_table``) and one spread formatter
  (``spread_text``); ``key_table`` and ``format_contrast`` for printed summaries.
- ``plots``: the figures (matplotlib); ``markdown``: ``report.md``; ``compare``: ``compare_runs`` does it all
  (``write_report`` from results already read).
- ``store``: results as data, one small JSON per run in a results folder (``docs/results``) that campaigns write and
  reuse; ``verdicts``: a contrast as a sentence; ``page``: ``fope report``, ``docs/results.md`` from that folder.
- ``checks``: what a report accepts from a results file (fields, types, ranges), checked by ``load`` and ``store``
  as they read; ``ReportError`` is defined there.

Other modules add to a report through ``extra_sections``: callables that get the loaded runs and the output folder and
return a ``ReportSection`` (its text, the figures they drew there, and their numbers).
"""

from fope.report.compare import check_out_dir, compare_runs, write_report
from fope.report.load import (
    ReportError,
    ReportSection,
    RunResults,
    SectionBuilder,
    check_distinct_runs,
    check_run_dir,
    load_results,
    pending_evaluations,
    unique_run_dirs,
)
from fope.report.markdown import markdown_report
from fope.report.plots import (
    draw_figures,
    plot_passkey_accuracy,
    plot_passkey_grid,
    plot_perplexity,
    plot_perplexity_ratio,
    plot_position_loss,
)
from fope.report.stats import (
    PER_RUN_KEYS,
    aggregate,
    aggregate_passkey,
    aggregate_perplexity,
    by_length,
    contrast,
    evaluation_settings,
    group_by_label,
    mean_spread,
    paired_difference,
    passkey_contrast,
    passkey_spreads,
    settings_notes,
)
from fope.report.tables import (
    MISSING,
    format_contrast,
    format_number,
    key_table,
    render_table,
    spread_text,
    text_table,
)

__all__ = [
    "MISSING",
    "PER_RUN_KEYS",
    "ReportError",
    "ReportSection",
    "RunResults",
    "SectionBuilder",
    "aggregate",
    "aggregate_passkey",
    "aggregate_perplexity",
    "by_length",
    "check_distinct_runs",
    "check_out_dir",
    "check_run_dir",
    "compare_runs",
    "contrast",
    "draw_figures",
    "evaluation_settings",
    "format_contrast",
    "format_number",
    "group_by_label",
    "key_table",
    "load_results",
    "markdown_report",
    "mean_spread",
    "paired_difference",
    "passkey_contrast",
    "passkey_spreads",
    "pending_evaluations",
    "plot_passkey_accuracy",
    "plot_passkey_grid",
    "plot_perplexity",
    "plot_perplexity_ratio",
    "plot_position_loss",
    "render_table",
    "settings_notes",
    "spread_text",
    "text_table",
    "unique_run_dirs",
    "write_report",
]
