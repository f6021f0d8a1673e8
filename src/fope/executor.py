"""Where a campaign's tasks run: one interface, two engines.

A ``Task`` is a worker to start (``python -m fope.worker train RUN_DIR``, or ``python -m fope.worker exec -m
torch.distributed.run`` over ``gpus`` processes), its log file, the tasks that must end first, and the resources it
asks for (GPUs, CPU threads). ``run_tasks`` starts them in dependency order on an executor, with one progress bar
over the campaign:

- ``LocalExecutor``: processes of this machine (``subprocess``), ``workers`` at a time, each task handed the GPUs it
  asks for (``CUDA_VISIBLE_DEVICES``) so that eight single-GPU runs train at once on an 8-GPU machine. The default:
  ``fope demo`` on a laptop, offline, with nothing to set up.
- ``RayExecutor`` (``--executor ray --address auto|HOST:PORT``; ``pip install 'fope[ray]'``): each task is a Ray task
  that asks for ``num_gpus``/``num_cpus`` and starts the same worker process on the node Ray places it on, inside that
  allocation (Ray sets ``CUDA_VISIBLE_DEVICES``; a multi-GPU run's torchrun starts there, ``--standalone``). Ray runs
  on SLURM, Kubernetes and cloud machines per its own documentation.

Both assume the run folders, the logs and the data cache are on a filesystem every node sees (they are on one
machine): the progress bar reads each run's ``metrics.jsonl`` and checkpoints there, and a rerun reuses them. A task
whose process, worker or node dies is reported with why and its log; the same command continues it from its last
checkpoint.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from fope.errors import CampaignError, FopeError
from fope.progress import progress_bar
from fope.worker import PARENT_PID

#: The executors ``--executor`` names.
EXECUTORS = ("local", "ray")
#: How a worker is started: Python's arguments (the Python of the machine that runs it comes first).
WORKER = ("-m", "fope.worker")


class RunFailed(FopeError):
    """Tasks of a campaign that failed, each with why and where its log is; the finished ones are kept."""


def worker_arguments(action: str, *arguments: str, gpus: int = 1) -> tuple[str, ...]:
    """Python's arguments for the worker; ``train`` over ``gpus`` > 1 processes runs under ``torch.distributed.run``
    (``--standalone``: its own rendezvous on a free port, so several run side by side on one node), started through
    the worker's ``exec`` so that the torchrun agent dies with the process that started it, as its ranks do."""
    if action == "train" and gpus > 1:
        launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus))
        return (*WORKER, "exec", *launcher, *WORKER, action, *arguments)
    return (*WORKER, action, *arguments)


def worker_command(action: str, *arguments: str, gpus: int = 1) -> list[str]:
    """The worker's command line on this machine."""
    return [sys.executable, *worker_arguments(action, *arguments, gpus=gpus)]


@dataclass(frozen=True)
class Task:
    """A process to start: Python's ``arguments``, its log file, the tasks that must end first, what it is in
    messages (``label``; default ``"<description> of <name>"``), and what it asks for: ``gpus``, CPU ``threads``."""

    name: str
    arguments: tuple[str, ...]
    log: Path
    after: tuple[str, ...] = ()
    label: str | None = None
    gpus: int = 0
    threads: int = 1


class Ended(NamedTuple):
    """How a task ended: ``failure`` None when it exited 0, else why (``exit 3``, ``killed by SIGKILL``, a node that
    died)."""

    failure: str | None


def start_process(task: Task, where: str, devices: Sequence[int] = ()) -> subprocess.Popen:
    """Start ``task`` with this machine's Python (one OpenMP thread per asked thread; ``devices``: the GPUs it sees
    when given), its output appended to its log after a line saying where and when it started."""
    env = {**os.environ, "OMP_NUM_THREADS": str(task.threads), "PYTHONUNBUFFERED": "1", PARENT_PID: str(os.getpid())}
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    task.log.parent.mkdir(parents=True, exist_ok=True)
    with open(task.log, "ab") as log:
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"== {task.name}: started {started} on {where}\n".encode())
        log.flush()
        return subprocess.Popen([sys.executable, *task.arguments], stdout=log, stderr=subprocess.STDOUT, env=env)


def run_process(task: Task, where: str) -> int:
    """``start_process`` and wait: the exit code (negative: the signal that ended it). Stopping the caller (Ray's
    cancel) stops the process."""
    process = start_process(task, where)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()


def exit_failure(code: int) -> str | None:
    """None for exit 0, else ``exit N`` or ``killed by SIGNAME``."""
    if code == 0:
        return None
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


class Executor(Protocol):
    """Starts tasks, says whether one fits now, polls and stops them. ``run_tasks`` does the rest."""

    description: str  # how tasks run, for the campaign's first line

    def fits(self, task: Task, running: Sequence[Task]) -> bool: ...
    def start(self, task: Task) -> Any: ...
    def poll(self, handle: Any) -> Ended | None: ...
    def stop(self, handle: Any) -> None: ...
    def close(self) -> None: ...


class LocalExecutor:
    """Worker processes on this machine, ``workers`` at a time, each with the GPUs it asks for (of ``gpus``: default
    every GPU torch sees)."""

    def __init__(self, workers: int, gpus: int | None = None) -> None:
        if workers < 1:
            raise CampaignError(f"workers must be >= 1; got {workers}")
        self.workers = workers
        self._gpus = gpus
        self._free: list[int] | None = None
        self._where = f"{socket.gethostname()} (local)"
        self.description = f"{workers} at a time"

    def _free_gpus(self) -> list[int]:
        if self._free is None:
            if self._gpus is None:
                import torch

                self._gpus = torch.cuda.device_count()
            self._free = list(range(self._gpus))
        return self._free

    def fits(self, task: Task, running: Sequence[Task]) -> bool:
        if task.gpus and task.gpus > self._gpus_total():
            raise CampaignError(f"{task.name} asks for {task.gpus} GPU(s); this machine has {self._gpus_total()}")
        return len(running) < self.workers and task.gpus <= len(self._free_gpus())

    def _gpus_total(self) -> int:
        self._free_gpus()
        return self._gpus or 0

    def start(self, task: Task) -> tuple[subprocess.Popen, list[int]]:
        devices = [self._free_gpus().pop(0) for _ in range(task.gpus)]
        return start_process(task, self._where, devices), devices

    def poll(self, handle: tuple[subprocess.Popen, list[int]]) -> Ended | None:
        process, devices = handle
        code = process.poll()
        if code is None:
            return None
        self._free_gpus().extend(devices)
        return Ended(exit_failure(code))

    def stop(self, handle: tuple[subprocess.Popen, list[int]]) -> None:
        handle[0].terminate()

    def close(self) -> None:
        pass


def _run_on_ray_node(task: Task) -> tuple[int, str]:
    """A Ray task's body: the worker process on this node, inside the task's allocation; its exit code, the node."""
    import ray

    context = ray.get_runtime_context()
    where = f"{socket.gethostname()} (Ray node {context.get_node_id()})"
    return run_process(task, where), where


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A ``HOST:PORT`` address that nothing answers at is one line now, not Ray's retries for minutes."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise CampaignError(
            f"--address must be auto or HOST:PORT (the head's GCS port, 6379 by default); got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise CampaignError(f"--address {address}: no Ray cluster answers there ({error.strerror or error})") from None


class RayExecutor:
    """Tasks on a Ray cluster (``address``: ``auto``, ``HOST:PORT``, or None: a Ray instance started for the
    campaign on this machine). Each asks for its GPUs and threads; Ray places it. A task is started only when the
    cluster has room for it beside the running ones, so that after a failure nothing new starts."""

    def __init__(self, address: str | None = None) -> None:
        from fope.extras import require

        require("ray", "--executor ray")
        import ray

        self._ray = ray
        self._connected = not ray.is_initialized()
        if self._connected:
            check_reachable(address)
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
            except ConnectionError as error:
                raise CampaignError(f"--address {address}: no Ray cluster there ({error})") from None
        self._remote = ray.remote(max_retries=0)(_run_on_ray_node)
        self.nodes: dict[str, str] = {}  # task name -> where it ran
        self.description = f"placed by Ray on {len(self._capacity())} node(s)"

    def _capacity(self) -> list[dict[str, float]]:
        return [node["Resources"] for node in self._ray.nodes() if node["Alive"]]

    def fits(self, task: Task, running: Sequence[Task]) -> bool:
        nodes = self._capacity()
        if not any(node.get("CPU", 0) >= task.threads and node.get("GPU", 0) >= task.gpus for node in nodes):
            raise CampaignError(
                f"{task.name} asks for {task.gpus} GPU(s) and {task.threads} CPU(s) on one node; no node of the Ray "
                f"cluster has them: {[{k: v for k, v in node.items() if k in ('CPU', 'GPU')} for node in nodes]}"
            )
        cpus = sum(node.get("CPU", 0) for node in nodes) - sum(other.threads for other in running)
        gpus = sum(node.get("GPU", 0) for node in nodes) - sum(other.gpus for other in running)
        return task.threads <= cpus and task.gpus <= gpus

    def start(self, task: Task) -> tuple[Task, Any]:
        options = {"num_cpus": task.threads, "num_gpus": task.gpus, "name": task.name}
        return task, self._remote.options(**options).remote(task)

    def poll(self, handle: tuple[Task, Any]) -> Ended | None:
        task, reference = handle
        done, _ = self._ray.wait([reference], timeout=0)
        if not done:
            return None
        try:
            code, where = self._ray.get(reference)
        except self._ray.exceptions.RayError as error:  # the worker or node died, or Ray could not run it
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return Ended(f"{type(error).__name__} on Ray: {first}")
        self.nodes[task.name] = where
        return Ended(exit_failure(code))

    def stop(self, handle: tuple[Task, Any]) -> None:
        self._ray.cancel(handle[1])  # not forced: the task's process is terminated by run_process

    def close(self) -> None:
        if self._connected:
            self._ray.shutdown()


def make_executor(name: str = "local", address: str | None = None, workers: int = 1) -> Executor:
    """The executor ``--executor`` names (``address``: Ray's)."""
    if name not in EXECUTORS:
        raise CampaignError(f"--executor must be one of {list(EXECUTORS)}; got {name!r}")
    if name == "local":
        if address is not None:
            raise CampaignError("--address is the Ray cluster's: give it with --executor ray")
        return LocalExecutor(workers)
    return RayExecutor(address)


def run_tasks(
    tasks: Sequence[Task],
    executor: Executor,
    progress: Callable[[], int],
    total: int,
    description: str,
    unit: str = "step",
    poll: float = 0.5,
    finished: Callable[[Task], None] | None = None,
    postfix: Callable[[], str] | None = None,
) -> None:
    """Run ``tasks`` on ``executor`` in dependency order, with one progress bar of ``progress()`` out of ``total``
    ``unit``s (and ``postfix()`` after it); ``finished(task)`` is called as each task succeeds. A task starts as soon
    as the executor has room for it and the tasks it comes ``after`` have ended, in list order. After a task fails no
    new task starts, the running ones end (their work is kept), then every failure is raised."""
    pending = list(tasks)
    running: list[tuple[Task, Any]] = []
    failures: list[str] = []
    # miniters=0: a poll without progress (a run preparing data, evaluating) still redraws after mininterval, so the
    # elapsed time and the postfix move; tqdm's dynamic miniters would wait for more steps first
    bar = progress_bar(total=total, initial=progress(), desc=description, unit=unit, miniters=0)
    try:
        while (pending and not failures) or running:
            waiting = {task.name for task in pending} | {task.name for task, _ in running}
            while not failures:
                ready = next((task for task in pending if not waiting.intersection(task.after)), None)
                if ready is None or not executor.fits(ready, [task for task, _ in running]):
                    break
                pending.remove(ready)
                running.append((ready, executor.start(ready)))
            if not running:
                if failures:
                    break
                raise CampaignError(f"tasks {[task.name for task in pending]} wait on each other; nothing can start")
            time.sleep(poll)
            ended = [(task, handle, executor.poll(handle)) for task, handle in running]  # one poll each
            running = [(task, handle) for task, handle, end in ended if end is None]
            for task, _, end in ended:
                if end is None:
                    continue
                if end.failure is None:
                    if finished is not None:
                        finished(task)
                else:
                    label = task.label or f"{description} of {task.name}"
                    failures.append(f"{label} failed ({end.failure}); see {task.log}")
            if postfix is not None:
                bar.set_postfix_str(postfix(), refresh=False)
            bar.update(progress() - bar.n)  # redraws at most every mininterval (fope.progress), not on every poll
        if failures:
            raise RunFailed("; ".join(failures) + " (the same command continues from the last checkpoints)")
    finally:
        for _, handle in running:
            executor.stop(handle)
        bar.close()
