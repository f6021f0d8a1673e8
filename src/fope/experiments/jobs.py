"""Worker processes: each job a command with a log file, started ``workers`` at a time in dependency order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fope.errors import FopeError

#: How a worker is started: this Python on ``fope.experiments.worker``.
WORKER = (sys.executable, "-m", "fope.experiments.worker")


class CampaignError(FopeError):
    """A campaign that cannot run as asked (a run folder holding other settings, an unknown run name, ...)."""


def worker_command(action: str, *arguments: str, gpus: int = 1) -> list[str]:
    """The worker's command line; ``train`` over ``gpus`` processes runs under ``torch.distributed.run``."""
    if action == "train" and gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus)]
        return [*launcher, "-m", "fope.experiments.worker", action, *arguments]
    return [*WORKER, action, *arguments]


@dataclass(frozen=True)
class Job:
    """A command to run as a worker, its log file, the jobs that must finish first, and what it is in messages
    (``label``; default ``"<description> of <name>"``)."""

    name: str
    command: tuple[str, ...]
    log: Path
    after: tuple[str, ...] = ()
    label: str | None = None


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    progress: Callable[[], int],
    total: int,
    description: str,
    unit: str = "step",
    poll: float = 0.5,
    finished: Callable[[Job], None] | None = None,
    postfix: Callable[[], str] | None = None,
) -> None:
    """Run ``jobs`` ``workers`` at a time (one torch thread each) in dependency order, with a progress bar of
    ``progress()`` out of ``total`` ``unit``s (and ``postfix()`` after it); ``finished(job)`` is called as each job
    succeeds. A job starts as soon as a worker is free and the jobs it comes ``after`` have ended, in list order.
    After a job fails no new job starts, the running ones end (their work is kept), then the failure is raised."""
    pending = list(jobs)
    running: list[tuple[Job, subprocess.Popen]] = []
    failures: list[str] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    bar = tqdm(total=total, initial=progress(), desc=description, unit=unit)
    try:
        while (pending and not failures) or running:
            waiting = {job.name for job in pending} | {job.name for job, _ in running}
            while len(running) < workers and not failures:
                ready = next((job for job in pending if not waiting.intersection(job.after)), None)
                if ready is None:
                    break
                pending.remove(ready)
                ready.log.parent.mkdir(parents=True, exist_ok=True)
                with open(ready.log, "ab") as log:
                    process = subprocess.Popen(ready.command, stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((ready, process))
            if not running:
                if failures:
                    break
                raise CampaignError(f"jobs {[job.name for job in pending]} wait on each other; nothing can start")
            time.sleep(poll)
            codes = [(job, process, process.poll()) for job, process in running]  # one poll each: no job is missed
            running = [(job, process) for job, process, code in codes if code is None]
            for job, _, code in codes:
                if code == 0 and finished is not None:
                    finished(job)
                elif code not in (None, 0):
                    label = job.label or f"{description} of {job.name}"
                    failures.append(f"{label} failed (exit {code}); see {job.log}")
            bar.n = progress()
            if postfix is not None:
                bar.set_postfix_str(postfix(), refresh=False)
            bar.refresh()
        if failures:
            raise RuntimeError("; ".join(failures))
    finally:
        for _, process in running:
            process.terminate()
        bar.close()
