"""Campaigns: training runs that differ in a few settings, trained by parallel workers, evaluated and compared.

A campaign is a list of ``PlannedRun`` (a run folder name and the run's whole resolved ``RunConfig``), the
evaluations every run gets, and the reports (``fope compare``) to write. ``fope demo`` and every ``fope experiment``
are campaigns.

Runs live in ``OUT/runs/<name>``. A run already trained there with the same settings is reused, an unfinished one is
resumed, one trained for fewer steps is extended (resumed with the longer schedule), and one trained with other
settings is an error: never silently retrained or mixed into a comparison. Evaluations already done on the run's
latest checkpoint with the same settings are reused too. With a results folder (``Campaign.results``; the rules in
``fope.experiments.stored``) each run's evaluations are stored there as they finish, and a run whose stored results
match is neither trained nor evaluated: its reports use the stored numbers. The campaign writes each run's config to
``OUT/runs/<name>/config.yaml``; worker processes (``fope.worker``) train from it and evaluate, ``jobs`` at
a time with one torch thread each: on a 2-core machine two single-thread workers get more tokens per second than one
process with two threads (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from fope.build import non_embedding_parameters
from fope.checkpoint import latest_step
from fope.config import flatten, save_config, to_dict
from fope.errors import CampaignError
from fope.evaluate.results import PASSKEY, PERPLEXITY, EvaluationRequest, mismatches, readable_results, results_name
from fope.executor import Executor, LocalExecutor, Task, run_tasks, worker_arguments, worker_command
from fope.experiments.plan import Campaign, PlannedRun, Report
from fope.experiments.state import RunState, run_state
from fope.experiments.stored import checked_store, from_store, store_recipe, store_run, stored_states
from fope.metrics import drop_records_after, last_step
from fope.report import RunResults, load_results, text_table, write_report
from fope.report.store import read_run, run_file, stored_run_results

# ------------------------------------------------------------------ run folders and evaluations


def run_states(campaign: Campaign, out: Path, skip: Collection[str] = ()) -> dict[str, RunState]:
    """Every run's state in ``out/runs`` (but those in ``skip``: taken from stored results)."""
    return {run.name: run_state(run.config, out / "runs" / run.name) for run in campaign.runs if run.name not in skip}


def checked_states(campaign: Campaign, out: Path, skip: Collection[str] = ()) -> dict[str, RunState]:
    """``run_states``, or a ``CampaignError`` naming every run folder that holds a run with other settings."""
    states = run_states(campaign, out, skip)
    conflicts = [
        f"  {out / 'runs' / name}: {state.reason}" for name, state in states.items() if state.status == "conflict"
    ]
    if conflicts:
        raise CampaignError(
            "these run folders hold runs trained with other settings (choose another --out, or delete them):\n"
            + "\n".join(conflicts)
        )
    return states


def _computed(results: dict[str, Any] | None, step: int, evaluation: str, settings: dict[str, Any]) -> bool:
    """Whether ``results`` hold what the campaign's worker computes on checkpoint ``step`` (``mismatches``): the
    campaign's ``settings`` and the worker's defaults, at the training length of the result's run, at (at least: the
    files merge lengths) 1x..16x that length, passkey at those that hold the prompt. So a ``fope eval --lengths 128``
    or ``fope passkey --lengths 256 --seed 1`` of the run in between, which replaces the file, is not taken for the
    campaign's evaluation. Unlike a merge, it does not ask the checkpoint's folder name, the span seed or (held by
    the file's name) the text."""
    from fope.evaluate.chunks import LENGTH_MULTIPLES
    from fope.evaluate.passkey import MAX_NEW_TOKENS

    if results is None:
        return False
    train_length = (results.get("run") or {}).get("train_length")
    lengths = [] if train_length is None else [train_length * multiple for multiple in LENGTH_MULTIPLES]
    defaults = {"seed": 0, "max_new_tokens": MAX_NEW_TOKENS} if evaluation == PASSKEY else {}
    settings = {"run.step": step, **settings, "train_length": train_length, **defaults}
    return not mismatches(results, EvaluationRequest(evaluation, settings, lengths))


def worker_evaluations(campaign: Campaign, name: str, run_dir: Path, *, pending_only: bool = True) -> dict | None:
    """What the worker's ``evaluate`` still has to do for a run (everything with ``pending_only=False``), or None."""
    step = latest_step(run_dir)
    texts = []
    for data in campaign.evaluations(name):
        results = readable_results(run_dir, results_name(PERPLEXITY, data)) if pending_only else None
        if not _computed(results, step, PERPLEXITY, {"spans.max_spans": campaign.max_spans}):
            texts.append(None if data is None else str(data))
    trials = None
    if campaign.passkey_trials is not None and campaign.evaluations(name):
        results = readable_results(run_dir, PASSKEY) if pending_only else None
        if not _computed(results, step, PASSKEY, {"trials_per_length": campaign.passkey_trials}):
            trials = campaign.passkey_trials
    if not texts and trials is None:
        return None
    return {"perplexity": texts, "max_spans": campaign.max_spans, "trials": trials}


def evaluation_command(campaign: Campaign, name: str, run_dir: Path, *, pending_only: bool = True) -> list[str] | None:
    """The worker command that runs a run's pending evaluations (all of them with ``pending_only=False``)."""
    evaluations = worker_evaluations(campaign, name, run_dir, pending_only=pending_only)
    if evaluations is None:
        return None
    return worker_command("evaluate", str(run_dir), json.dumps(evaluations))


def run_threads(run: PlannedRun) -> int:
    """The CPU threads a run asks for: its ``train.threads`` (1 when unset: a GPU run's process)."""
    return run.config.train.threads or 1


# ------------------------------------------------------------------ the campaign


def prepare_campaign_data(campaign: Campaign, log: Callable[[str], None] = print, skip: Collection[str] = ()) -> None:
    """Prepare each distinct training data once (of the runs not in ``skip``), before parallel workers would each
    try to."""
    from fope.build import prepare_run_data

    seen = set()
    for run in campaign.runs:
        if run.name in skip:
            continue
        config = run.config
        key = json.dumps(to_dict(config.data), sort_keys=True)
        if key in seen or config.transformers is not None:
            continue
        seen.add(key)
        prepared = prepare_run_data(config)
        subset = f", sources {config.data.sources}" if config.data.sources else ""
        log(
            f"data: {prepared.train.num_tokens:,} training and {prepared.val.num_tokens:,} held-out tokens{subset} "
            f"({'cached' if prepared.reused else 'prepared'} in {prepared.root})"
        )


def _training_jobs(
    campaign: Campaign, out: Path, log: Callable[[str], None], skip: Collection[str]
) -> tuple[list[Task], dict[str, Path], Callable[[], int], int]:
    """The training tasks (finished runs are reused, unfinished ones resumed or extended), every run's folder, and
    the training progress in steps with its total."""
    states = checked_states(campaign, out, skip)
    run_dirs = {run.name: out / "runs" / run.name for run in campaign.runs}
    jobs = []
    for run in campaign.runs:
        if run.name in skip:
            continue
        state = states[run.name]
        if state.status == "done":
            continue
        if state.status == "extend":
            log(f"{run.name}: {state.reason} (the cosine schedule is recomputed for the new length)")
        save_config(run.config, run_dirs[run.name] / "config.yaml")  # what the worker trains
        # What an interrupted run logged after its last checkpoint is logged again when it resumes: dropped now (as the
        # worker would), so that the bar starts from the checkpoint and never counts backwards.
        drop_records_after(run_dirs[run.name], latest_step(run_dirs[run.name]))
        arguments = worker_arguments("train", str(run_dirs[run.name]), gpus=campaign.gpus_per_run)
        log_file = out / "logs" / f"{run.name}.train.log"
        gpus = campaign.gpus_per_run
        jobs.append(Task(run.name, arguments, log_file, run.after, gpus=gpus, threads=run_threads(run)))
    reused = len(campaign.runs) - len(jobs) - len(skip)
    if skip:
        log(f"using the stored results of {len(skip)} run(s) in {campaign.results} (neither trained nor evaluated)")
    if reused:
        log(f"reusing {reused} finished run(s) in {out / 'runs'}")
    steps = {run.name: run.config.train.max_steps for run in campaign.runs if run.name not in skip}

    def progress() -> int:
        return sum(min(max(last_step(run_dirs[n]), latest_step(run_dirs[n])), s) for n, s in steps.items())

    return jobs, run_dirs, progress, sum(steps.values())


def _evaluation_jobs(
    campaign: Campaign, run_dirs: Mapping[str, Path], out: Path, trained: Collection[str] = ()
) -> dict[str, Task]:
    """By run: the job for its evaluations. A run in ``trained`` (trained by this campaign) gets all of them, after
    its training; another run gets those not yet done on its latest checkpoint, and is stored at once when none is
    left."""
    jobs, runs = {}, {run.name: run for run in campaign.runs}
    for name, run_dir in run_dirs.items():
        fresh = name in trained
        evaluations = worker_evaluations(campaign, name, run_dir, pending_only=not fresh)
        if evaluations is None:
            store_run(campaign, name, out)
        else:
            arguments = worker_arguments("evaluate", str(run_dir), json.dumps(evaluations))
            log, label, gpus = out / "logs" / f"{name}.eval.log", f"evaluation of {name}", min(1, campaign.gpus_per_run)
            after = (name,) if fresh else ()
            jobs[name] = Task(f"{name} (evaluation)", arguments, log, after, label, gpus, run_threads(runs[name]))
    return jobs


def train_and_evaluate(
    campaign: Campaign,
    out: Path,
    log: Callable[[str], None] = print,
    skip: Collection[str] = (),
    executor: Executor | None = None,
) -> dict[str, Path]:
    """Train every run but those in ``skip`` (finished runs are reused, unfinished ones resumed or extended) and
    evaluate the reported ones, in one queue on ``executor`` (default: ``campaign.jobs`` local workers): each run is
    evaluated, and its results stored, as soon as its training ends, so a long campaign leaves results as it goes (to
    commit before it is stopped) instead of all at the end. Returns every run's folder."""
    training, run_dirs, steps, total = _training_jobs(campaign, out, log, skip)
    reported = {name: run_dirs[name] for name in campaign.reported() if name not in skip}
    trained_here = {job.name for job in training}
    evaluations = _evaluation_jobs(campaign, reported, out, trained=trained_here)
    by_job, evaluated = {job.name: name for name, job in evaluations.items()}, set()

    def finished(job: Task) -> None:  # a run's results are stored as soon as its evaluation succeeds
        if job.name in by_job:
            store_run(campaign, by_job[job.name], out)
            evaluated.add(job.name)

    # Runs trained earlier are evaluated first; each training job is followed by its run's evaluation, which is
    # ready (and so starts before later training jobs) the moment that training ends.
    queue = [job for name, job in evaluations.items() if name not in trained_here]
    for job in training:
        queue += [job, *([evaluations[job.name]] if job.name in evaluations else [])]

    def postfix() -> str:
        return f"evaluated {len(evaluated)}/{len(evaluations)} runs"

    run_tasks(
        queue,
        executor or LocalExecutor(campaign.jobs),
        steps,
        total,
        "training",
        finished=finished,
        postfix=postfix if evaluations else None,
    )
    return run_dirs


def report_runs(
    campaign: Campaign, report: Report, run_dirs: Mapping[str, Path], skip: Collection[str]
) -> tuple[list[RunResults], list[RunResults]]:
    """A report's ``RunResults`` (stored numbers for the runs in ``skip``) and those of them with a finished run
    folder (what sections that load models can use)."""
    configs = {run.name: run.config for run in campaign.runs}
    runs, local = [], []
    for name in report.runs:
        run_dir, done = run_dirs[name], True
        if name in skip:
            done = run_state(configs[name], run_dir).status == "done"
            path = run_dir if done else run_file(campaign.results, name)
            evaluation = results_name(PERPLEXITY, report.data)
            results = stored_run_results(read_run(campaign.results, name), path, evaluation)
        else:
            results = load_results(run_dir, data=report.data)
        runs.append(results)
        local += [results] if done else []
    return runs, local


def write_reports(
    campaign: Campaign, run_dirs: Mapping[str, Path], root: Path, skip: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """Each report (``fope compare`` over its runs; stored numbers for the runs in ``skip``) in ``root/<folder>``;
    the results by folder."""
    results = {}
    for report in campaign.reports:
        sections = []
        if report.attention:
            from fope.analysis.report_section import attention_section

            sections.append(attention_section)
        runs, local = report_runs(campaign, report, run_dirs, skip)
        results[report.folder] = write_report(
            runs,
            root / report.folder,
            title=report.title,
            data=report.data,
            extra_sections=sections,
            section_runs=local,
            force=True,  # a recipe's report folders are its output: each rerun rewrites them, as before the stamp
        )
    return results


def run_campaign(
    campaign: Campaign,
    out: str | Path,
    report_root: str | Path | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> dict[str, dict[str, Any]]:
    """Prepare the data, train and evaluate on ``executor`` (default: ``campaign.jobs`` local workers) and write the
    reports (into ``report_root``, default ``out``)."""
    out = Path(out)
    skip = checked_store(campaign, out)  # before any work
    checked_states(campaign, out, skip)
    out.mkdir(parents=True, exist_ok=True)
    store_recipe(campaign, out)
    prepare_campaign_data(campaign, log, skip)
    run_dirs = train_and_evaluate(campaign, out, log, skip, executor)
    return write_reports(campaign, run_dirs, Path(report_root) if report_root is not None else out, skip)


# ------------------------------------------------------------------ the dry run


def assignment(key: str, value: Any) -> str:
    """``key=value`` with the value written as YAML (flow style), as ``--set`` would take it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return f"{key}={text.removesuffix('...').strip()}"  # a bare scalar ends with YAML's end-of-document marker


def preset_changes(run: PlannedRun) -> str:
    """``PRESET + key=value, ...``: how the run's config differs from the preset it starts from."""
    if run.preset is None:
        return "(no preset)"
    from fope.presets import load_preset

    there, here = flatten(to_dict(load_preset(run.preset))), flatten(to_dict(run.config))
    keys = [*here, *(key for key in there if key not in here)]
    changes = [assignment(key, here.get(key)) for key in keys if here.get(key) != there.get(key)]
    return run.preset + ("" if not changes else " + " + ", ".join(changes))


def format_plan(campaign: Campaign, out: str | Path) -> str:
    """The dry run: every run with its status (``stored``: taken from the results folder), length, tokens and
    parameters, its config, the worker commands and the reports."""
    out = Path(out)
    stored = stored_states(campaign, out)
    skip = from_store(campaign, stored)
    states = run_states(campaign, out, skip)
    table = []
    for run in campaign.runs:
        state, train = states.get(run.name, RunState("stored")), run.config.train
        parameters = non_embedding_parameters(run.config)
        table.append(
            {
                "run": run.name,
                "label": run.config.name or run.name,
                "status": state.status + (f" @{state.completed_step}" if state.status in ("resume", "extend") else ""),
                "steps": str(train.max_steps),
                "seq x batch": f"{train.seq_len} x {train.batch_size}",
                "tokens": f"{train.max_steps * train.batch_size * train.seq_len:,}",
                "non-emb params": "-" if parameters is None else f"{parameters:,}",
            }
        )
    lines = [f"{len(campaign.runs)} runs, {campaign.jobs} at a time, in {out / 'runs'}", "", text_table(table), ""]
    lines += [f"{name}: {state.reason}" for name, state in states.items() if state.reason]
    if campaign.results is not None:
        lines += [
            f"results: {campaign.results} ({len(skip)} of {len(campaign.runs)} runs come from stored results: neither "
            "trained nor evaluated; evaluations are stored there as they finish)"
        ]
        lines += [
            f"{name}: {run_file(campaign.results, name)} holds other settings, the campaign would stop: {state.reason}"
            for name, state in stored.items()
            if state.status == "conflict"
        ]
    lines += ["configs (written to RUN_DIR/config.yaml before training):"]
    lines += [f"  {run.name}: {preset_changes(run)}" for run in campaign.runs]
    lines += ["commands:"]
    for run in campaign.runs:
        if states.get(run.name, RunState("done")).status != "done":
            command = worker_command("train", str(out / "runs" / run.name), gpus=campaign.gpus_per_run)
            lines.append("  " + shlex.join(command))
    for name in (name for name in campaign.reported() if name not in skip):
        command = evaluation_command(campaign, name, out / "runs" / name, pending_only=False)
        if command is not None:
            lines.append("  " + shlex.join(command))
    lines += ["", "reports:"]
    lines += [f"  {report.folder}: {report.title} ({len(report.runs)} runs)" for report in campaign.reports]
    return "\n".join(lines)
