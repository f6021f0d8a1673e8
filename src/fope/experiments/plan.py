"""A campaign as plain data: its runs (a folder name, the whole resolved config, the runs it starts from), the
reports over them (and so the evaluations each run gets), and what it asks for (workers, GPUs per run, results).
Recipes build it; ``fope.experiments.campaign`` runs it on an executor; ``fope.experiments.stored`` stores it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fope.config import RunConfig
from fope.errors import CampaignError


@dataclass(frozen=True)
class PlannedRun:
    """One run: its folder name under ``OUT/runs``, its resolved config, the preset it starts from (for the dry run)
    and ``after``: runs it starts from (trained first)."""

    name: str
    config: RunConfig
    preset: str | None = None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """A ``fope compare`` report over some of the runs: a folder, a title; ``data``: perplexity on that text;
    ``contrasts``: ``(label a, label b, what)`` pairs whose difference (b minus a) is a verdict in ``fope report``."""

    folder: str
    title: str
    runs: tuple[str, ...]
    data: str | None = None
    attention: bool = False
    contrasts: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Campaign:
    """Runs to train, how to evaluate them (spans per length, passkey trials or None), the reports to write, how many
    local workers at a time and the GPUs each run asks for (more than one: torchrun over that many processes; 0: a CPU
    run); ``results``: the results folder to store evaluations in and reuse (None: none), ``name``: the recipe file
    there (``RESULTS/<name>.json``; None: none)."""

    runs: tuple[PlannedRun, ...]
    reports: tuple[Report, ...] = ()
    max_spans: int = 24
    passkey_trials: int | None = 100
    jobs: int = 2
    gpus_per_run: int = 0
    results: Path | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        names = [run.name for run in self.runs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise CampaignError(f"run names must be unique; {repeated} appear more than once")
        for run in self.runs:
            unknown = [name for name in run.after if name not in names[: names.index(run.name)]]
            if unknown:
                raise CampaignError(f"run {run.name!r} starts from {unknown}, which are not earlier runs")
        for report in self.reports:
            unknown = [name for name in report.runs if name not in names]
            if unknown:
                raise CampaignError(f"report {report.folder!r} names unknown runs {unknown}")
        if self.jobs < 1:
            raise CampaignError(f"jobs must be >= 1; got {self.jobs}")
        if self.gpus_per_run < 0:
            raise CampaignError(f"gpus_per_run must be >= 0; got {self.gpus_per_run}")

    def evaluations(self, name: str) -> list[str | None]:
        """The perplexity evaluations run ``name`` gets: None for its held-out split, else a text path."""
        return list(dict.fromkeys(report.data for report in self.reports if name in report.runs))

    def reported(self) -> list[str]:
        """The runs some report compares (the ones evaluated)."""
        return list(dict.fromkeys(name for report in self.reports for name in report.runs))
