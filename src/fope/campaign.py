"""Campaigns: training runs that differ in a few settings, trained by parallel workers, evaluated and compared.

A campaign is a list of ``RunSpec`` (a run folder name, a preset YAML and ``--set`` overrides, exactly what
``fope train`` takes), the evaluations every run gets, and the reports (``fope compare``) to write. ``fope demo`` and
every ``fope experiment`` are campaigns.

Runs live in ``OUT/runs/<name>``. A run already trained there with the same settings is reused, an unfinished one is
resumed, one trained for fewer steps is extended (resumed with the longer schedule), and one trained with other
settings is an error: never silently retrained or mixed into a comparison. Evaluations already done on the run's
latest checkpoint with the same settings are reused too. Training and evaluation run as ``fope train`` /
``fope eval`` / ``fope passkey`` subprocesses, ``jobs`` at a time with one torch thread each: on a 2-core machine two
single-thread workers get more tokens per second than one process with two threads (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from tqdm.auto import tqdm

from fope.config import ConfigError, RunConfig, load_config, to_dict
from fope.errors import FopeError
from fope.evaluate.results import PASSKEY, PERPLEXITY, read_results, results_name
from fope.model import ModelConfig, TransformerLM
from fope.report import (  # the summary helpers live in fope.report; importable from here as before
    by_length,  # noqa: F401
    compare_runs,
    contrast,  # noqa: F401
    format_contrast,  # noqa: F401
    key_table,  # noqa: F401
    passkey_spreads,  # noqa: F401
    spread_text,  # noqa: F401
    text_table,
)

#: Config keys that follow the run length: a run whose config differs only in these can be extended.
LENGTH_KEYS = frozenset({"train.max_steps", "train.checkpoint_every", "train.eval_every"})

#: Share of training rows that are passkey examples in tiny-scale demo and experiment runs: tiny models do not
#: retrieve zero-shot, and at 600 steps 25% packed examples reach ~70% in-length accuracy where 10% learned nothing.
TINY_PASSKEY_FRACTION = 0.25


class CampaignError(FopeError):
    """A campaign that cannot run as asked (a run folder holding other settings, an unknown run name, ...)."""


def assignment(key: str, value: Any) -> str:
    """``key=value`` for ``--set``, the value written as YAML (flow style) so that it parses back to ``value``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return f"{key}={text.removesuffix('...').strip()}"  # a bare scalar ends with YAML's end-of-document marker


@dataclass(frozen=True)
class RunSpec:
    """One run: its folder name under ``OUT/runs``, a preset and ``--set`` overrides; ``after``: runs it starts from."""

    name: str
    config: Path
    overrides: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def resolve(self) -> RunConfig:
        """The run's config, as ``fope train --config CONFIG --set ...`` resolves it."""
        return load_config(self.config, list(self.overrides))


@dataclass(frozen=True)
class ReportSpec:
    """A ``fope compare`` report over some of the runs: a folder, a title; ``data``: perplexity on that text."""

    folder: str
    title: str
    runs: tuple[str, ...]
    data: str | None = None
    attention: bool = False


@dataclass(frozen=True)
class Campaign:
    """Runs to train, how to evaluate them (spans per length, passkey trials or None) and the reports to write."""

    specs: tuple[RunSpec, ...]
    reports: tuple[ReportSpec, ...] = ()
    max_spans: int = 24
    passkey_trials: int | None = 20
    jobs: int = 2
    launcher: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise CampaignError(f"run names must be unique; {duplicates} appear more than once")
        for spec in self.specs:
            unknown = [name for name in spec.after if name not in names[: names.index(spec.name)]]
            if unknown:
                raise CampaignError(f"run {spec.name!r} starts from {unknown}, which are not earlier runs")
        for report in self.reports:
            unknown = [name for name in report.runs if name not in names]
            if unknown:
                raise CampaignError(f"report {report.folder!r} names unknown runs {unknown}")
        if self.jobs < 1:
            raise CampaignError(f"jobs must be >= 1; got {self.jobs}")

    @property
    def train_launcher(self) -> tuple[str, ...]:
        """How ``fope train`` is started: ``launcher``, else this Python's ``-m fope``."""
        return self.launcher or (sys.executable, "-m", "fope")

    def evaluations(self, name: str) -> list[str | None]:
        """The perplexity evaluations run ``name`` gets: None for its held-out split, else a text path."""
        datas = [report.data for report in self.reports if name in report.runs]
        return list(dict.fromkeys(datas))


# ------------------------------------------------------------------ run folders


@dataclass(frozen=True)
class RunState:
    """What a run folder holds compared with its spec: new, done, resume, extend (more steps), or conflict."""

    status: Literal["new", "done", "resume", "extend", "conflict"]
    completed_step: int = 0
    reason: str = ""


def completed_step(run_dir: Path) -> int:
    """The step of the run's latest checkpoint (0 without one)."""
    pointer = run_dir / "checkpoints" / "latest"
    if pointer.is_file():
        return int(pointer.read_text().strip().removeprefix("step_"))
    return 0


def _logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested sections (``train.seed``); ``*options`` mappings stay whole values."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and not key.endswith("options"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """``key: A there, B here`` for every config value that differs, other than the run length."""
    there, here = _flatten(to_dict(saved)), _flatten(to_dict(wanted))
    return [
        f"{key}: {there.get(key)!r} there, {here.get(key)!r} here"
        for key in sorted(set(there) | set(here))
        if key not in LENGTH_KEYS and there.get(key) != here.get(key)
    ]


def run_state(config: RunConfig, run_dir: Path) -> RunState:
    """Whether ``run_dir`` is free, holds this run finished, unfinished or shorter, or holds another run."""
    steps = config.train.max_steps
    if not (run_dir / "config.yaml").is_file():
        return RunState("new")
    saved = load_config(run_dir / "config.yaml")
    done = completed_step(run_dir)
    differences = config_differences(saved, config)
    if differences:
        return RunState("conflict", done, "; ".join(differences))
    if saved.train.max_steps == steps:
        return RunState("done" if done >= steps else "resume", done)
    if saved.train.max_steps < steps:
        return RunState("extend", done, f"trained for {saved.train.max_steps} steps; extending to {steps}")
    return RunState("conflict", done, f"trained for {saved.train.max_steps} steps, {steps} asked")


def run_states(campaign: Campaign, out: Path) -> dict[str, tuple[RunConfig, RunState]]:
    """Every run's resolved config and state in ``out/runs``."""
    states = {}
    for spec in campaign.specs:
        try:
            config = spec.resolve()
        except ConfigError as error:
            raise CampaignError(f"run {spec.name!r}: {error}") from error
        states[spec.name] = (config, run_state(config, out / "runs" / spec.name))
    return states


def train_command(campaign: Campaign, spec: RunSpec, run_dir: Path, resume: bool = False) -> list[str]:
    """The ``fope train`` command line of a run (``--resume`` to continue what the folder holds)."""
    command = [*campaign.train_launcher, "train", "--config", str(spec.config), "--out", str(run_dir), "--no-progress"]
    for item in spec.overrides:
        command += ["--set", item]
    return command + (["--resume"] if resume else [])


def _current(results: dict[str, Any] | None, step: int, key: tuple[str, ...], value: Any) -> bool:
    """Results computed on checkpoint ``step`` with ``results[key...] == value``."""
    if results is None or results["run"]["step"] != step:
        return False
    for part in key:
        results = results.get(part) if isinstance(results, dict) else None
    return results == value


def evaluation_commands(campaign: Campaign, name: str, run_dir: Path, *, pending_only: bool = True) -> list[list[str]]:
    """``fope eval`` / ``fope passkey`` command lines a run still needs (all of them with ``pending_only=False``)."""
    fope = [sys.executable, "-m", "fope"]
    step = completed_step(run_dir)
    commands = []
    for data in campaign.evaluations(name):
        results = read_results(run_dir, results_name(PERPLEXITY, data)) if pending_only else None
        if not _current(results, step, ("spans", "max_spans"), campaign.max_spans):
            extra = ["--data", str(data)] if data is not None else []
            commands.append(
                [*fope, "eval", str(run_dir), *extra, "--max-spans", str(campaign.max_spans), "--no-progress"]
            )
    if campaign.passkey_trials is not None and campaign.evaluations(name):
        results = read_results(run_dir, PASSKEY) if pending_only else None
        if not _current(results, step, ("trials_per_length",), campaign.passkey_trials):
            trials = str(campaign.passkey_trials)
            commands.append([*fope, "passkey", str(run_dir), "--trials", trials, "--no-progress"])
    return commands


# ------------------------------------------------------------------ workers


@dataclass(frozen=True)
class Job:
    """A command to run as a worker, its log file, and the jobs that must finish first."""

    name: str
    command: tuple[str, ...]
    log: Path
    after: tuple[str, ...] = ()


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    progress: Callable[[], int],
    total: int,
    description: str,
    unit: str = "step",
    poll: float = 0.5,
) -> None:
    """Run ``jobs`` ``workers`` at a time (one torch thread each) in dependency order, with a progress bar of
    ``progress()`` out of ``total`` ``unit``s."""
    pending = list(jobs)
    running: list[tuple[Job, subprocess.Popen]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    bar = tqdm(total=total, initial=progress(), desc=description, unit=unit)
    try:
        while pending or running:
            waiting = {job.name for job in pending} | {job.name for job, _ in running}
            while len(running) < workers:
                ready = next((job for job in pending if not waiting.intersection(job.after)), None)
                if ready is None:
                    break
                pending.remove(ready)
                ready.log.parent.mkdir(parents=True, exist_ok=True)
                with open(ready.log, "ab") as log:
                    process = subprocess.Popen(ready.command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((ready, process))
            if not running:
                raise CampaignError(f"jobs {[job.name for job in pending]} wait on each other; nothing can start")
            time.sleep(poll)
            for job, process in running:
                code = process.poll()
                if code not in (None, 0):
                    raise RuntimeError(f"{description} of {job.name} failed (exit {code}); see {job.log}")
            running = [(job, process) for job, process in running if process.poll() is None]
            bar.n = progress()
            bar.refresh()
    finally:
        for _, process in running:
            process.terminate()
        bar.close()


def checked_states(campaign: Campaign, out: Path) -> dict[str, tuple[RunConfig, RunState]]:
    """``run_states``, or a ``CampaignError`` naming every run folder that holds a run with other settings."""
    states = run_states(campaign, out)
    conflicts = [
        f"  {out / 'runs' / name}: {state.reason}" for name, (_, state) in states.items() if state.status == "conflict"
    ]
    if conflicts:
        raise CampaignError(
            "these run folders hold runs trained with other settings (choose another --out, or delete them):\n"
            + "\n".join(conflicts)
        )
    return states


def train_runs(campaign: Campaign, out: Path, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Train every run ``campaign.jobs`` at a time; finished runs are reused, unfinished ones resumed or extended."""
    states = checked_states(campaign, out)
    run_dirs = {spec.name: out / "runs" / spec.name for spec in campaign.specs}
    jobs = []
    for spec in campaign.specs:
        _config, state = states[spec.name]
        if state.status == "done":
            continue
        if state.status == "extend":
            log(f"{spec.name}: {state.reason} (the cosine schedule is recomputed for the new length)")
        command = train_command(campaign, spec, run_dirs[spec.name], resume=state.status != "new")
        log_path = out / "logs" / f"{spec.name}.train.log"
        jobs.append(Job(spec.name, tuple(command), log_path, spec.after))
    reused = len(campaign.specs) - len(jobs)
    if reused:
        log(f"reusing {reused} finished run(s) in {out / 'runs'}")
    steps = {name: config.train.max_steps for name, (config, _) in states.items()}

    def progress() -> int:
        return sum(min(max(_logged_step(run_dirs[n]), completed_step(run_dirs[n])), s) for n, s in steps.items())

    run_jobs(jobs, campaign.jobs, progress, sum(steps.values()), "training")
    return run_dirs


def evaluate_runs(campaign: Campaign, run_dirs: Mapping[str, Path], out: Path) -> None:
    """Perplexity (held-out and other text) and passkey for every run in a report, skipping what is already done."""
    jobs = []
    for name, run_dir in run_dirs.items():
        commands = evaluation_commands(campaign, name, run_dir)
        if commands:
            script = " && ".join(shlex.join(command) for command in commands)
            jobs.append(Job(name, ("bash", "-c", script), out / "logs" / f"{name}.eval.log"))
    names = [job.name for job in jobs]

    def progress() -> int:
        return sum(not evaluation_commands(campaign, name, run_dirs[name]) for name in names)

    run_jobs(jobs, campaign.jobs, progress, len(jobs), "evaluating", unit="run")


def write_reports(campaign: Campaign, run_dirs: Mapping[str, Path], root: Path) -> dict[str, dict[str, Any]]:
    """Each report (``fope compare`` over its runs) in ``root/<folder>``; the results by folder."""
    results = {}
    for report in campaign.reports:
        sections = []
        if report.attention:
            from fope.analysis.report_section import attention_section

            sections.append(attention_section)
        results[report.folder] = compare_runs(
            [run_dirs[name] for name in report.runs],
            root / report.folder,
            title=report.title,
            data=report.data,
            extra_sections=sections,
        )
    return results


def prepare_campaign_data(campaign: Campaign, log: Callable[[str], None] = print) -> None:
    """Prepare each distinct training data once, before parallel workers would each try to."""
    from fope.build import prepare_run_data

    seen = set()
    for spec in campaign.specs:
        config = spec.resolve()
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


def run_campaign(
    campaign: Campaign, out: str | Path, report_root: str | Path | None = None, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Prepare the data, train, evaluate and write the reports (into ``report_root``, default ``out``)."""
    out = Path(out)
    checked_states(campaign, out)  # before any work
    out.mkdir(parents=True, exist_ok=True)
    prepare_campaign_data(campaign, log)
    run_dirs = train_runs(campaign, out, log)
    evaluate_runs(campaign, {name: run_dirs[name] for name in _reported(campaign)}, out)
    return write_reports(campaign, run_dirs, Path(report_root) if report_root is not None else out)


def _reported(campaign: Campaign) -> list[str]:
    return list(dict.fromkeys(name for report in campaign.reports for name in report.runs))


# ------------------------------------------------------------------ plans (dry run)


def planned_model(config: RunConfig) -> ModelConfig:
    """The run's ``ModelConfig`` before any data exists: the vocabulary is ``data.vocab_size`` unless set."""
    return config.model_config(vocab_size=config.model.get("vocab_size") or config.data.vocab_size)


def non_embedding_parameters(config: RunConfig) -> int | None:
    """Parameters of the run's model without the vocabulary matrices (built on the meta device: no memory)."""
    if config.transformers is not None:
        return None
    with torch.device("meta"):
        model = TransformerLM(planned_model(config))
    return model.num_parameters(exclude_embeddings=True)


def describe(campaign: Campaign, out: str | Path) -> list[dict[str, Any]]:
    """One record per run: name, label, status in ``out``, steps, tokens, parameters and its command lines."""
    out = Path(out)
    rows = []
    for name, (config, state) in run_states(campaign, out).items():
        spec = next(spec for spec in campaign.specs if spec.name == name)
        run_dir = out / "runs" / name
        train = config.train
        rows.append(
            {
                "name": name,
                "label": config.name or name,
                "status": state.status,
                "completed_step": state.completed_step,
                "reason": state.reason,
                "steps": train.max_steps,
                "seq_len": train.seq_len,
                "batch_size": train.batch_size,
                "tokens": train.max_steps * train.batch_size * train.seq_len,
                "non_embedding_parameters": non_embedding_parameters(config),
                "train": train_command(campaign, spec, run_dir, resume=state.status in ("resume", "extend")),
                "evaluate": evaluation_commands(campaign, name, run_dir, pending_only=False),
            }
        )
    return rows


def format_plan(campaign: Campaign, out: str | Path) -> str:
    """The dry run: every run with its status, length, tokens and parameters, then the commands and the reports."""
    rows = describe(campaign, out)
    table = [
        {
            "run": row["name"],
            "label": row["label"],
            "status": row["status"] + (f" @{row['completed_step']}" if row["status"] in ("resume", "extend") else ""),
            "steps": str(row["steps"]),
            "seq x batch": f"{row['seq_len']} x {row['batch_size']}",
            "tokens": f"{row['tokens']:,}",
            "non-emb params": "-"
            if row["non_embedding_parameters"] is None
            else f"{row['non_embedding_parameters']:,}",
        }
        for row in rows
    ]
    lines = [f"{len(rows)} runs, {campaign.jobs} at a time, in {Path(out) / 'runs'}", "", text_table(table), ""]
    lines += [f"{row['name']}: {row['reason']}" for row in rows if row["reason"]]
    lines += ["commands:"]
    for row in rows:
        if row["status"] != "done":
            lines.append("  " + shlex.join(row["train"]))
    for row in rows:
        lines += ["  " + shlex.join(command) for command in row["evaluate"]]
    lines += ["", "reports:"]
    lines += [f"  {report.folder}: {report.title} ({len(report.runs)} runs)" for report in campaign.reports]
    return "\n".join(lines)
