"""A campaign's results folder (``--results DIR``, default ``OUT/results``; the files: ``fope.report.store``): which
runs come from stored results, which stored files hold other settings, and storing a run's evaluations when they
finish.

A run comes from stored results when its file holds the campaign's resolved config and every evaluation the campaign
wants with the same settings (perplexity: the text and spans per length; passkey: trials per length): it is neither
trained nor evaluated, and its reports use the stored numbers. So is a run that is only a start of other runs when
all of those come from stored results. A file with another config, or an evaluation with other settings, stops the
campaign before anything starts (as a run folder with other settings does); an evaluation the file lacks is computed
and added, and what a file already holds is never replaced.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, NamedTuple

from fope.checkpoint import checkpoint_identity
from fope.config import ConfigError, RunConfig, differences, from_dict, to_dict
from fope.errors import CampaignError
from fope.evaluate import results as eval_files
from fope.experiments.plan import Campaign, PlannedRun
from fope.experiments.state import BOOKKEEPING_KEYS
from fope.provenance import provenance
from fope.report.store import (
    evaluation_entry,
    merged_recipe,
    portable,
    read_json,
    read_run,
    recipe_file,
    run_file,
    run_record,
    write_json,
)


class StoredState(NamedTuple):
    """``status``: none (no file, or no results folder), stored (every evaluation wanted), partial or conflict."""

    status: str
    reason: str = ""


def wanted_evaluations(campaign: Campaign, name: str, out: Path) -> dict[str, dict[str, Any]]:
    """Result name -> the settings a stored evaluation must have, for the evaluations run ``name`` gets."""
    wanted = {}
    for data in campaign.evaluations(name):
        text = None if data is None else portable(str(Path(data).resolve()), out)
        wanted[eval_files.results_name(eval_files.PERPLEXITY, data)] = {"data": text, "max_spans": campaign.max_spans}
    if campaign.passkey_trials is not None and campaign.evaluations(name):
        wanted[eval_files.PASSKEY] = {"trials": campaign.passkey_trials}
    return wanted


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config with today's defaults for keys added since it was stored (``train.init_positions``): a new
    option whose default keeps the old behaviour does not make stored runs mismatch. As stored when it does not load."""
    try:
        return to_dict(from_dict(RunConfig, config))
    except ConfigError:
        return config


def stored_state(campaign: Campaign, run: PlannedRun, out: Path) -> StoredState:
    """What the campaign's results folder holds for ``run``."""
    record = None if campaign.results is None else read_run(campaign.results, run.name)
    if record is None:
        return StoredState("none")
    found = differences(with_defaults(record["config"]), portable(to_dict(run.config), out), BOOKKEEPING_KEYS)
    wanted = wanted_evaluations(campaign, run.name, out)
    for key, settings in wanted.items():
        there = (record["evaluations"].get(key) or {}).get("settings")
        if there is not None:  # the settings the campaign stored it with (the step is the config's: checked above)
            request = eval_files.EvaluationRequest(settings=settings)
            found += [f"{key} {difference}" for difference in eval_files.mismatches(there, request)]
    if found:
        return StoredState("conflict", "; ".join(found))
    missing = [key for key in wanted if key not in record["evaluations"]]
    if not wanted or missing:
        return StoredState("partial", f"no stored {', '.join(missing)}" if missing else "")
    return StoredState("stored")


def stored_states(campaign: Campaign, out: Path) -> dict[str, StoredState]:
    return {run.name: stored_state(campaign, run, out) for run in campaign.runs}


def from_store(campaign: Campaign, states: dict[str, StoredState]) -> set[str]:
    """The runs the campaign takes from stored results: evaluated ones with every evaluation stored, and starts of
    other runs, when every run that starts from them is taken from stored results too."""
    reported, taken = set(campaign.reported()), set()
    for run in reversed(campaign.runs):  # a run's dependents come after it
        dependents = [other.name for other in campaign.runs if run.name in other.after]
        usable = states[run.name].status == "stored" if run.name in reported else bool(dependents)
        if usable and all(name in taken for name in dependents):
            taken.add(run.name)
    return taken


def checked_store(campaign: Campaign, out: Path) -> set[str]:
    """``from_store`` (empty without a results folder), or a ``CampaignError`` naming every stored file that holds
    other settings."""
    states = stored_states(campaign, out)
    conflicts = [
        f"  {run_file(campaign.results, name)}: {state.reason}"
        for name, state in states.items()
        if state.status == "conflict"
    ]
    if conflicts:
        raise CampaignError(
            "these stored results describe runs with other settings (choose another --results, or delete the files "
            "to compute them again):\n" + "\n".join(conflicts)
        )
    return from_store(campaign, states)


def store_recipe(campaign: Campaign, out: Path) -> None:
    """Add the campaign's reports (runs, titles, contrasts) to ``RESULTS/<campaign name>.json``."""
    if campaign.results is None or campaign.name is None:
        return
    reports = [
        {
            "folder": report.folder,
            "title": report.title,
            "evaluation": eval_files.results_name(eval_files.PERPLEXITY, report.data),
            "data": None if report.data is None else portable(str(Path(report.data).resolve()), out),
            "runs": list(report.runs),
            "contrasts": [list(pair) for pair in report.contrasts],
        }
        for report in campaign.reports
    ]
    path = recipe_file(campaign.results, campaign.name)
    write_json(path, merged_recipe(read_json(path, "recipe"), campaign.name, reports))


def _date(path: Path) -> str:
    moment = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def store_run(campaign: Campaign, name: str, out: Path) -> Path | None:
    """Add run ``name``'s wanted evaluations (from ``OUT/runs/<name>/eval``) that its file lacks; None without a
    results folder or evaluations."""
    run = next(run for run in campaign.runs if run.name == name)
    wanted = wanted_evaluations(campaign, name, out)
    if campaign.results is None or not wanted:
        return None
    run_dir = out / "runs" / name
    record = read_run(campaign.results, name)
    evaluations = dict(record["evaluations"]) if record else {}
    summary = record["summary"] if record else None
    for key, settings in wanted.items():
        if key in evaluations:  # stored with these settings (checked before the campaign started): kept as it is
            continue
        result = eval_files.read_results(run_dir, key)
        if result is None:
            raise CampaignError(f"{run_dir} has no eval/{key}.json after its evaluation (see {out / 'logs'})")
        checkpoint = checkpoint_identity(run_dir, result["run"]["step"])
        date = _date(eval_files.results_path(run_dir, key))
        evaluations[key] = evaluation_entry(
            result, settings, out, checkpoint=checkpoint, evaluated=date, code=provenance()
        )
        summary = summary or result["run"]
    config = portable(to_dict(run.config), out)
    if record is not None and not differences(with_defaults(record["config"]), config):
        config = record["config"]  # the same config as stored (in the form of its day): its hash stays
    return write_json(run_file(campaign.results, name), run_record(name, config, summary, evaluations))
