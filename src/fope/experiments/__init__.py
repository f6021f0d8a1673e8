"""The paper's experiments as one-command recipes (``fope experiment NAME``) and the demo (``fope demo``), at tiny
scale on a CPU or at the paper's scale on GPUs.

Each recipe is a module with an ``Options`` dataclass (its own settings; the CLI's flags are made from its fields),
``build(settings, options, out)`` (the ``Plan``: a campaign of runs that differ only where the experiment says) and
``summarize(results, ...)`` (``summary.md``, with the spread over seeds of every number a conclusion rests on).
``Settings`` (``fope.experiments.common``) holds what every recipe shares. Runs live in ``OUT/runs/<label>-s<seed>``,
shared by every recipe and with ``fope demo`` (a run with the same name and settings is trained once); each recipe
writes its reports, ``summary.md`` and ``experiment.json`` to ``OUT/<recipe>/`` (the demo to ``OUT``). Every
evaluation is also stored as a small JSON file in a results folder (``OUT/results``, or ``results=DIR``: e.g. a
checkout's ``docs/results``), and a run whose stored results match is not trained or evaluated again
(``fope.experiments.stored``); ``fope report`` rebuilds ``docs/results.md`` from that folder alone.

The recipes (``EXPERIMENTS``; each module's docstring says what it compares) are found in
``fope.experiments.recipes``. A plan runs through ``fope.experiments.campaign`` on an executor (``fope.executor``:
local processes or a Ray cluster), whose tasks are ``fope.worker`` processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fope.errors import CampaignError

if TYPE_CHECKING:
    from fope.executor import Executor
    from fope.experiments.common import Plan
    from fope.experiments.recipes import Recipe

#: The recipes of ``fope experiment`` (``fope.experiments.recipes.RECIPES`` holds their modules, and the demo's).
EXPERIMENTS = ("ablation", "sweep", "extension", "cross-domain", "baselines", "retrieval")


def recipe(name: str) -> Recipe:
    """The module of recipe ``name`` (``demo`` too)."""
    from fope.experiments.recipes import RECIPES

    if name not in RECIPES:
        raise CampaignError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    return RECIPES[name]


def setting_names(module: Recipe) -> list[str]:
    """The ``Settings`` fields recipe ``module`` takes (all of them unless it names some in ``SETTINGS``)."""
    from fope.experiments.common import Settings

    return list(getattr(module, "SETTINGS", [field.name for field in dataclasses.fields(Settings)]))


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def plan_experiment(
    experiment: str, out: str | Path = "experiments", results: str | Path | None = None, **given: Any
) -> Plan:
    """The ``Plan`` of recipe ``experiment`` (or ``demo``): ``Settings`` fields (``seeds``, ``steps``, ``quick``,
    ``scale``, ...) and the recipe's ``Options`` fields (``sizes``, ``encodings``, ...); None means the default.
    Its campaign stores evaluations in and reuses the results folder ``results`` (default ``OUT/results``)."""
    from fope.checks import check_folder
    from fope.experiments.common import Settings

    module = recipe(experiment)
    check_folder("--out", out)
    if results is not None:
        check_folder("--results", results)
    settings_keys = setting_names(module)
    option_keys = [field.name for field in dataclasses.fields(module.Options)]
    unknown = sorted(set(given) - set(settings_keys) - set(option_keys))
    if unknown:
        raise CampaignError(f"experiment {experiment!r} has no option {unknown}; its options are {option_keys}")
    _refuse_empty_lists(given, [*dataclasses.fields(Settings), *dataclasses.fields(module.Options)])
    values = {key: _plain(value) for key, value in given.items() if value is not None}
    if results is not None:
        values["results"] = str(results)
    # A recipe's DEFAULTS are its full runs' defaults: a --quick smoke run keeps the smoke-run defaults.
    defaults = {} if values.get("quick") else getattr(module, "DEFAULTS", {})
    settings = {**defaults, **{k: v for k, v in values.items() if k in settings_keys}}
    options = module.Options(**{key: value for key, value in values.items() if key in option_keys})
    return module.build(Settings(**settings), options, Path(out))


def _refuse_empty_lists(given: dict[str, Any], fields: list[dataclasses.Field]) -> None:
    """An empty list for a list option whose None is the recipe's default (``--seeds ''``, ``--encodings ''``) is an
    error, not the default: the user wrote the option and gave it nothing."""
    for field in fields:
        value = given.get(field.name)
        if field.default is None and isinstance(value, (list, tuple)) and not value:
            flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
            raise CampaignError(
                f"{flag} must list one or more comma-separated values (leave {flag} out for the default); got none"
            )


def format_experiment(plan: Plan) -> str:
    """The dry run of a plan: settings, runs with their status, configs and commands, reports, notes."""
    from fope.experiments.common import format_experiment as format_plan

    return format_plan(plan)


def run_experiment(plan: Plan, log: Callable[[str], None] = print, executor: Executor | None = None) -> dict[str, Any]:
    """Train, evaluate, report and summarise a plan on ``executor`` (``fope.executor``; default the
    plan's ``jobs`` local workers); returns the reports' results and the summary text."""
    from fope.experiments.common import run_plan

    return run_plan(plan, log, executor)
