"""The campaign executors: start-up time and per-run overhead of Ray against local processes on the same runs, and
where a Ray cluster of several nodes places a campaign's runs.

    PYTHONPATH=src:. .venv/bin/python benchmarks/bench_executor.py                 # all three parts
    PYTHONPATH=src:. .venv/bin/python benchmarks/bench_executor.py --parts placement --nodes 4 --runs 12

- ``startup``: seconds to get an executor that can start tasks: ``LocalExecutor`` (nothing to start),
  ``RayExecutor(address)`` joining a running two-node cluster, and ``RayExecutor(None)`` starting Ray on this machine.
- ``overhead``: ``--tasks`` tasks that do nothing (``python -c pass``) through ``run_tasks`` with two slots on each
  executor (local: two workers; Ray: a two-node cluster of one CPU each) and the same polling (0.05 s); the wall time
  per task is what the executor adds to a run (a Python start, which both pay, included).
- ``placement``: a ``--runs``-run quick campaign (the tests' tiny runs: d_model 32, 2 layers, ``--steps`` steps on
  a generated corpus; no evaluation) on a Ray cluster of ``--nodes`` nodes of one CPU each on this machine; which
  node ran each run (each run's log says where it started).

The clusters are tests/ray_cluster.py's: real ``ray start`` processes on localhost, killed at the end.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from tests.conftest import tiny_run_config
from tests.data.fakes import text_corpus
from tests.ray_cluster import ray_cluster

from fope.config import load_config
from fope.executor import LocalExecutor, RayExecutor, Task, run_tasks
from fope.experiments.campaign import Campaign, PlannedRun, run_campaign


def timed(make):
    started = time.perf_counter()
    made = make()
    return made, time.perf_counter() - started


def nothing_tasks(count: int, folder: Path) -> list[Task]:
    return [Task(f"t{index}", ("-c", "pass"), folder / f"t{index}.log") for index in range(count)]


def overhead(executor, count: int, folder: Path) -> float:
    """Seconds per do-nothing task through ``run_tasks`` on ``executor``."""
    _, seconds = timed(
        lambda: run_tasks(nothing_tasks(count, folder), executor, lambda: 0, count, "tasks", unit="task", poll=0.05)
    )
    return seconds / count


def startup_and_overhead(tasks: int, repeats: int, parts: list[str]) -> None:
    if "startup" in parts:  # before any cluster runs: RayExecutor(None) would join it
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else ray.init() writes a token to ~/.ray/auth_token
        local, started = [timed(lambda: LocalExecutor(2))[1] for _ in range(repeats)], []
        for _ in range(repeats):
            executor, seconds = timed(lambda: RayExecutor(None))
            executor.close()
            started.append(seconds)
    with tempfile.TemporaryDirectory() as folder, ray_cluster(nodes=2, cpus=1) as (address, _):
        root = Path(folder)
        if "startup" in parts:
            joined = []
            for _ in range(repeats):
                executor, seconds = timed(lambda: RayExecutor(address))
                executor.close()
                joined.append(seconds)
            print(f"| executor | start-up (median of {repeats}) |")
            print("|---|---:|")
            print(f"| local | {statistics.median(local) * 1e3:.2f} ms |")
            print(f"| Ray, joining a running 2-node cluster | {statistics.median(joined):.2f} s |")
            print(f"| Ray, started on this machine for the campaign | {statistics.median(started):.2f} s |")
        if "overhead" in parts:
            local, ray = [], []
            for repeat in range(repeats):  # alternate, so that the machine's load falls on both
                local.append(overhead(LocalExecutor(2), tasks, root / f"local{repeat}"))
                executor = RayExecutor(address)
                try:
                    ray.append(overhead(executor, tasks, root / f"ray{repeat}"))
                finally:
                    executor.close()
            print(f"| executor | seconds per do-nothing task ({tasks} tasks, 2 slots, median of {repeats}) |")
            print("|---|---:|")
            print(f"| local | {statistics.median(local):.3f} ({', '.join(f'{x:.3f}' for x in local)}) |")
            print(f"| Ray (2 nodes) | {statistics.median(ray):.3f} ({', '.join(f'{x:.3f}' for x in ray)}) |")


def placement(nodes: int, runs: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as folder, ray_cluster(nodes=nodes, cpus=1) as (address, _):
        root = Path(folder)
        corpus = text_corpus(root / "corpus", {"plays": 12, "verse": 8})
        planned = tuple(
            PlannedRun(f"run{i:02d}", load_config(base=tiny_run_config(corpus, "rope", max_steps=steps, seed=i)))
            for i in range(runs)
        )
        executor = RayExecutor(address)
        try:
            _, seconds = timed(
                lambda: run_campaign(Campaign(planned), root / "out", log=lambda _: None, executor=executor)
            )
        finally:
            executor.close()
        where = {}
        for run in planned:
            log = (root / "out" / "logs" / f"{run.name}.train.log").read_text()
            where[run.name] = re.search(r"\(Ray node (\w+)\)", log).group(1)[:8]
        counts = collections.Counter(where.values())
        print(f"{runs} runs of {steps} steps on {nodes} nodes in {seconds:.1f} s; runs per node: {dict(counts)}")
        print("| run | node |")
        print("|---|---|")
        for name, node in where.items():
            print(f"| {name} | {node} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="startup,overhead,placement", help="comma-separated parts to run")
    parser.add_argument("--tasks", type=int, default=12, help="do-nothing tasks per overhead measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=4, help="nodes of the placement cluster")
    parser.add_argument("--runs", type=int, default=12, help="runs of the placement campaign")
    parser.add_argument("--steps", type=int, default=8, help="steps per placement run")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    if {"startup", "overhead"} & set(parts):
        startup_and_overhead(args.tasks, args.repeats, parts)
    if "placement" in parts:
        placement(args.nodes, args.runs, args.steps)


if __name__ == "__main__":
    main()
